"""The operator console (web pages at /, JSON at /api/v1/console), Prometheus /metrics, the
console's users and sessions, and the demo's simulated departments."""
