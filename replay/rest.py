"""REST JSON API of the exchange log under /api/v1/log (OpenAPI at /api/v1/log/openapi.json),
mounted through the `huitong.http` entry point: search and lineage, as `huitong log search`
and `huitong log show`. A system with READ_LOG reads the whole log; any other system reads
its own messages only. Each read is an AUDIT_READ event."""
from __future__ import annotations

import datetime as dt
import json

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Response

from bus.json_api import JsonApi, Problem, positive_int
from bus.systems import READ_LOG
from bus.times import parse_moment
from replay.lineage import STATUSES, LogQueries, LogSearch, MessageNotFound, SearchInvalid

PREFIX = "/api/v1/log"
SEARCH_PARAMETERS = {"since": "received at or after (ISO 8601; without a zone, Beijing time)",
                     "until": "received before", "system": "the sending system's id", "route": "a route's id",
                     "type": "message type", "status": f"one of {', '.join(STATUSES)}", "case": "case number",
                     "uscc": "enterprise USCC", "citizen_id": "citizen id (masked in answers)",
                     "project": "project code", "limit": "at most this many (default 50, at most 500)",
                     "after": "the `next` of the previous page"}


class LogApi(JsonApi):
    prefix = PREFIX
    allow_http_setting = "audit.allow_http"
    public = frozenset({"openapi"})
    statuses = {SearchInvalid: 400, MessageNotFound: 404}

    def __init__(self, hub):
        super().__init__(hub, Map([Rule("/openapi.json", endpoint="openapi"),
                                   Rule("/messages", endpoint="search"),
                                   Rule("/messages/<message_id>", endpoint="lineage")], strict_slashes=False),
                         allow_http=hub.settings.audit.allow_http)
        self.queries = LogQueries(hub.engine)
        self.openapi = json.dumps(openapi_document(), ensure_ascii=False).encode()

    def _openapi(self, request, identity):
        return Response(self.openapi, mimetype="application/json")

    def _search(self, request, identity):
        args = request.args
        criteria = LogSearch(since=_moment(args, "since"), until=_moment(args, "until"), system=args.get("system"),
                             route=args.get("route"), type=args.get("type"),
                             status=(args.get("status") or "").upper() or None, case_number=args.get("case"),
                             uscc=args.get("uscc"), citizen_id=args.get("citizen_id"),
                             project_code=args.get("project"))
        after = positive_int(request, "after", 0) or None
        return self.queries.search(f"system:{identity.id}", criteria, limit=positive_int(request, "limit", 50),
                                   after=after, only_source=_only_own(identity))

    def _lineage(self, request, identity, message_id):
        return self.queries.lineage(f"system:{identity.id}", message_id, source=request.args.get("source"),
                                    only_source=_only_own(identity))


def _only_own(identity) -> str | None:
    return None if READ_LOG in identity.grants else identity.id


def _moment(args, name: str) -> dt.datetime | None:
    value = args.get(name)
    if not value:
        return None
    try:
        return parse_moment(value)
    except ValueError:
        raise Problem(400, "DATE_FORMAT", f"{name} {value!r} is not an ISO 8601 date or time") from None


def openapi_document() -> dict:
    error = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    ok = {"description": "found", "content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Huitong exchange log", "version": "1",
                 "description": "Search the exchange log and trace a message. HTTP Basic with a system id and "
                                "secret; READ_LOG reads everything, other systems their own messages. Citizen ids "
                                "and phones are masked. Every read is logged."},
        "servers": [{"url": PREFIX}],
        "components": {"securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
                       "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                           "code": {"type": "string"}, "text": {"type": "string"}}}}}}},
        "paths": {
            "/messages": {"get": {"summary": "Search, newest first", "security": [{"basic": []}],
                                  "parameters": [{"name": n, "in": "query", "required": False, "description": d,
                                                  "schema": {"type": "string"}} for n, d in SEARCH_PARAMETERS.items()],
                                  "responses": {"200": ok, "400": error, "401": error, "403": error}}},
            "/messages/{message_id}": {"get": {
                "summary": "A message's lineage: events with timings, deliveries, derived messages",
                "security": [{"basic": []}],
                "parameters": [{"name": "message_id", "in": "path", "required": True, "schema": {"type": "string"}},
                               {"name": "source", "in": "query", "required": False, "schema": {"type": "string"},
                                "description": "the sending system, when two used the same id"}],
                "responses": {"200": ok, "400": error, "401": error, "404": error}}}},
    }


def mount(hub):
    """Entry point: (prefix, WSGI app) for the hub's HTTP app."""
    return PREFIX, LogApi(hub)
