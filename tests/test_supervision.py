"""Electronic supervision: the working calendar, each case's clock and colour day by day,
pauses, out-of-order arrival and order anomalies, read straight through the store with the
clock set by the test (the hub-level tests are in test_supervision_hub.py)."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from bus.database import ensure_schema, make_engine
from schemas.validation import MessageValidator
from bus.envelope import parse_envelope
from supervision.calendar import CalendarInvalid, WorkingCalendar, parse_calendar
from supervision.clock import Thresholds
from supervision.lifecycle import facts_of
from supervision.store import Policy, SupervisionStore
from tests.helpers import cases

TZ = ZoneInfo("Asia/Shanghai")
# National Day 2026: Thursday 1 October to Wednesday 7 October off; Saturday 10 October worked.
NATIONAL_DAY = {"years": {2026: {"holidays": ["2026-10-01..2026-10-07"], "workdays": ["2026-10-10"]}}}
VALIDATOR = MessageValidator()


@pytest.fixture
def store(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'supervision.db'}")
    ensure_schema(engine, auto_upgrade=True)
    policy = Policy(parse_calendar(NATIONAL_DAY), Thresholds(1, 0.8), TZ, dt.timedelta(minutes=30),
                    "320382.huitong.jiancha")
    yield SupervisionStore(engine, policy)
    engine.dispose()


def at(day: str, time: str = "09:00") -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{time}:00").replace(tzinfo=TZ)


def facts(message: tuple[str, bytes]) -> dict:
    env = parse_envelope(message[1], VALIDATOR)
    body = VALIDATOR.validate(message[1]).body
    return facts_of(env.type, body, message_id=env.message_id, source=env.source)


def feed(store, *messages, now: dt.datetime) -> list[dict]:
    return store.apply([facts(m) for m in messages], now=now)


def alerts(store, case: str) -> list[tuple[str, str]]:
    return [(a["kind"], a["status"]) for a in store.case(case)["alerts"]]


# -- the calendar ------------------------------------------------------------------------------
def test_calendar_counts_holidays_off_and_adjusted_saturdays_on():
    calendar = parse_calendar(NATIONAL_DAY)
    assert not calendar.is_working_day(dt.date(2026, 10, 5))  # a Monday inside the holiday
    assert calendar.is_working_day(dt.date(2026, 10, 10))  # the adjusted Saturday
    assert not calendar.is_working_day(dt.date(2026, 10, 11))  # an ordinary Sunday
    # From Wednesday 30 September: 8, 9, 10 (Sat), 12, 13 October.
    assert calendar.nth_working_day_after(dt.date(2026, 9, 30), 5) == dt.date(2026, 10, 13)
    assert calendar.working_days_after(dt.date(2026, 9, 30), dt.date(2026, 10, 13)) == 5
    assert calendar.working_days_after(dt.date(2026, 9, 30), dt.date(2026, 9, 30)) == 0
    weekends_only = WorkingCalendar()
    assert weekends_only.nth_working_day_after(dt.date(2026, 9, 30), 5) == dt.date(2026, 10, 7)


@pytest.mark.parametrize("data, named", [
    ({"years": {2026: {"holidays": ["2026-13-01"]}}}, "'2026-13-01' is not a date"),
    ({"years": {2026: {"holidays": ["2026-10-07..2026-10-01"]}}}, "ends before it starts"),
    ({"years": {2026: {"workdays": ["2026-10-12"]}}}, "2026-10-12 is a weekday already"),
    ({"years": {2026: {"holidays": ["2027-01-01"]}}}, "2027-01-01 is listed under year 2026"),
    ({"years": {2026: {"holiday": []}}}, "unknown key(s) holiday"),
    ({"years": {2026: {"holidays": ["2026-10-10"], "workdays": ["2026-10-10"]}}}, "both a holiday and a working day"),
    ({"2026": []}, "expected a mapping with 'years'"),
])
def test_a_bad_calendar_file_is_refused_naming_the_problem(data, named):
    with pytest.raises(CalendarInvalid) as caught:
        parse_calendar(data, "calendar.yaml")
    assert named in str(caught.value) and caught.value.code == "CALENDAR_INVALID"


def test_the_sample_calendar_file_loads(tmp_path):
    from supervision.calendar import load_calendar
    from tests.conftest import ROOT
    calendar = load_calendar(ROOT / "supervision" / "calendars" / "cn-2026.yaml")
    assert calendar.covers(dt.date(2026, 10, 1)) and not calendar.is_working_day(dt.date(2026, 10, 1))


# -- colours day by day -------------------------------------------------------------------------
def test_a_promised_5_day_case_accepted_before_the_holiday_turns_yellow_and_red_on_the_right_days(store):
    case = "320382-SCJG-20260930-0001"
    assert feed(store, cases.accepted(case, "2026-09-30T10:00:00", days=5), now=at("2026-09-30", "10:05"))[0][
        "colour"] == "GREEN"
    seen = {}
    day = dt.date(2026, 9, 30)
    while day <= dt.date(2026, 10, 16):
        store.sweep(at(day.isoformat(), "00:05"))
        seen[day] = store.case(case)["colour"]
        day += dt.timedelta(days=1)
    yellow = [d for d, c in seen.items() if c == "YELLOW"]
    red = [d for d, c in seen.items() if c == "RED"]
    # Counted: 8 Oct (1), 9 Oct (2), Saturday 10 Oct (3), 12 Oct (4), 13 Oct (5) = the deadline.
    assert yellow == [dt.date(2026, 10, 12), dt.date(2026, 10, 13)]
    assert red[0] == dt.date(2026, 10, 14) and red == sorted(d for d in seen if d >= dt.date(2026, 10, 14))
    record = store.case(case)
    assert record["deadline"] == "2026-10-13" and record["used_working_days"] >= 5
    assert alerts(store, case) == [("YELLOW", "RAISED"), ("RED", "RAISED")]
    raised = {a["kind"]: a["raised_at"][:10] for a in record["alerts"]}
    assert raised == {"YELLOW": "2026-10-11", "RED": "2026-10-13"}  # 00:05 Beijing time is the day before in UTC


def test_a_supplement_request_stops_the_clock_until_the_supplement_arrives(store):
    case = "320382-SCJG-20261102-0001"
    feed(store, cases.accepted(case, "2026-11-02T09:00:00", days=5), now=at("2026-11-02"))
    # Counted: 3 Nov (1), 4 Nov (2); the request goes out on the 4th.
    feed(store, cases.process(case, 2, "SUPPLEMENT_REQUESTED", "2026-11-04T15:00:00", name="补正告知"),
         now=at("2026-11-04", "15:01"))
    for day in ("2026-11-10", "2026-11-20", "2026-12-31"):  # the applicant takes their time
        store.sweep(at(day))
        record = store.case(case)
        assert (record["state"], record["colour"], record["deadline"]) == ("SUSPENDED", "GREEN", None)
    # The supplement arrives on Monday 9 November in this history (a late message): the days
    # 5, 6 and 9 November are not counted; 10, 11, 12 are days 3, 4 and 5.
    feed(store, cases.process(case, 3, "SUPPLEMENT_RECEIVED", "2026-11-09T10:00:00", name="补正受理"),
         now=at("2026-11-09", "10:01"))
    record = store.case(case)
    assert (record["state"], record["deadline"], record["yellow_on"], record["red_on"]) == (
        "IN_PROGRESS", "2026-11-12", "2026-11-11", "2026-11-13")
    assert record["pauses"] == [["2026-11-04", "2026-11-09"]]
    store.sweep(at("2026-11-10"))
    assert store.case(case)["colour"] == "GREEN"
    store.sweep(at("2026-11-11"))
    assert store.case(case)["colour"] == "YELLOW"
    store.sweep(at("2026-11-13"))
    assert store.case(case)["colour"] == "RED"


def test_a_special_procedure_is_not_counted_and_a_finished_case_leaves_the_board(store):
    case = "320382-SCJG-20261102-0002"
    feed(store, cases.accepted(case, "2026-11-02T09:00:00", days=3),
         cases.process(case, 2, "SPECIAL_PROCEDURE_START", "2026-11-03T09:00:00", procedure="EXPERT_REVIEW"),
         cases.process(case, 3, "SPECIAL_PROCEDURE_END", "2026-11-10T09:00:00", procedure="EXPERT_REVIEW"),
         now=at("2026-11-10", "10:00"))
    # Counted: 3 Nov (1); 4-10 Nov paused; 11 (2), 12 (3) = the deadline.
    assert store.case(case)["deadline"] == "2026-11-12"
    feed(store, cases.result(case, "2026-11-12T16:00:00"), now=at("2026-11-12", "16:01"))
    store.sweep(at("2026-11-20"))
    record = store.case(case)
    assert (record["state"], record["open"], record["colour"], record["result"]) == ("FINISHED", False, None, "APPROVED")
    assert store.overdue() == [] and alerts(store, case) == []


# -- order: late messages and anomalies ----------------------------------------------------------
def test_a_result_before_its_process_steps_ends_finished_with_no_false_alert(store):
    case = "320382-SCJG-20261102-0003"
    accepted_ = cases.accepted(case, "2026-11-02T09:00:00", days=5)
    review = cases.process(case, 2, "REVIEW", "2026-11-03T09:00:00")
    approve = cases.process(case, 3, "APPROVE", "2026-11-04T09:00:00", name="审批")
    finished = cases.result(case, "2026-11-04T16:00:00")
    # The result overtakes the steps, and even the acceptance.
    feed(store, finished, now=at("2026-11-04", "16:01"))
    assert store.case(case)["state"] == "UNKNOWN"
    assert alerts(store, case) == [("RESULT_WITHOUT_ACCEPTANCE", "PENDING")]
    feed(store, approve, now=at("2026-11-04", "16:02"))
    feed(store, accepted_, now=at("2026-11-04", "16:03"))
    feed(store, review, now=at("2026-11-04", "16:04"))
    store.sweep(at("2026-11-05"))  # long past the grace
    record = store.case(case)
    assert (record["state"], record["result"], record["open"]) == ("FINISHED", "APPROVED", False)
    assert [m["type"] for m in record["messages"]] == ["CaseAccepted", "CaseProcess", "CaseProcess", "CaseResult"]
    assert all(status == "RESOLVED" for _, status in alerts(store, case))
    assert not any(a["sent_at"] or a["raised_at"] for a in record["alerts"])
    assert store.anomalies() == []


def test_a_result_with_no_acceptance_is_raised_once_the_grace_is_over(store):
    case = "320382-SCJG-20261102-0004"
    feed(store, cases.result(case, "2026-11-04T16:00:00"), now=at("2026-11-04", "16:00"))
    assert store.sweep(at("2026-11-04", "16:29"))["anomalies_raised"] == 0
    assert store.sweep(at("2026-11-04", "16:31"))["anomalies_raised"] == 1
    assert alerts(store, case) == [("RESULT_WITHOUT_ACCEPTANCE", "RAISED")]
    feed(store, cases.process(f"{case}-X", 1, "REVIEW", "2026-11-04T16:00:00"), now=at("2026-11-04", "16:00"))
    store.sweep(at("2026-11-05"))
    assert alerts(store, f"{case}-X") == [("PROCESS_FOR_UNKNOWN_CASE", "RAISED")]


def test_order_anomalies_are_flagged_with_the_messages_that_caused_them(store):
    case = "320382-SCJG-20261102-0005"
    first_result = cases.result(case, "2026-11-04T16:00:00")
    second_result = cases.result(case, "2026-11-05T10:00:00", outcome="REJECTED")
    late_step = cases.process(case, 4, "REVIEW", "2026-11-06T09:00:00")
    early_step = cases.process(case, 5, "APPROVE", "2026-11-02T08:00:00")  # before the acceptance
    outcome = feed(store, cases.accepted(case, "2026-11-02T09:00:00"), first_result, second_result, late_step,
                   early_step, now=at("2026-11-06", "10:00"))
    assert set(outcome[-1]["anomalies"]) == {"TWO_RESULTS", "STEP_AFTER_RESULT", "TIME_BACKWARDS"}
    found = {a["kind"]: a for a in store.case(case)["alerts"]}
    assert found["TWO_RESULTS"]["message_ids"] == [first_result[0], second_result[0]]
    assert set(found["STEP_AFTER_RESULT"]["message_ids"]) == {first_result[0], late_step[0]}
    assert early_step[0] in found["TIME_BACKWARDS"]["message_ids"]
    assert all(a["status"] == "RAISED" for a in found.values())
    assert {a["kind"] for a in store.anomalies(department="scjgj")} >= {"TWO_RESULTS", "STEP_AFTER_RESULT"}


def test_a_message_read_twice_changes_nothing(store):
    case = "320382-SCJG-20261102-0006"
    message = cases.accepted(case, "2026-11-02T09:00:00")
    feed(store, message, now=at("2026-11-02"))
    again = feed(store, message, message, now=at("2026-11-03"))
    assert again == [{"case": case, "already_read": True}] * 2
    assert len(store.case(case)["messages"]) == 1


def test_recompute_after_a_new_holiday_moves_deadlines_and_colours(store, tmp_path):
    case = "320382-SCJG-20261116-0001"
    feed(store, cases.accepted(case, "2026-11-16T09:00:00", days=5), now=at("2026-11-16"))
    assert store.case(case)["deadline"] == "2026-11-23"
    store.sweep(at("2026-11-23"))
    assert store.case(case)["colour"] == "YELLOW"
    later = {"years": {2026: {"holidays": ["2026-10-01..2026-10-07", "2026-11-18..2026-11-20"],
                              "workdays": ["2026-10-10"]}}}
    moved = SupervisionStore(store.engine, Policy(parse_calendar(later), Thresholds(1, 0.8), TZ,
                                                  dt.timedelta(minutes=30), "320382.huitong.jiancha"))
    assert moved.recompute(at("2026-11-23")) == {"open": 1, "changed": 1}
    record = moved.case(case)
    assert (record["deadline"], record["colour"]) == ("2026-11-26", "GREEN")


def test_the_statutory_limit_of_the_service_item_binds_when_the_promise_exceeds_it(store):
    """The registry of service items says 3 statutory working days for this item; a department
    promising 5 is still due after 3."""
    from catalog.models import ServiceItem
    now = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    with store.engine.begin() as conn:
        conn.execute(ServiceItem.__table__.insert().values(
            code="320382-SC-XK-0012", version="3", name="食品经营许可", statutory_days=3, promised_days=3,
            sources={}, history_written=False, created_at=now, updated_at=now))
    case = "320382-SCJG-20261102-0007"
    feed(store, cases.accepted(case, "2026-11-02T09:00:00", days=5), now=at("2026-11-02"))
    record = store.case(case)
    assert (record["promised_days"], record["statutory_days"], record["limit_days"]) == (5, 3, 3)
    assert record["deadline"] == "2026-11-05"  # 3, 4, 5 November
