"""The OpenAPI 3.1 description of /api/v1/console: the JSON behind every console page."""
from __future__ import annotations

PREFIX = "/api/v1/console"


def _get(summary: str, params: tuple = ()) -> dict:
    return {"get": {"summary": summary, "parameters": [
        {"name": p.strip("{}"), "in": "path" if p.startswith("{") else "query", "required": p.startswith("{"),
         "schema": {"type": "string"}} for p in params],
        "responses": {"200": {"description": "the page's data"}, "401": {"description": "not signed in"}}}}


def _post(summary: str, body: dict) -> dict:
    return {"post": {"summary": summary, "parameters": [{"name": "X-CSRF-Token", "in": "header", "required": True,
                                                         "schema": {"type": "string"}}],
                     "requestBody": {"content": {"application/json": {"schema": {"type": "object",
                                                                                  "properties": body}}}},
                     "responses": {"200": {"description": "done"}, "401": {"description": "not signed in"},
                                   "403": {"description": "the role may not, or the CSRF token is wrong"}}}}


def openapi() -> dict:
    reason = {"reason": {"type": "string"}}
    paths = {
        "/overview": _get("Messages in and out per minute, rates, backlog, dead letters, unsealed events, health"),
        "/routes": _get("One row per route: state, msg/s, totals, in flight, queue depth, dead letters, times"),
        "/routes/{route}/pause": _post("Pause a route (operator, admin); reason required", reason),
        "/routes/{route}/resume": _post("Resume a paused route (operator, admin)", reason),
        "/systems": _get("Department systems: last seen, pushes today, rejection rate, top reasons"),
        "/supervision": _get("Electronic supervision: open cases by colour per department, overdue and nearly due "
                             "cases, anomalies", ("department",)),
        "/systems/{system_id}/enabled": _post("Enable or disable a system (admin)",
                                              {"enabled": {"type": "boolean"}, **reason}),
        "/dead-letters": _get("Dead letters, optionally of one route", ("route",)),
        "/dead-letters/{letter_id}": _get("One dead letter with its message (masked) and last error",
                                          ("{letter_id}",)),
        "/dead-letters/act": _post("Retry or discard dead letters (operator, admin); discard needs a reason",
                                   {"action": {"enum": ["retry", "discard"]},
                                    "ids": {"type": "array", "items": {"type": "integer"}}, **reason}),
        "/messages": _get("Search the exchange log", ("since", "until", "system", "route", "type", "status",
                                                      "case_number", "uscc", "citizen_id", "project_code", "after")),
        "/messages/{message_id}": _get("A message's lineage timeline", ("{message_id}", "source")),
        "/cases/{case_number}": _get("Every message of a case, in order", ("{case_number}",)),
        "/cases/{case_number}/export": _post("The case's evidence bundle as a zip (auditor, admin)", {}),
        "/cases/{case_number}/replay": _post("Replay the case's messages through the routes (auditor, admin)",
                                             {"mode": {"enum": ["dry-run", "deliver"]}, **reason}),
        "/audit": _get("The sealed chain: last seal, unsealed events, last verification"),
        "/audit/verify": _post("Verify the whole chain now, in the background", {}),
        "/users": {**_get("Console users (admin)"),
                   **_post("Add a user (admin)", {"username": {"type": "string"}, "password": {"type": "string"},
                                                  "role": {"enum": ["operator", "auditor", "admin"]}})},
        "/users/{username}": _post("Change a user's role, password, or enabled (admin)",
                                   {"role": {"type": "string"}, "enabled": {"type": "boolean"},
                                    "password": {"type": "string"}}),
    }
    return {"openapi": "3.1.0",
            "info": {"title": "Huitong console API", "version": "1",
                     "description": "Signed in with the console's session cookie (POST /login); POSTs carry the "
                                    "session's CSRF token in X-CSRF-Token. Errors: {error: {code, text}}."},
            "paths": {PREFIX + path: spec for path, spec in paths.items()}}
