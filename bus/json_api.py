"""What the hub's read-only JSON APIs share (/api/v1/catalog, /api/v1/log): callers are
registered systems signing in with HTTP Basic (system id and secret) over TLS; errors are
JSON {"error": {"code", "text"}} with the stable codes of bus/errors.py."""
from __future__ import annotations

import base64
import binascii
import hmac
import json

from werkzeug.exceptions import HTTPException, NotFound as RouteNotFound
from werkzeug.routing import Map
from werkzeug.wrappers import Request, Response

from bus.errors import HuitongError
from bus.logs import get_logger

log = get_logger("huitong.api")


class Problem(HuitongError):
    """An answer other than 200, with its HTTP status."""

    def __init__(self, status: int, code: str, text: str):
        super().__init__(text, code=code)
        self.status, self.text = status, text


def json_response(payload, status: int = 200, headers=None) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False, separators=(",", ":")), status=status,
                    mimetype="application/json", headers=headers)


class JsonApi:
    """A WSGI app of GET endpoints `_<endpoint>(request, identity, **args)`; `public` endpoints
    (the OpenAPI document) are answered without credentials. Subclasses map their own errors
    to statuses in `statuses` (exception class -> HTTP status)."""

    prefix = ""
    allow_http_setting = ""  # the setting that lets credentials over plain HTTP, for the error text
    public: frozenset[str] = frozenset()
    statuses: dict[type, int] = {}

    def __init__(self, hub, url_map: Map, *, allow_http: bool):
        self.hub = hub
        self.url_map = url_map
        self.allow_http = allow_http

    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            if request.method not in ("GET", "HEAD"):
                raise Problem(405, "METHOD_NOT_ALLOWED", "this API is read-only: GET")
            endpoint, args = self.url_map.bind_to_environ(environ).match()
            identity = None if endpoint in self.public else self.authenticate(request)
            answer = getattr(self, f"_{endpoint}")(request, identity, **args)
            response = answer if isinstance(answer, Response) else json_response(answer)
        except Problem as problem:
            response = json_response({"error": {"code": problem.code, "text": problem.text}}, problem.status,
                                     {"WWW-Authenticate": 'Basic realm="huitong"'} if problem.status == 401 else None)
        except RouteNotFound:
            response = json_response({"error": {"code": "NOT_FOUND", "text": f"no such resource {request.path}; "
                                                f"see {self.prefix}/openapi.json"}}, 404)
        except HTTPException as exc:
            response = json_response({"error": {"code": "BAD_REQUEST", "text": exc.description}}, exc.code or 400)
        except HuitongError as exc:
            status = next((s for cls, s in self.statuses.items() if isinstance(exc, cls)), 400)
            response = json_response({"error": {"code": exc.code, "text": str(exc)}}, status)
        return response(environ, start_response)

    def authenticate(self, request: Request):
        """The calling system's identity, from HTTP Basic over TLS (or plain HTTP when allowed)."""
        secure = request.scheme == "https" or request.headers.get("X-Forwarded-Proto") == "https"
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            raise Problem(401, "UNAUTHENTICATED", "send HTTP Basic credentials: the system id and its secret")
        if not secure and not self.allow_http:
            raise Problem(403, "UNAUTHENTICATED", "credentials are taken over TLS only (https); "
                          f"{self.allow_http_setting or 'allow_http'} lets plain HTTP through on a trusted network")
        try:
            system_id, _, secret = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Problem(401, "UNAUTHENTICATED", "the Basic credentials are not base64 of id:secret") from None
        identity, expected = self.hub.systems.credentials(system_id)
        if identity is None or expected is None or not hmac.compare_digest(secret.encode(), expected.encode()):
            log.warning("api.refused", code="UNAUTHENTICATED", system=system_id, api=self.prefix,
                        remote_addr=request.remote_addr)
            raise Problem(401, "UNAUTHENTICATED", "unknown system or wrong secret")
        if not identity.enabled:
            raise Problem(401, "SYSTEM_DISABLED", f"system {system_id} is disabled")
        return identity


def positive_int(request: Request, name: str, default: int) -> int:
    value = request.args.get(name)
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise Problem(400, "NUMBER_FORMAT", f"{name} must be a positive whole number")
    return int(value)
