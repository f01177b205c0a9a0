"""Provider adapters: the port (base), the adapters, and the registry that picks one by name."""
