"""Declarative routes (YAML), their schema and the router: matching, transforms, delivery,
retries and dead letters. Built on bus.topology and bus.worker."""
