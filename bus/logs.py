"""structlog set-up: JSON lines in production, readable lines on a terminal, ISO UTC
timestamps, context variables (message_id, system, route) merged into every event,
personal data masked last so no renderer ever sees it. Library logs use the same chain."""
from __future__ import annotations

import logging
import sys

import structlog

from bus.masking import mask_value


def _mask(_, __, event_dict):
    return {key: mask_value(value) for key, value in event_dict.items()}


def configure_logging(level: str = "INFO", fmt: str = "auto", stream=None) -> None:
    stream = stream or sys.stderr
    pretty = fmt == "console" or (fmt == "auto" and stream.isatty())
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _mask,
    ]
    renderer = structlog.dev.ConsoleRenderer(colors=False) if pretty else structlog.processors.JSONRenderer(ensure_ascii=False)
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared], processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library chatter stays at WARNING unless we debug.
    for name in ("kombu", "amqp", "sqlalchemy", "alembic", "waitress"):
        logging.getLogger(name).setLevel(level if level == "DEBUG" else "WARNING")


def get_logger(name: str = "huitong"):
    return structlog.get_logger(name)
