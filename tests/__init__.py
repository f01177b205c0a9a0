"""asyncgate's tests: unit (pure domain), integration (handlers on moto) and the shared helpers."""
