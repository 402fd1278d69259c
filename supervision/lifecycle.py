"""A case's state, read from all the case messages the hub has for it.

Department systems send CaseAccepted, CaseProcess and CaseResult as things happen, but they
arrive in any order (a result may overtake the process steps that preceded it). So the state
is never updated step by step: every time a message arrives the whole history is read again,
in business-time order (when things happened, not when they arrived). A late message then
simply takes its place, and nothing it would have explained is flagged.

Order anomalies are the ones a history can prove: two results, a step after the result, time
going backwards. The ones a late message could still explain — a result or a step with no
acceptance yet — are provisional: they count only once a grace period has passed."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from lxml import etree

from schemas.namespaces import CASE

from supervision.clock import Pause

CASE_TYPES = ("CaseAccepted", "CaseProcess", "CaseResult")

# States a case is in; the first three are open (its clock runs or stands).
ACCEPTED, IN_PROGRESS, SUSPENDED, FINISHED, UNKNOWN = "ACCEPTED", "IN_PROGRESS", "SUSPENDED", "FINISHED", "UNKNOWN"
OPEN_STATES = (ACCEPTED, IN_PROGRESS, SUSPENDED)

# Anomaly codes (also the Kind of a SupervisionAlert).
RESULT_WITHOUT_ACCEPTANCE = "RESULT_WITHOUT_ACCEPTANCE"
PROCESS_FOR_UNKNOWN_CASE = "PROCESS_FOR_UNKNOWN_CASE"
TWO_RESULTS = "TWO_RESULTS"
STEP_AFTER_RESULT = "STEP_AFTER_RESULT"
TIME_BACKWARDS = "TIME_BACKWARDS"
PROVISIONAL = (RESULT_WITHOUT_ACCEPTANCE, PROCESS_FOR_UNKNOWN_CASE)

_PAUSE_OPENERS = {"SUPPLEMENT_REQUESTED": "SUPPLEMENT", "SPECIAL_PROCEDURE_START": "SPECIAL"}
_PAUSE_CLOSERS = {"SUPPLEMENT_RECEIVED": "SUPPLEMENT", "SPECIAL_PROCEDURE_END": "SPECIAL"}
_C = f"{{{CASE}}}"


def facts_of(message_type: str, body: etree._Element, *, message_id: str, source: str) -> dict:
    """What supervision keeps of one case message (JSON-able): enough to rebuild the case."""
    f = {child.tag.rpartition("}")[2]: child for child in body}

    def text(name: str, parent=f) -> str | None:
        el = parent.get(name)
        return el.text.strip() if el is not None and el.text else None

    facts = {"type": message_type, "message_id": message_id, "source": source, "case_number": text("CaseNumber")}
    if message_type == "CaseAccepted":
        department = {c.tag.rpartition("}")[2]: c for c in f["Department"]}
        item = {c.tag.rpartition("}")[2]: c for c in f["ServiceItem"]}
        facts.update(at=text("AcceptedAt"), limit=int(text("PromisedWorkingDays")), region=text("RegionCode"),
                     department_code=text("Code", department), department_name=text("Name", department),
                     service_item=f"{text('Code', item)} {text('Name', item)}", case_type=text("CaseType"),
                     item_code=text("Code", item), item_version=text("Version", item))
    elif message_type == "CaseProcess":
        facts.update(at=text("StartedAt"), ended=text("EndedAt"), step=int(text("StepNumber")),
                     step_name=text("StepName"), action=text("Action"), procedure=text("SpecialProcedure"))
    else:
        facts.update(at=text("FinishedAt"), result=text("Result"))
    return facts


@dataclass(frozen=True)
class Anomaly:
    code: str
    message_ids: tuple[str, ...]
    text: str

    @property
    def key(self) -> str:
        return f"{self.code}:{','.join(sorted(self.message_ids))}"

    @property
    def provisional(self) -> bool:
        return self.code in PROVISIONAL


@dataclass
class CaseState:
    case_number: str
    state: str = UNKNOWN
    accepted_at: dt.datetime | None = None
    accepted_day: dt.date | None = None
    limit: int | None = None
    region: str | None = None
    department_code: str | None = None
    department_name: str | None = None
    service_item: str | None = None
    item: tuple[str, str] | None = None  # service item (code, version): its statutory limit
    case_type: str | None = None
    source: str | None = None
    result: str | None = None
    finished_at: dt.datetime | None = None
    last_step: str | None = None
    pauses: list[Pause] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES


def _moment(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def read_history(case_number: str, history: list[dict], tz: ZoneInfo) -> CaseState:
    """The case as its messages tell it. history: facts_of(...) dicts, in any order."""
    case = CaseState(case_number)
    kinds = {"CaseAccepted": 0, "CaseProcess": 1, "CaseResult": 2}
    ordered = sorted(history, key=lambda m: (_moment(m["at"]), kinds[m["type"]], m.get("step") or 0))
    acceptances = [m for m in ordered if m["type"] == "CaseAccepted"]
    steps = [m for m in ordered if m["type"] == "CaseProcess"]
    results = [m for m in ordered if m["type"] == "CaseResult"]

    if acceptances:
        # A department that corrects an acceptance sends it again: the last one sent stands.
        accepted = acceptances[-1]
        case.accepted_at = _moment(accepted["at"])
        case.accepted_day = case.accepted_at.astimezone(tz).date()
        case.limit = accepted["limit"]
        for name in ("region", "department_code", "department_name", "service_item", "case_type", "source"):
            setattr(case, name, accepted.get(name))
        if accepted.get("item_code"):
            case.item = (accepted["item_code"], accepted["item_version"])
    else:
        case.source = ordered[0]["source"] if ordered else None
        if results:
            case.anomalies.append(Anomaly(RESULT_WITHOUT_ACCEPTANCE, tuple(m["message_id"] for m in results),
                                          "a result arrived for a case the hub has no acceptance of"))
        if steps:
            case.anomalies.append(Anomaly(PROCESS_FOR_UNKNOWN_CASE, tuple(m["message_id"] for m in steps),
                                          "process steps arrived for a case the hub has no acceptance of"))

    open_pauses: dict[str, list] = {}
    for step in steps:
        day = _moment(step["at"]).astimezone(tz).date()
        kind = _PAUSE_OPENERS.get(step["action"])
        if kind and kind not in open_pauses:
            open_pauses[kind] = [day, None]
            case.pauses.append(open_pauses[kind])  # type: ignore[arg-type]
        kind = _PAUSE_CLOSERS.get(step["action"])
        if kind and kind in open_pauses:
            open_pauses.pop(kind)[1] = day
    case.pauses = [(start, end) for start, end in case.pauses]
    if steps:
        case.last_step = f"{steps[-1]['step']} {steps[-1]['step_name']} ({steps[-1]['action']})"

    if len(results) > 1:
        case.anomalies.append(Anomaly(TWO_RESULTS, tuple(m["message_id"] for m in results),
                                      f"{len(results)} results: " + ", ".join(m["result"] for m in results)))
    if results:
        first = results[0]
        finished = _moment(first["at"])
        after = [s for s in steps if _moment(s["at"]) > finished]
        if after:
            case.anomalies.append(Anomaly(
                STEP_AFTER_RESULT, (first["message_id"], *(s["message_id"] for s in after)),
                f"step {after[0]['step']} started {after[0]['at']}, after the result of {first['at']}"))
        case.result, case.finished_at = first["result"], finished
    case.anomalies.extend(_time_backwards(case, steps, results))

    if results and acceptances:
        case.state = FINISHED
    elif not acceptances:
        case.state = UNKNOWN
    elif open_pauses:
        case.state = SUSPENDED
    elif steps:
        case.state = IN_PROGRESS
    else:
        case.state = ACCEPTED
    return case


def _time_backwards(case: CaseState, steps: list[dict], results: list[dict]):
    if case.accepted_at is not None:
        for m in steps + results:
            if _moment(m["at"]) < case.accepted_at:
                what = f"step {m['step']}" if m["type"] == "CaseProcess" else "the result"
                yield Anomaly(TIME_BACKWARDS, (m["message_id"],),
                              f"{what} at {m['at']} is before the acceptance at {case.accepted_at.isoformat()}")
    # Steps are numbered in the order they are taken: a later step cannot start earlier.
    by_number = sorted(steps, key=lambda s: s["step"])
    for earlier, later in zip(by_number, by_number[1:]):
        if later["step"] > earlier["step"] and _moment(later["at"]) < _moment(earlier["at"]):
            yield Anomaly(TIME_BACKWARDS, (earlier["message_id"], later["message_id"]),
                          f"step {later['step']} started {later['at']}, before step {earlier['step']} "
                          f"started {earlier['at']}")
