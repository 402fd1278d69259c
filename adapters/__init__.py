"""Adapters speak the outside protocols (SOAP, file drops, front databases) and hand
canonical messages to the bus through `hub.acceptance`. They never route."""
