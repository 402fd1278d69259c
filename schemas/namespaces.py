"""The namespaces of version 1 and which family each message type belongs to."""
from __future__ import annotations

COMMON = "urn:huitong:common:1"
ENVELOPE = "urn:huitong:envelope:1"
CASE = "urn:huitong:case:1"
REGISTRY = "urn:huitong:registry:1"
SUPERVISION = "urn:huitong:supervision:1"

PREFIXES = {"hx": ENVELOPE, "c": CASE, "r": REGISTRY, "s": SUPERVISION, "hc": COMMON}

MESSAGE_TYPES: dict[str, str] = {
    "CaseAccepted": CASE,
    "CaseProcess": CASE,
    "CaseResult": CASE,
    "EnterpriseRecord": REGISTRY,
    "PersonRecord": REGISTRY,
    "ProjectRecord": REGISTRY,
    "ServiceItem": REGISTRY,
    "SupervisionAlert": SUPERVISION,
}

SUPPORTED_MAJOR = 1
