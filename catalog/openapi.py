"""The OpenAPI 3.0 document of the catalog's REST API, built from the registry declarations
so that it cannot drift from what the API answers."""
from __future__ import annotations

from catalog.registries import RECORD_TYPES, RecordType

_KINDS = {"text": {"type": "string"}, "date": {"type": "string", "format": "date"},
          "int": {"type": "integer"}, "decimal": {"type": "string", "description": "decimal number"},
          "list": {"type": "array", "items": {"type": "object"}}}
_ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _record_schema(record_type: RecordType) -> dict:
    properties = {}
    for f in record_type.all_fields:
        schema = dict(_KINDS[f.kind])
        if f.personal:
            schema["description"] = "personal data: masked (320382********1234, 138****5678) without the UNMASK grant"
        properties[f.name] = {**schema, "nullable": True} if f not in record_type.keys else schema
    properties["sources"] = {"type": "object", "description": "per field: the system, message and time its value came from",
                             "additionalProperties": {"$ref": "#/components/schemas/Source"}}
    properties["created_at"] = {"type": "string", "format": "date-time"}
    properties["updated_at"] = {"type": "string", "format": "date-time"}
    if record_type.name != "service_item":
        properties["cases"] = {"type": "array", "items": {"$ref": "#/components/schemas/Case"},
                               "description": "application history, newest first"}
    return {"type": "object", "properties": properties, "required": [f.name for f in record_type.keys]}


def _get(summary: str, schema_ref: str, parameters: list, grant: str) -> dict:
    return {"get": {"summary": summary, "description": f"Needs the {grant} grant.", "parameters": parameters,
                    "security": [{"basic": []}],
                    "responses": {"200": {"description": "found", "content": {"application/json": {
                        "schema": {"$ref": schema_ref}}}},
                        "400": _ERROR, "401": _ERROR, "403": _ERROR, "404": _ERROR}}}


def openapi_document(prefix: str) -> dict:
    schemas = {f"{t.name.title().replace('_', '')}": _record_schema(t) for t in RECORD_TYPES.values()}
    schemas.update({
        "Source": {"type": "object", "properties": {"system": {"type": "string"}, "message_id": {"type": "string"},
                                                    "at": {"type": "string", "format": "date-time"}}},
        "Case": {"type": "object", "properties": {name: {"type": "string", "nullable": True} for name in (
            "case_number", "role", "status", "result", "item_code", "item_version", "item_name", "department_code",
            "department_name", "region_code", "case_type", "channel", "applicant_kind", "applicant_name",
            "applicant_id_type", "applicant_id", "registration_number", "project_code", "applied_at", "accepted_at",
            "promised_date", "last_step", "last_step_at", "finished_at", "certificate_number", "source")}},
        "SearchResult": {"type": "object", "properties": {
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "uscc": {"type": "string"}, "name": {"type": "string"}, "region_code": {"type": "string"},
                "status": {"type": "string"}, "legal_representative": {"type": "string"}}}},
            "next": {"type": "string", "nullable": True, "description": "pass as after= for the next page"}}},
        "History": {"type": "object", "properties": {"changes": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "integer"}, "action": {"type": "string", "enum": ["CREATED", "UPDATED"]},
            "system": {"type": "string"}, "message_id": {"type": "string"},
            "message_at": {"type": "string", "format": "date-time"}, "applied_at": {"type": "string", "format": "date-time"},
            "changes": {"type": "object", "description": "field: [old, new]"}}}}}},
        "Conflicts": {"type": "object", "properties": {"conflicts": {"type": "array", "items": {"type": "object"}}}},
        "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
            "code": {"type": "string", "description": "a stable code of the hub's error tree"},
            "text": {"type": "string"}}}}},
    })
    key = {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}
    paths = {
        "/enterprises": _get("Search enterprises by the start of their name", "#/components/schemas/SearchResult", [
            {"name": "prefix", "in": "query", "required": True, "schema": {"type": "string"}},
            {"name": "region", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]{2}([0-9]{2}){0,2}$"}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 20}},
            {"name": "after", "in": "query", "schema": {"type": "string"}}], "READ_ENTERPRISE"),
        "/cases/{case_number}": _get("One case of the case index", "#/components/schemas/Case", [
            {"name": "case_number", "in": "path", "required": True, "schema": {"type": "string"}}],
            "READ_ENTERPRISE or READ_PERSON (by applicant)"),
        "/conflicts": _get("Recorded conflicts of the registries the caller may read",
                           "#/components/schemas/Conflicts", [], "READ_*"),
    }
    for t in RECORD_TYPES.values():
        params = [key] + ([{"name": "version", "in": "query", "schema": {"type": "string"},
                            "description": "default: the latest"}] if len(t.keys) > 1 else [])
        name = t.name.title().replace("_", "")
        paths[f"/{t.plural}/{{key}}"] = _get(f"One {t.title} record", f"#/components/schemas/{name}", params, t.read_grant)
        paths[f"/{t.plural}/{{key}}/history"] = _get(f"History of a {t.name}", "#/components/schemas/History",
                                                     params, t.read_grant)
        paths[f"/{t.plural}/{{key}}/conflicts"] = _get(f"Conflicts of a {t.name}", "#/components/schemas/Conflicts",
                                                       params, t.read_grant)
    return {"openapi": "3.0.3",
            "info": {"title": "Huitong catalog (信息资源库)", "version": "1",
                     "description": "The shared enterprise, person, project and service-item registries."},
            "servers": [{"url": prefix}], "paths": paths,
            "components": {"schemas": schemas, "securitySchemes": {"basic": {"type": "http", "scheme": "basic",
                                                                             "description": "system id : secret"}}}}
