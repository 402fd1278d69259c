"""The canonical message as every hop after the adapter sees it: an immutable Envelope with
its header fields, the business keys derived from its body, and the exact XML accepted."""
from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass, field

from lxml import etree

from schemas.namespaces import ENVELOPE, MESSAGE_TYPES
from schemas.semantic import fields_of
from schemas.validation import MessageValidator, Validated

_H = f"{{{ENVELOPE}}}"


@dataclass(frozen=True, slots=True)
class BusinessKeys:
    """What auditors and operators search by. Derived from the body, never sent apart."""

    case_number: str | None = None
    uscc: str | None = None
    citizen_id: str | None = None
    project_code: str | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    message_id: str
    type: str
    schema_version: str
    source: str
    sent_at: dt.datetime
    keys: BusinessKeys
    xml: bytes = field(repr=False)
    digest: str = field(repr=False)
    correlation_id: str | None = None
    target: str | None = None

    @property
    def region(self) -> str:
        return self.source[:6]

    @property
    def routing_key(self) -> str:
        """<type>.<region>.<department>.<system>: topic patterns such as CaseResult.3203*.# work."""
        return f"{self.type}.{self.source}"

    def to_xml(self) -> bytes:
        return self.xml


def parse_envelope(data: bytes, validator: MessageValidator) -> Envelope:
    """Validate bytes and return the Envelope, or raise RejectedMessage."""
    checked = validator.validate(data)
    if not data.startswith(_UTF8_DECLARATION) and (
            checked.root.getroottree().docinfo.encoding or "UTF-8").upper() not in ("UTF-8", "UTF8"):
        # Legacy senders write GBK/GB18030; the log and the wire carry UTF-8 only.
        data = etree.tostring(checked.root, encoding="UTF-8", xml_declaration=True)
    return _from_checked(checked, data)


_UTF8_DECLARATION = b"<?xml version='1.0' encoding='UTF-8'?>"


def _from_checked(checked: Validated, data: bytes) -> Envelope:
    header = checked.header
    message_type = header["Type"]
    return Envelope(
        message_id=header["MessageId"].lower(),
        type=message_type,
        schema_version=header["SchemaVersion"],
        source=header["Source"],
        sent_at=dt.datetime.fromisoformat(header["SentAt"]),
        keys=_business_keys(message_type, checked.fields),
        xml=data,
        digest=hashlib.sha256(data).hexdigest(),
        correlation_id=(header.get("CorrelationId") or "").lower() or None,
        target=header.get("Target"),
    )


def build_envelope(message_type: str, body: etree._Element, source: str,
                   validator: MessageValidator, **header) -> Envelope:
    """Wrap a body element into a validated canonical envelope (adapters use this)."""
    return parse_envelope(envelope_xml(message_type, body, source, **header), validator)


def envelope_xml(message_type: str, body: etree._Element, source: str, *, message_id: str | None = None,
                 correlation_id: str | None = None, target: str | None = None,
                 sent_at: dt.datetime | None = None, schema_version: str = "1.0") -> bytes:
    """Canonical envelope bytes around a body element, not yet validated."""
    if message_type not in MESSAGE_TYPES:
        raise ValueError(f"unknown message type {message_type}")
    root = etree.Element(f"{_H}Envelope", nsmap={"hx": ENVELOPE})
    header = etree.SubElement(root, f"{_H}Header")
    sent_at = sent_at or dt.datetime.now(dt.timezone.utc)
    for name, value in (("MessageId", message_id or str(uuid.uuid4())),
                        ("CorrelationId", correlation_id), ("Type", message_type),
                        ("SchemaVersion", schema_version), ("Source", source),
                        ("Target", target), ("SentAt", sent_at.isoformat(timespec="seconds"))):
        if value is not None:
            etree.SubElement(header, f"{_H}{name}").text = value
    etree.SubElement(root, f"{_H}Body").append(body)
    return etree.tostring(root, encoding="UTF-8", xml_declaration=True)


def envelope_text(message_type: str, body: str, source: str, *, message_id: str,
                  sent_at: dt.datetime, schema_version: str = "1.0") -> bytes:
    """Canonical envelope bytes around a body given as XML text (file ingestion's fast
    path; the identifiers in the header are the hub's own, so nothing needs escaping)."""
    if message_type not in MESSAGE_TYPES:
        raise ValueError(f"unknown message type {message_type}")
    return (f"{_UTF8_DECLARATION.decode()}\n<hx:Envelope xmlns:hx=\"{ENVELOPE}\"><hx:Header>"
            f"<hx:MessageId>{message_id}</hx:MessageId><hx:Type>{message_type}</hx:Type>"
            f"<hx:SchemaVersion>{schema_version}</hx:SchemaVersion><hx:Source>{source}</hx:Source>"
            f"<hx:SentAt>{sent_at.isoformat(timespec='seconds')}</hx:SentAt></hx:Header>"
            f"<hx:Body>{body}</hx:Body></hx:Envelope>").encode("utf-8")


def _text(fields: dict, name: str) -> str | None:
    el = fields.get(name)
    value = el.text if el is not None else None
    return value.strip() if value else None


def _business_keys(message_type: str, f: dict) -> BusinessKeys:
    if message_type == "CaseAccepted":
        applicant = fields_of(f["Applicant"])
        id_type, id_number = _text(applicant, "IdType"), _text(applicant, "IdNumber")
        return BusinessKeys(
            case_number=_text(f, "CaseNumber"),
            uscc=id_number if id_type == "USCC" else None,
            citizen_id=id_number if id_type == "CITIZEN_ID" else None,
            project_code=_text(f, "ProjectCode"))
    if message_type in ("CaseProcess", "CaseResult"):
        return BusinessKeys(case_number=_text(f, "CaseNumber"))
    if message_type == "EnterpriseRecord":
        return BusinessKeys(uscc=_text(f, "Uscc"))
    if message_type == "PersonRecord":
        return BusinessKeys(citizen_id=_text(f, "CitizenId"))
    if message_type == "ProjectRecord":
        return BusinessKeys(project_code=_text(f, "ProjectCode"), uscc=_text(f, "OwnerUscc"))
    return BusinessKeys()
