"""Checks the XSD cannot express: check characters, birth dates, regions, project codes,
and the order of time. Run only on messages that already passed the XSD, so every
element the XSD requires is present and every value has its declared lexical form.
This runs on every accepted message, so each check indexes the children once."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

from lxml import etree

from bus.errors import FieldError
from schemas import identifiers as ids
from schemas.paths import path_of

Fields = dict[str, etree._Element]
Check = Callable[[Fields], Iterator[FieldError]]


def fields_of(el: etree._Element) -> Fields:
    """Children by local name (the family namespace is fixed by the XSD)."""
    return {child.tag.rpartition("}")[2]: child for child in el}


def _problem(el: etree._Element, problem: ids.Problem) -> Iterator[FieldError]:
    if problem:
        yield FieldError(path_of(el), problem[0], problem[1])


def _region(fields: Fields) -> Iterator[FieldError]:
    el = fields.get("RegionCode")
    if el is not None:
        yield from _problem(el, ids.check_region(el.text))


def _timestamp(el: etree._Element) -> dt.datetime:
    return dt.datetime.fromisoformat(el.text.strip())


def _not_before(fields: Fields, later: str, earlier: str) -> Iterator[FieldError]:
    late_el, early_el = fields.get(later), fields.get(earlier)
    if late_el is None or early_el is None:
        return
    if _timestamp(late_el) < _timestamp(early_el):
        yield FieldError(path_of(late_el), "TIME_ORDER",
                         f"{later} {late_el.text} is before {earlier} {early_el.text}")


def _party(party: etree._Element | None) -> Iterator[FieldError]:
    """A party's IdNumber is checked by its IdType."""
    if party is None:
        return
    fields = fields_of(party)
    id_type, number = fields.get("IdType"), fields.get("IdNumber")
    if id_type is None or number is None:
        return
    if id_type.text == "CITIZEN_ID":
        yield from _problem(number, ids.check_citizen_id(number.text))
    elif id_type.text == "USCC":
        yield from _problem(number, ids.check_uscc(number.text))


def _case_accepted(f: Fields):
    yield from _region(f)
    for name in ("Applicant", "Agent", "LegalRepresentative"):
        yield from _party(f.get(name))
    project = f.get("ProjectCode")
    if project is not None:
        yield from _problem(project, ids.check_project_code(project.text))
    yield from _not_before(f, "AcceptedAt", "AppliedAt")
    promised, accepted = f["PromisedDate"], f["AcceptedAt"]
    if dt.date.fromisoformat(promised.text.strip()[:10]) < _timestamp(accepted).date():
        yield FieldError(path_of(promised), "TIME_ORDER",
                         f"PromisedDate {promised.text} is before AcceptedAt {accepted.text}")


def _case_process(f: Fields):
    yield from _not_before(f, "EndedAt", "StartedAt")


def _case_result(f: Fields):
    yield from _not_before(f, "FinishedAt", "AcceptedAt")


def _enterprise(f: Fields):
    yield from _problem(f["Uscc"], ids.check_uscc(f["Uscc"].text))
    yield from _party(f.get("LegalRepresentative"))
    yield from _region(f)


def _person(f: Fields):
    cid = f["CitizenId"]
    problem = ids.check_citizen_id(cid.text)
    yield from _problem(cid, problem)
    if problem:
        return
    birth = f["BirthDate"]
    if dt.date.fromisoformat(birth.text.strip()[:10]) != ids.citizen_birth_date(cid.text):
        yield FieldError(path_of(birth), "CITIZEN_ID_BIRTHDATE",
                         f"BirthDate {birth.text} disagrees with the citizen id ({cid.text[6:14]})")
    gender = f["Gender"]
    if gender.text != ids.citizen_gender(cid.text):
        yield FieldError(path_of(gender), "GENDER_MISMATCH",
                         f"Gender {gender.text} disagrees with the citizen id")


def _project(f: Fields):
    yield from _problem(f["ProjectCode"], ids.check_project_code(f["ProjectCode"].text))
    yield from _problem(f["OwnerUscc"], ids.check_uscc(f["OwnerUscc"].text))
    yield from _region(f)


def _service_item(f: Fields):
    yield from _region(f)
    statutory, promised = f["StatutoryDays"], f["PromisedDays"]
    if int(promised.text) > int(statutory.text):
        yield FieldError(path_of(promised), "DAYS_ORDER",
                         f"PromisedDays {promised.text} exceed StatutoryDays {statutory.text}")


CHECKS: dict[str, Check] = {
    "CaseAccepted": _case_accepted,
    "CaseProcess": _case_process,
    "CaseResult": _case_result,
    "EnterpriseRecord": _enterprise,
    "PersonRecord": _person,
    "ProjectRecord": _project,
    "ServiceItem": _service_item,
    "SupervisionAlert": _region,
}


def check_body(message_type: str, fields: Fields) -> list[FieldError]:
    """Problems of a message body, given its children by local name (fields_of)."""
    return list(CHECKS[message_type](fields))
