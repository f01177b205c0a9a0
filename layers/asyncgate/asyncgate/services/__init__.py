"""Use cases: submit, read, list, cancel, tick, sweep. They orchestrate the domain and the ports."""
