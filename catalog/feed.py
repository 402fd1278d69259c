"""What a canonical message tells the registries. Registry messages (EnterpriseRecord, …)
offer a whole record; case messages offer what they know of the applicant, the legal
representative, the agent, the project and the service item, and the case itself for the
case index, with the links that make up each record's application history."""
from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from catalog.merge import Origin
from schemas import identifiers as ids
from schemas.namespaces import CASE, ENVELOPE, REGISTRY

_H, _C, _R = f"{{{ENVELOPE}}}", f"{{{CASE}}}", f"{{{REGISTRY}}}"


@dataclass(frozen=True, slots=True)
class Offer:
    record_type: str
    key: tuple[str, ...]
    values: dict[str, Any]  # plain values; None says nothing


@dataclass(slots=True)
class Feed:
    message_id: str
    source: str
    type: str
    origin: Origin
    offers: list[Offer] = field(default_factory=list)
    case: dict[str, Any] | None = None  # case-index columns this message reports
    links: list[tuple[str, str, str]] = field(default_factory=list)  # record_type, key text, role
    registration: dict[str, Any] | None = None


def read_message(root: etree._Element) -> Feed | None:
    """The registries' part of a canonical envelope, or None for a type they do not take."""
    header = root.find(f"{_H}Header")
    body = root.find(f"{_H}Body")
    if header is None or body is None or len(body) == 0:
        return None
    message_id = header.findtext(f"{_H}MessageId")
    source = header.findtext(f"{_H}Source")
    sent_at = dt.datetime.fromisoformat(header.findtext(f"{_H}SentAt"))
    element = body[0]
    message_type = etree.QName(element).localname
    reader = _READERS.get(message_type)
    if reader is None:
        return None
    feed = Feed(message_id, source, message_type, Origin.of(source, message_id, sent_at))
    reader(element, feed)
    return feed


def _text(el: etree._Element | None, path: str, ns: str) -> str | None:
    if el is None:
        return None
    found = el.find("/".join(f"{ns}{part}" for part in path.split("/")))
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def _date(value: str | None) -> str | None:
    return dt.date.fromisoformat(value).isoformat() if value else None


def _money(value: str | None) -> str | None:
    return format(decimal.Decimal(value).normalize(), "f") if value else None


def _int(value: str | None) -> int | None:
    return int(value) if value else None


def _children(el: etree._Element | None, ns: str) -> list[dict[str, Any]] | None:
    """<Qualifications><Qualification><Name>… as [{"name": …}, …] (snake_case keys)."""
    if el is None:
        return None
    out = []
    for item in el:
        out.append({_snake(etree.QName(child).localname): (child.text or "").strip() for child in item})
    return out


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


# -- registry messages ----------------------------------------------------------------------------
def _enterprise(el, feed: Feed) -> None:
    uscc = _text(el, "Uscc", _R)
    feed.offers.append(Offer("enterprise", (uscc,), {
        "name": _text(el, "Name", _R),
        "legal_representative": _text(el, "LegalRepresentative/Name", _R),
        "legal_representative_id": _text(el, "LegalRepresentative/IdNumber", _R),
        "registered_at": _date(_text(el, "RegisteredAt", _R)),
        "address": _text(el, "Address", _R),
        "region_code": _text(el, "RegionCode", _R),
        "status": _text(el, "Status", _R),
        "qualifications": _children(el.find(f"{_R}Qualifications"), _R),
        "credit_records": _children(el.find(f"{_R}CreditRecords"), _R),
    }))
    representative = el.find(f"{_R}LegalRepresentative")
    _person_party(feed, representative, _R)


def _person(el, feed: Feed) -> None:
    feed.offers.append(Offer("person", (_text(el, "CitizenId", _R),), {
        "name": _text(el, "Name", _R),
        "gender": _text(el, "Gender", _R),
        "birth_date": _date(_text(el, "BirthDate", _R)),
        "address": _text(el, "Address", _R),
        "phone": _text(el, "Phone", _R),
    }))


def _project(el, feed: Feed) -> None:
    feed.offers.append(Offer("project", (_text(el, "ProjectCode", _R),), {
        "name": _text(el, "Name", _R),
        "owner_uscc": _text(el, "OwnerUscc", _R),
        "region_code": _text(el, "RegionCode", _R),
        "total_investment": _money(_text(el, "TotalInvestment", _R)),
        "status": _text(el, "Status", _R),
    }))


def _service_item(el, feed: Feed) -> None:
    feed.offers.append(Offer("service_item", (_text(el, "Code", _R), _text(el, "Version", _R)), {
        "name": _text(el, "Name", _R),
        "department_code": _text(el, "Department/Code", _R),
        "department_name": _text(el, "Department/Name", _R),
        "region_code": _text(el, "RegionCode", _R),
        "statutory_days": _int(_text(el, "StatutoryDays", _R)),
        "promised_days": _int(_text(el, "PromisedDays", _R)),
        "case_type": _text(el, "CaseType", _R),
        "fees": _children(el.find(f"{_R}Fees"), _R),
        "materials": _children(el.find(f"{_R}Materials"), _R),
    }))


