"""The hub for an ASGI server, its fastest production serving (README, "Production serving"):

    uvicorn --factory bus.asgi:application --workers 2 --timeout-graceful-shutdown 10 --host 0.0.0.0 --port 8080

Under a threaded WSGI server a SOAP push passes between three threads (the server's, the
request's, the exchange-log committer's), and on two busy cores every hand-over waits for the
interpreter lock. Here a push is read, checked and answered in the event loop and waits for
its group commit as a coroutine, so one wake-up of the loop answers all the pushes of a
commit. Everything else (console, JSON API, WSDL, queries) is the same WSGI app, run in a
thread pool by a2wsgi.

A mounted WSGI app (bus.http) may also offer `asgi(scope, receive, send, fallback)`: requests
for exactly its prefix go there, and it hands what it does not serve itself to fallback."""
from __future__ import annotations

import asyncio
import atexit
import threading

from a2wsgi import WSGIMiddleware

from bus.config import load_settings
from bus.http import create_app
from bus.hub import Hub
from bus.logs import configure_logging, get_logger

log = get_logger("huitong.asgi")


def application():
    """The uvicorn factory: each worker process runs its own hub, as with bus.wsgi."""
    settings = load_settings()
    configure_logging(settings.logging.level, settings.logging.format)
    if settings.embedded_broker:
        log.warning("asgi.embedded_broker", reason="the in-memory broker lives in one process; with several "
                    "workers use RabbitMQ (broker_url) and PostgreSQL (database_url)")
    hub = Hub(settings).start()
    stop = _once(hub.stop)
    atexit.register(stop)  # for a server that sends no lifespan events
    return create_asgi_app(hub, on_shutdown=stop)


def create_asgi_app(hub: Hub, *, on_shutdown=None):
    wsgi = create_app(hub)
    bridge = WSGIMiddleware(wsgi, workers=hub.settings.http.threads)
    native = {prefix: app.asgi for prefix, app in wsgi.mounts.items() if hasattr(app, "asgi")}

    async def app(scope, receive, send):
        if scope["type"] == "http":
            handler = native.get(scope["path"])
            if handler is not None:
                return await handler(scope, receive, send, bridge)
            return await bridge(scope, receive, send)
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send, on_shutdown)
        # websocket: the hub serves none, and the server closes the connection

    return app


async def _lifespan(receive, send, on_shutdown) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if on_shutdown is not None:  # the relay flushes and the committer drains: not in the loop
                await asyncio.to_thread(on_shutdown)
            await send({"type": "lifespan.shutdown.complete"})
            return


def _once(stop):
    lock, done = threading.Lock(), []

    def stop_once() -> None:
        with lock:
            if not done:
                done.append(True)
                stop()
    return stop_once


async def respond(send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """A whole response with a known length; headers as ASGI has them (lower-case names, bytes)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def replayed(body: bytes, receive):
    """A receive() that gives a body already read once more, for a handler that passes it on."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def again():
        return pending.pop() if pending else await receive()
    return again
