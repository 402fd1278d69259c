"""Validation of canonical messages: caps and hardened parse, XSD through a compiled
lxml schema on the hot path, then the semantic checks. On failure only, xmlschema
builds the readable per-field report (it is ~30x slower, so it never runs on good mail)."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import NamedTuple

from lxml import etree

from bus.errors import FieldError, RejectedMessage
from schemas import semantic
from schemas.hardened import HardenedParser, XmlLimits, find_xinclude
from schemas.identifiers import check_region
from schemas.namespaces import ENVELOPE, MESSAGE_TYPES, SUPPORTED_MAJOR
from schemas.paths import path_of, strip_prefixes

XSD_DIR = Path(__file__).parent / "xsd"
BUNDLE = XSD_DIR / "huitong-1.xsd"
MAX_REPORTED = 20
CANONICAL_DEPTH = 8  # deepest element a canonical message can have (Envelope/Body/... is 6)
_MAJOR_PREFIX = f"{SUPPORTED_MAJOR}."

_COMPILE_LOCK = threading.Lock()
_ENVELOPE = f"{{{ENVELOPE}}}Envelope"
_HEADER = f"{{{ENVELOPE}}}Header"
_BODY = f"{{{ENVELOPE}}}Body"


class Validated(NamedTuple):
    """A message that passed every check, with what the envelope needs already indexed
    (walking lxml children creates Python proxies, so the hot path walks them once)."""

    root: etree._Element
    header: dict[str, str]  # header field texts by local name
    body: etree._Element  # the message element inside hx:Body
    fields: dict[str, etree._Element]  # the body's children by local name


class MessageValidator:
    """Turns bytes into a validated envelope tree, or raises RejectedMessage."""

    def __init__(self, limits: XmlLimits = XmlLimits()):
        self.parser = HardenedParser(limits)
        self._check_depth_first = limits.max_depth < CANONICAL_DEPTH
        self._local = threading.local()
        self._report_schema = None
        self._report_lock = threading.Lock()

    def _schema(self) -> etree.XMLSchema:
        schema = getattr(self._local, "schema", None)
        if schema is None:
            # libxml2 fails to compile the same schema in two threads at once: one at a time.
            with _COMPILE_LOCK:
                # Default caps, not the configured ones: those are for senders, not our XSDs.
                schema = self._local.schema = etree.XMLSchema(HardenedParser().parse_file(BUNDLE))
        return schema

    def validate(self, data: bytes) -> Validated:
        # libxml2 itself stops at 256 levels while parsing; within that, a document our
        # schemas accept is at most CANONICAL_DEPTH deep, so the configured depth cap only
        # needs checking when the schema refuses (or when the cap is below the schemas' depth).
        root = self.parser.parse(data, check_depth=self._check_depth_first)
        schema = self._schema()
        if not schema.validate(root):
            self.parser.check_depth(root)
            raise RejectedMessage(self._report(root, schema), **_identity(root))
        header = {child.tag.rpartition("}")[2]: child.text for child in root[0]}
        body = root[1][0]
        problems = _header_problems(header, body)
        fields = semantic.fields_of(body)
        if not problems:
            problems = semantic.check_body(header["Type"], fields)
        if problems:
            raise RejectedMessage(problems, **_identity(root))
        return Validated(root, header, body, fields)

    # -- failure path -------------------------------------------------------------------
    def _report(self, root: etree._Element, schema: etree.XMLSchema) -> list[FieldError]:
        xinclude = find_xinclude(root)
        if xinclude is not None:
            return [FieldError(path_of(xinclude), "XML_XINCLUDE_FORBIDDEN",
                               "XInclude is not processed; send the content itself")]
        body = root.find(f"{_BODY}/*") if root.tag == _ENVELOPE else None
        if body is not None:
            qname = etree.QName(body)
            if MESSAGE_TYPES.get(qname.localname) != qname.namespace:
                return [FieldError(path_of(body), "UNKNOWN_TYPE",
                                   f"no message type {qname.localname} in namespace {qname.namespace}")]
        errors = []
        for error in self._xmlschema().iter_errors(root):
            path = _error_path(error)
            errors.append(FieldError(path, "XSD_INVALID", _reason(error)))
            if len(errors) >= MAX_REPORTED:
                break
        if not errors:  # xmlschema and libxml2 disagree: fall back to libxml2's words
            errors = [FieldError("/", "XSD_INVALID", e.message) for e in schema.error_log][:MAX_REPORTED]
        return errors

    def _xmlschema(self):
        with self._report_lock:
            if self._report_schema is None:
                import xmlschema  # loaded on the first rejection only

                self._report_schema = xmlschema.XMLSchema10(str(BUNDLE))
            return self._report_schema


def _error_path(error) -> str:
    if isinstance(error.elem, etree._Element):
        return path_of(error.elem)
    return strip_prefixes(error.path) if error.path else "/"


def _reason(error) -> str:
    reason = error.reason or error.message
    if error.elem is not None and error.elem.text and len(error.elem.text) < 80 and "value" not in reason:
        return f"{reason} (value {error.elem.text.strip()!r})"
    return reason


def _header_problems(header: dict[str, str], body: etree._Element) -> list[FieldError]:
    # Header elements occur once each (XSD), so their paths are fixed.
    namespace, _, local = body.tag[1:].partition("}")
    problems = []
    if MESSAGE_TYPES.get(local) != namespace:
        problems.append(FieldError(path_of(body), "UNKNOWN_TYPE",
                                   f"no message type {local} in {namespace}"))
    elif header["Type"] != local:
        problems.append(FieldError("/Envelope/Header/Type", "TYPE_MISMATCH",
                                   f"header says {header['Type']}, body carries {local}"))
    version = header["SchemaVersion"]
    if not version.startswith(_MAJOR_PREFIX):
        problems.append(FieldError("/Envelope/Header/SchemaVersion", "SCHEMA_VERSION",
                                   f"schema version {version} is not supported; use {SUPPORTED_MAJOR}.x"))
    region_problem = check_region(header["Source"][:6])
    if region_problem:
        problems.append(FieldError("/Envelope/Header/Source", "REGION_CODE", region_problem[1]))
    return problems


def _identity(root: etree._Element) -> dict:
    """Message id and source of a rejected message, when it has them, for its receipt."""
    if root.tag != _ENVELOPE:
        return {}
    message_id = root.findtext(f"{_HEADER}/{{{ENVELOPE}}}MessageId")
    return {"message_id": message_id.strip().lower() if message_id else None,
            "source": root.findtext(f"{_HEADER}/{{{ENVELOPE}}}Source")}
