"""The shared registries (enterprise, person, project, service item) fed from routed messages."""
