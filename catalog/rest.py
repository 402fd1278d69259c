"""REST JSON API of the registries under /api/v1/catalog (OpenAPI at /api/v1/catalog/openapi.json),
mounted into the hub's HTTP app through the `huitong.http` entry point.

Callers are registered systems: HTTP Basic with the system id and its secret, over TLS. Grants
decide what each may read, exactly as for the SOAP queries."""
from __future__ import annotations

import json

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Response

from bus.json_api import JsonApi, Problem, positive_int
from catalog.openapi import openapi_document
from catalog.queries import CatalogQueries, NotFound, ReadNotGranted, Reader
from catalog.registries import BY_PLURAL, KeyInvalid, RecordType

PREFIX = "/api/v1/catalog"


class CatalogApi(JsonApi):
    prefix = PREFIX
    allow_http_setting = "catalog.allow_http"
    public = frozenset({"openapi"})
    statuses = {KeyInvalid: 400, ReadNotGranted: 403, NotFound: 404}

    def __init__(self, hub):
        settings = hub.settings.catalog
        super().__init__(hub, Map([
            Rule("/openapi.json", endpoint="openapi"),
            Rule("/enterprises", endpoint="search"),
            Rule("/cases/<case_number>", endpoint="case"),
            Rule("/conflicts", endpoint="all_conflicts"),
            Rule("/<plural>/<key>", endpoint="record"),
            Rule("/<plural>/<key>/cases", endpoint="cases"),
            Rule("/<plural>/<key>/history", endpoint="history"),
            Rule("/<plural>/<key>/conflicts", endpoint="conflicts"),
        ], strict_slashes=False), allow_http=settings.allow_http)
        self.queries = CatalogQueries(hub.engine, max_search_results=settings.max_search_results)
        self.openapi = json.dumps(openapi_document(PREFIX), ensure_ascii=False).encode()

    def authenticate(self, request) -> Reader:
        identity = super().authenticate(request)
        return Reader(identity.id, identity.grants)

    # -- endpoints ------------------------------------------------------------------------------
    def _openapi(self, request, reader):
        return Response(self.openapi, mimetype="application/json")

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
        return {"conflicts": self.queries.conflicts(reader, limit=positive_int(request, "limit", 100))}

    def _case(self, request, reader, case_number):
        return self.queries.case(reader, case_number)

    def _search(self, request, reader):
        prefix = request.args.get("prefix", "").strip()
        if not prefix:
            raise Problem(400, "VALUE_INVALID", "give prefix=<the start of the enterprise name>")
        region = request.args.get("region") or None
        if region and not (region.isdigit() and len(region) in (2, 4, 6)):
            raise Problem(400, "REGION_CODE", f"region {region!r} is not a 2-, 4- or 6-digit region code")
        return self.queries.search_enterprises(reader, prefix, region=region,
                                               limit=positive_int(request, "limit", 20),
                                               after=request.args.get("after"))


def mount(hub):
    """Entry point: (prefix, WSGI app) for the hub's HTTP app."""
    return PREFIX, CatalogApi(hub)
