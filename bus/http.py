"""The hub's WSGI application: health and readiness here; adapters mount their endpoints
(e.g. /ws/exchange) through the `huitong.http` entry-point group, so bus/ imports none. A mount
at "/" (the console) answers every path no other mount claims. A mounted app may also offer
`asgi(scope, receive, send, fallback)`, which bus.asgi calls for exactly its prefix."""
from __future__ import annotations

import json
from importlib.metadata import entry_points

from sqlalchemy import text
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from bus.hub import Hub


def _json(payload: dict, status: int = 200) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False), status=status, mimetype="application/json")


def create_app(hub: Hub):
    url_map = Map([Rule("/healthz", endpoint="healthz"), Rule("/readyz", endpoint="readyz")])

    def healthz(_request):
        return _json({"status": "alive"})

    def readyz(_request):
        checks = {}
        try:
            with hub.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = {"ok": True}
            lag = hub.log.oldest_unpublished_age()
            checks["relay_lag"] = {"ok": lag <= hub.settings.relay.max_lag_seconds, "seconds": round(lag, 3),
                                   "limit": hub.settings.relay.max_lag_seconds}
        except Exception as exc:
            checks["database"] = {"ok": False, "error": exc.__class__.__name__}
        broker_error = hub.relay.last_error
        checks["broker"] = {"ok": broker_error is None, **({"error": broker_error} if broker_error else {})}
        ready = all(check["ok"] for check in checks.values())
        return _json({"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503)

    views = {"healthz": healthz, "readyz": readyz}

    @Request.application
    def core(request: Request):
        adapter = url_map.bind_to_environ(request.environ)
        try:
            endpoint, _ = adapter.match()
        except Exception:
            if root is not None:
                return root
            return _json({"error": "not found", "path": request.path}, 404)
        return views[endpoint](request)

    mounts, root = {}, None
    for ep in entry_points(group="huitong.http"):
        for prefix, app in _mounted(ep.load()(hub)):
            if prefix == "/":
                root = app
            else:
                mounts[prefix] = app
    return DispatcherMiddleware(core, mounts)


def serve_options(settings) -> dict:
    """waitress options of the hub's HTTP server (`huitong serve`, and tests that run it)."""
    options = {"threads": settings.http.threads}
    if settings.http.trusted_proxy:
        options.update(trusted_proxy=settings.http.trusted_proxy, trusted_proxy_headers={"x-forwarded-proto"},
                       clear_untrusted_proxy_headers=True)
    return options


def _mounted(answer):
    """An entry point answers (prefix, app) or a list of them."""
    return answer if isinstance(answer, list) else [answer]
