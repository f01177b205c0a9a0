"""Developer tooling for asyncgate: the local stack, the template provisioner and the CLI."""
