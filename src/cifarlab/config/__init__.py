"""Params: the typed sections, reading `params.yaml`, and resolving each run's settings."""
