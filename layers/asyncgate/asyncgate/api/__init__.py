"""HTTP plumbing shared by the API functions: request/response models, auth, the error envelope."""
