"""REST JSON API of the registries under /api/v1/catalog (OpenAPI at /api/v1/catalog/openapi.json),
mounted into the hub's HTTP app through the `huitong.http` entry point.

Callers are registered systems: HTTP Basic with the system id and its secret, over TLS. Grants
decide what each may read, exactly as for the SOAP queries."""
from __future__ import annotations

import base64
import binascii
import hmac
import json

from werkzeug.exceptions import HTTPException, NotFound as RouteNotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from bus.logs import get_logger
from catalog.openapi import openapi_document
from catalog.queries import CatalogQueries, NotFound, ReadNotGranted, Reader
from catalog.registries import BY_PLURAL, KeyInvalid, RecordType

PREFIX = "/api/v1/catalog"
log = get_logger("huitong.catalog.rest")


class Problem(Exception):
    def __init__(self, status: int, code: str, text: str):
        super().__init__(text)
        self.status, self.code, self.text = status, code, text


def _json(payload, status: int = 200, headers=None) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False, separators=(",", ":")), status=status,
                    mimetype="application/json", headers=headers)


class CatalogApi:
    def __init__(self, hub):
        self.hub = hub
        settings = hub.settings.catalog
        self.allow_http = settings.allow_http
        self.queries = CatalogQueries(hub.engine, max_search_results=settings.max_search_results)
        self.openapi = json.dumps(openapi_document(PREFIX), ensure_ascii=False).encode()
        self.url_map = Map([
            Rule("/openapi.json", endpoint="openapi"),
            Rule("/enterprises", endpoint="search"),
            Rule("/cases/<case_number>", endpoint="case"),
            Rule("/conflicts", endpoint="all_conflicts"),
            Rule("/<plural>/<key>", endpoint="record"),
            Rule("/<plural>/<key>/cases", endpoint="cases"),
            Rule("/<plural>/<key>/history", endpoint="history"),
            Rule("/<plural>/<key>/conflicts", endpoint="conflicts"),
        ], strict_slashes=False)

    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            if request.method not in ("GET", "HEAD"):
                raise Problem(405, "METHOD_NOT_ALLOWED", "the catalog API is read-only: GET")
            endpoint, args = self.url_map.bind_to_environ(environ).match()
            if endpoint == "openapi":
                response = Response(self.openapi, mimetype="application/json")
            else:
                reader = self._authenticate(request)
                response = _json(getattr(self, f"_{endpoint}")(request, reader, **args))
        except Problem as problem:
            response = _json({"error": {"code": problem.code, "text": problem.text}}, problem.status,
                             {"WWW-Authenticate": 'Basic realm="huitong"'} if problem.status == 401 else None)
        except KeyInvalid as exc:
            response = _json({"error": {"code": exc.code, "text": str(exc)}}, 400)
        except ReadNotGranted as exc:
            response = _json({"error": {"code": exc.code, "text": str(exc)}}, 403)
        except NotFound as exc:
            response = _json({"error": {"code": exc.code, "text": str(exc)}}, 404)
        except RouteNotFound:
            response = _json({"error": {"code": "NOT_FOUND", "text": f"no such resource {request.path}; "
                                        f"see {PREFIX}/openapi.json"}}, 404)
        except HTTPException as exc:
            response = _json({"error": {"code": "BAD_REQUEST", "text": exc.description}}, exc.code or 400)
        return response(environ, start_response)

    # -- who is asking --------------------------------------------------------------------------
    def _authenticate(self, request: Request) -> Reader:
        secure = request.scheme == "https" or request.headers.get("X-Forwarded-Proto") == "https"
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            raise Problem(401, "UNAUTHENTICATED", "send HTTP Basic credentials: the system id and its secret")
        if not secure and not self.allow_http:
            raise Problem(403, "UNAUTHENTICATED", "credentials are taken over TLS only (https); "
                          "catalog.allow_http lets plain HTTP through on a trusted network")
        try:
            system_id, _, secret = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Problem(401, "UNAUTHENTICATED", "the Basic credentials are not base64 of id:secret") from None
        identity, expected = self.hub.systems.credentials(system_id)
        if identity is None or expected is None or not hmac.compare_digest(secret.encode(), expected.encode()):
            log.warning("catalog.refused", code="UNAUTHENTICATED", system=system_id,
                        remote_addr=request.remote_addr)
            raise Problem(401, "UNAUTHENTICATED", "unknown system or wrong secret")
        if not identity.enabled:
            raise Problem(401, "SYSTEM_DISABLED", f"system {system_id} is disabled")
        return Reader(identity.id, identity.grants)

    # -- endpoints ------------------------------------------------------------------------------
    def _type(self, plural: str) -> RecordType:
        record_type = BY_PLURAL.get(plural)
        if record_type is None:
            raise Problem(404, "NOT_FOUND", f"no registry {plural!r}; known: {', '.join(BY_PLURAL)}")
        return record_type

    def _record(self, request, reader, plural, key):
        record_type = self._type(plural)
        return self.queries.get(reader, record_type, record_type.lookup_key(key, request.args.get("version")))

    def _cases(self, request, reader, plural, key):
        return {"cases": self._record(request, reader, plural, key).get("cases", [])}

    def _history(self, request, reader, plural, key):
        record_type = self._type(plural)
        key = record_type.lookup_key(key, request.args.get("version"))
        return {"changes": self.queries.history(reader, record_type, key)}

    def _conflicts(self, request, reader, plural, key):
        record_type = self._type(plural)
        key = record_type.lookup_key(key, request.args.get("version"))
        return {"conflicts": self.queries.conflicts(reader, record_type, key)}

    def _all_conflicts(self, request, reader):
        return {"conflicts": self.queries.conflicts(reader, limit=_int(request, "limit", 100))}

    def _case(self, request, reader, case_number):
        return self.queries.case(reader, case_number)

    def _search(self, request, reader):
        prefix = request.args.get("prefix", "").strip()
        if not prefix:
            raise Problem(400, "VALUE_INVALID", "give prefix=<the start of the enterprise name>")
        region = request.args.get("region") or None
        if region and not (region.isdigit() and len(region) in (2, 4, 6)):
            raise Problem(400, "REGION_CODE", f"region {region!r} is not a 2-, 4- or 6-digit region code")
        return self.queries.search_enterprises(reader, prefix, region=region, limit=_int(request, "limit", 20),
                                               after=request.args.get("after"))


def _int(request, name: str, default: int) -> int:
    value = request.args.get(name)
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise Problem(400, "NUMBER_FORMAT", f"{name} must be a positive whole number")
    return int(value)


def mount(hub):
    """Entry point: (prefix, WSGI app) for the hub's HTTP app."""
    return PREFIX, CatalogApi(hub)