# -- case messages --------------------------------------------------------------------------------
def _person_party(feed: Feed, party, ns: str, *, role: str | None = None, phone: str | None = None) -> str | None:
    """A party identified by a citizen id becomes a person offer; returns the id."""
    if party is None or _text(party, "IdType", ns) not in (None, "CITIZEN_ID"):
        return None
    citizen_id = _text(party, "IdNumber", ns)
    if not citizen_id or ids.check_citizen_id(citizen_id):
        return None
    # Birth date and gender are facts of the number itself (GB 11643).
    feed.offers.append(Offer("person", (citizen_id,), {
        "name": _text(party, "Name", ns), "gender": ids.citizen_gender(citizen_id),
        "birth_date": ids.citizen_birth_date(citizen_id).isoformat(), "phone": phone}))
    if role:
        feed.links.append(("person", citizen_id, role))
    return citizen_id


def _case_accepted(el, feed: Feed) -> None:
    case_number = _text(el, "CaseNumber", _C)
    applicant = el.find(f"{_C}Applicant")
    kind = applicant.get("kind")
    applicant_name = _text(applicant, "Name", _C)
    id_type, id_number = _text(applicant, "IdType", _C), _text(applicant, "IdNumber", _C)
    representative = el.find(f"{_C}LegalRepresentative")
    project_code = _text(el, "ProjectCode", _C)
    phone = _text(el, "ContactPhone", _C)
    uscc = id_number if id_type == "USCC" else None
    if uscc:
        feed.offers.append(Offer("enterprise", (uscc,), {
            "name": applicant_name,
            "legal_representative": _text(representative, "Name", _C),
            "legal_representative_id": _text(representative, "IdNumber", _C),
            "region_code": uscc[2:8]}))  # positions 3-8 of a USCC: the registering region
        feed.links.append(("enterprise", uscc, "APPLICANT"))
    elif kind == "PERSON":
        _person_party(feed, applicant, _C, role="APPLICANT", phone=phone)
    _person_party(feed, representative, _C, role="LEGAL_REPRESENTATIVE")
    _person_party(feed, el.find(f"{_C}Agent"), _C, role="AGENT")
    if project_code:
        feed.offers.append(Offer("project", (project_code,), {
            "owner_uscc": uscc, "region_code": project_code[5:11]}))
        feed.links.append(("project", project_code, "PROJECT"))
    item_code, item_version = _text(el, "ServiceItem/Code", _C), _text(el, "ServiceItem/Version", _C)
    feed.offers.append(Offer("service_item", (item_code, item_version), {
        "name": _text(el, "ServiceItem/Name", _C), "department_code": _text(el, "Department/Code", _C),
        "department_name": _text(el, "Department/Name", _C), "case_type": _text(el, "CaseType", _C)}))
    registration = _text(el, "RegistrationNumber", _C)
    if registration:
        feed.registration = {"registration_number": registration, "applicant_kind": kind,
                             "applicant_name": applicant_name, "applicant_id_type": id_type,
                             "applicant_id": id_number, "first_case_number": case_number}
    feed.case = {
        "case_number": case_number, "region_code": _text(el, "RegionCode", _C),
        "department_code": _text(el, "Department/Code", _C), "department_name": _text(el, "Department/Name", _C),
        "item_code": item_code, "item_version": item_version, "item_name": _text(el, "ServiceItem/Name", _C),
        "case_type": _text(el, "CaseType", _C), "applicant_kind": kind, "applicant_name": applicant_name,
        "applicant_id_type": id_type, "applicant_id": id_number, "registration_number": registration,
        "project_code": project_code, "channel": _text(el, "Channel", _C), "status": "ACCEPTED",
        "applied_at": _timestamp(_text(el, "AppliedAt", _C)), "accepted_at": _timestamp(_text(el, "AcceptedAt", _C)),
        "promised_date": dt.date.fromisoformat(_text(el, "PromisedDate", _C)),
    }


def _case_process(el, feed: Feed) -> None:
    at = _timestamp(_text(el, "EndedAt", _C) or _text(el, "StartedAt", _C))
    feed.case = {"case_number": _text(el, "CaseNumber", _C), "status": "IN_PROCESS",
                 "last_step": _text(el, "StepName", _C), "last_step_at": at}


def _case_result(el, feed: Feed) -> None:
    feed.case = {"case_number": _text(el, "CaseNumber", _C), "status": "FINISHED",
                 "result": _text(el, "Result", _C), "finished_at": _timestamp(_text(el, "FinishedAt", _C)),
                 "accepted_at": _timestamp(_text(el, "AcceptedAt", _C)),
                 "certificate_number": _text(el, "Certificate/Number", _C)}


def _timestamp(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


_READERS = {"EnterpriseRecord": _enterprise, "PersonRecord": _person, "ProjectRecord": _project,
            "ServiceItem": _service_item, "CaseAccepted": _case_accepted, "CaseProcess": _case_process,
            "CaseResult": _case_result}
