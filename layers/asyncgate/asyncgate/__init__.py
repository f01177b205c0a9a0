"""asyncgate: the shared package of the Lambda layer (domain, services, adapters, API plumbing)."""
