"""The hub for a multi-worker WSGI server (production serving):

    gunicorn --workers 2 --threads 8 --bind 0.0.0.0:8080 'bus.wsgi:application()'

Each worker process runs its own hub (exchange-log committer, relay) on the shared PostgreSQL
database and RabbitMQ; configuration comes from HUITONG_CONFIG and HUITONG_* as for
`huitong serve`. Do not use --preload: the hub's threads must start in the worker."""
from __future__ import annotations

import atexit

from bus.config import load_settings
from bus.http import create_app
from bus.hub import Hub
from bus.logs import configure_logging, get_logger


def application():
    settings = load_settings()
    configure_logging(settings.logging.level, settings.logging.format)
    log = get_logger("huitong.wsgi")
    if settings.embedded_broker:
        log.warning("wsgi.embedded_broker", reason="the in-memory broker lives in one process; with several "
                    "workers use RabbitMQ (broker_url) and PostgreSQL (database_url)")
    hub = Hub(settings).start()
    atexit.register(hub.stop)
    return create_app(hub)
