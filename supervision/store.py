"""The supervision store: reads case messages into cases, keeps each open case's clock and
colour, and raises alerts. Everything a batch of messages changes is committed in one
transaction, messages included, so a message redelivered after a crash is either read
(and skipped) or not read at all.

Alerts are rows first (PENDING or RAISED, with a unique key so no process raises one twice);
sending them on the bus is a separate step (supervision.alerts) that marks them sent."""
from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Engine, String, and_, any_, bindparam, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from supervision.calendar import WorkingCalendar, load_calendar
from supervision.clock import GREEN, RED, YELLOW, Thresholds, clock, used_days
from supervision.lifecycle import Anomaly, CaseState, read_history
from supervision.models import SupervisedCase, SupervisedMessage, SupervisionAlert

PENDING, RAISED, RESOLVED = "PENDING", "RAISED", "RESOLVED"
_RANK = {None: 0, GREEN: 0, YELLOW: 1, RED: 2}
_ALERTS = uuid.UUID("5b0f3d4e-8a61-4b8e-9a57-2f4c1d9e7a10")  # namespace of alert message ids


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class Policy:
    """How cases are judged: the working calendar, colour thresholds, the zone whose dates
    count, and how long a provisional anomaly waits for a late message to explain it."""

    calendar: WorkingCalendar
    thresholds: Thresholds = Thresholds()
    tz: ZoneInfo = ZoneInfo("Asia/Shanghai")
    grace: dt.timedelta = dt.timedelta(minutes=30)
    alert_source: str = ""

    @classmethod
    def from_settings(cls, settings) -> "Policy":
        s = settings.supervision
        return cls(load_calendar(s.calendar or None),
                   Thresholds(s.yellow_remaining_days, s.yellow_used_ratio), ZoneInfo(s.timezone),
                   dt.timedelta(minutes=s.anomaly_grace_minutes), s.alert_source)

    def today(self, now: dt.datetime) -> dt.date:
        return now.astimezone(self.tz).date()


def database_url(settings) -> str | None:
    """Where supervision keeps its cases: the supervision destination's own database, else the
    hub's; None when no supervision destination is configured."""
    for options in settings.destinations.values():
        if options.get("type") == "supervision":
            return options.get("url") or settings.effective_database_url
    return None


def alert_message_id(source: str, key: str) -> str:
    """The same alert gets the same message id wherever it is raised, so the exchange log keeps
    it once (DUPLICATE) even if two processes send it."""
    return str(uuid.uuid5(_ALERTS, f"{source}|{key}"))


class SupervisionStore:
    def __init__(self, engine: Engine, policy: Policy):
        self.engine = engine
        self.policy = policy
        self._postgres = engine.dialect.name == "postgresql"
        self._insert = (postgresql if self._postgres else sqlite).insert

    # -- messages in ---------------------------------------------------------------------------
    def apply(self, batch: list[dict], now: dt.datetime | None = None) -> list[dict]:
        """Read a batch of case messages (lifecycle.facts_of dicts). Returns per message what
        became of its case (or that it was read before)."""
        now = now or utcnow()
        with self.engine.begin() as conn:
            if self._postgres:
                # Every read here is a look-up by key. Tables that grew faster than autovacuum
                # gathered statistics (a new hub's first minutes) were otherwise scanned whole.
                conn.execute(text("SET LOCAL enable_seqscan = off"))
            keys = [(f["source"], f["message_id"]) for f in batch]
            wanted = set(keys)
            seen = {tuple(r) for r in conn.execute(
                select(SupervisedMessage.source, SupervisedMessage.message_id)
                .where(self._in(SupervisedMessage.message_id, {m for _, m in keys})))} & wanted
            fresh, firsts = [], set()
            for f, key in zip(batch, keys):
                if key not in seen and key not in firsts:
                    firsts.add(key)
                    fresh.append(f)
            if fresh:
                self._insert_new(conn, SupervisedMessage, [
                    {"message_id": f["message_id"], "source": f["source"], "case_number": f["case_number"],
                     "facts": orjson.dumps(f).decode(), "arrived_at": now} for f in fresh])
            cases = sorted({f["case_number"] for f in fresh})
            states = self._reread(conn, cases, now) if cases else {}
        outcomes = []
        firsts.clear()
        for f, key in zip(batch, keys):
            if key in seen or key in firsts:
                outcomes.append({"case": f["case_number"], "already_read": True})
                continue
            firsts.add(key)
            outcomes.append(states[f["case_number"]])
        return outcomes

    def _reread(self, conn, cases: list[str], now: dt.datetime) -> dict[str, dict]:
        """Rebuild the cases from their whole histories, write them, raise or resolve alerts."""
        # Rows first, then lock them in one order: two processes reading messages of one case
        # take turns, and each rereads the history the other committed.
        self._insert_new(conn, SupervisedCase, [
            {"case_number": c, "state": "UNKNOWN", "is_open": False, "pauses": "[]", "updated_at": now}
            for c in cases])
        rows = {r.case_number: r for r in conn.execute(
            select(SupervisedCase.case_number, SupervisedCase.colour, SupervisedCase.is_open)
            .where(self._in(SupervisedCase.case_number, cases))
            .order_by(SupervisedCase.case_number).with_for_update())}
        histories: dict[str, list[dict]] = {c: [] for c in cases}
        for number, facts in conn.execute(select(SupervisedMessage.case_number, SupervisedMessage.facts)
                                          .where(self._in(SupervisedMessage.case_number, cases))):
            histories[number].append(orjson.loads(facts))
        alerts = {}
        for a in conn.execute(select(SupervisionAlert.alert_key, SupervisionAlert.status, SupervisionAlert.case_number,
                                     SupervisionAlert.kind)
                              .where(self._in(SupervisionAlert.case_number, cases),
                                     SupervisionAlert.status != RESOLVED)):
            alerts.setdefault(a.case_number, []).append(a)

        today = self.policy.today(now)
        updates, new_alerts, resolved, out = [], [], [], {}
        states = {number: read_history(number, histories[number], self.policy.tz) for number in cases}
        statutory = _statutory_days(conn, {c.item for c in states.values() if c.item})
        for number in cases:
            case = states[number]
            values = self._case_values(case, today, statutory.get(case.item))
            updates.append({"b_case": number, **values, "updated_at": now})
            current = {a.key: a for a in case.anomalies}
            for a in alerts.get(number, []):
                if a.kind not in (YELLOW, RED) and a.alert_key not in current:
                    resolved.append(a.alert_key)  # a late message explained it
            known = {a.alert_key for a in alerts.get(number, [])}
            for anomaly in case.anomalies:
                if anomaly.key not in known:
                    new_alerts.append(self._anomaly_alert(case, anomaly, now))
            before = rows[number].colour if rows[number].is_open else None
            if _RANK[values["colour"]] > _RANK[before]:
                new_alerts.append(self._colour_alert(case.case_number, case.department_code, values, now))
            out[number] = {"case": number, "state": case.state, "colour": values["colour"],
                           "anomalies": [a.code for a in case.anomalies]}
        self._update_cases(conn, updates)
        if resolved:
            conn.execute(update(SupervisionAlert).where(SupervisionAlert.alert_key.in_(resolved))
                         .values(status=RESOLVED, resolved_at=now))
        self._add_alerts(conn, new_alerts)
        return out

    def _case_values(self, case: CaseState, today: dt.date, statutory: int | None) -> dict:
        values = {"state": case.state, "is_open": case.open, "region": case.region,
                  "department_code": case.department_code, "department_name": case.department_name,
                  "service_item": (case.service_item or "")[:300] or None, "case_type": case.case_type,
                  "source": case.source, "accepted_at": case.accepted_at, "accepted_day": case.accepted_day,
                  "limit_days": _binding(case.limit, statutory), "promised_days": case.limit,
                  "statutory_days": statutory, "pauses": pauses_to_json(case.pauses), "result": case.result,
                  "finished_at": case.finished_at, "last_step": (case.last_step or "")[:300] or None,
                  "deadline": None, "yellow_on": None, "red_on": None, "colour": None}
        if case.accepted_day is not None and case.limit is not None:
            c = clock(self.policy.calendar, case.accepted_day, values["limit_days"], case.pauses,
                      self.policy.thresholds)
            values.update(deadline=c.deadline, yellow_on=c.yellow_on, red_on=c.red_on)
            if case.open:
                values["colour"] = c.colour(today)
        return values

    def _in(self, column, values):
        """column IN values; on PostgreSQL as = ANY(one array parameter), so the statement's
        text is the same for every batch and psycopg parses it once, not once per batch size."""
        if self._postgres:
            return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(String)))
        return column.in_(values)

    # On PostgreSQL a batch's rows go as one JSON parameter of one statement, not one statement
    # per row: per-row statements were most of a batch's time (psycopg's pipeline, 200 binds).
    def _insert_new(self, conn, model, rows: list[dict]) -> None:
        """Insert the rows whose key is not there yet."""
        if not self._postgres:
            conn.execute(self._insert(model).on_conflict_do_nothing(), rows)
            return
        names = list(rows[0])
        conn.execute(text(f"INSERT INTO {model.__tablename__} ({', '.join(names)}) SELECT {', '.join(names)} "
                          f"FROM {_recordset(model, names)} ON CONFLICT DO NOTHING"), _rows_parameter(rows))

    def _update_cases(self, conn, updates: list[dict]) -> None:
        """Rows of case values keyed by b_case."""
        if not updates:
            return
        if not self._postgres:
            conn.execute(update(SupervisedCase).where(SupervisedCase.case_number == bindparam("b_case")), updates)
            return
        names = [n for n in updates[0] if n != "b_case"]
        assignments = ", ".join(f"{n} = v.{n}" for n in names)
        conn.execute(text(f"UPDATE supervision_cases AS c SET {assignments} "
                          f"FROM {_recordset(SupervisedCase, names, key='b_case')} WHERE c.case_number = v.b_case"),
                     _rows_parameter(updates))

    # -- alerts ----------------------------------------------------------------------------------
    def _anomaly_alert(self, case: CaseState, anomaly: Anomaly, now: dt.datetime) -> dict:
        due = now + self.policy.grace if anomaly.provisional else now
        return self._alert_row(anomaly.key, case.case_number, case.department_code, anomaly.code, anomaly.text,
                               list(anomaly.message_ids), now, due, PENDING if anomaly.provisional else RAISED)

    def _colour_alert(self, number: str, department: str | None, values: dict, now: dt.datetime) -> dict:
        colour, deadline = values["colour"], values["deadline"]
        text = (f"overdue: the limit of {values['limit_days']} working days ended {deadline}" if colour == RED
                else f"close to the limit of {values['limit_days']} working days (deadline {deadline})")
        return self._alert_row(f"{colour}:{number}:{deadline}", number, department, colour, text, [], now, now, RAISED)

    def _alert_row(self, key, number, department, kind, text, message_ids, now, due, status) -> dict:
        return {"alert_key": key, "case_number": number, "department_code": department, "kind": kind,
                "status": status, "text": text, "message_ids": json.dumps(message_ids), "noticed_at": now,
                "due_at": due, "raised_at": now if status == RAISED else None,
                "alert_message_id": alert_message_id(self.policy.alert_source, key)}

    def _add_alerts(self, conn, rows: list[dict]) -> None:
        if rows:
            self._insert_new(conn, SupervisionAlert, rows)  # an alert raised before stays as it is

    # -- time passing ---------------------------------------------------------------------------
    def sweep(self, now: dt.datetime | None = None, *, chunk: int = 5000) -> dict[str, int]:
        """What the passing of time changes: open cases whose yellow or red day has come, and
        provisional anomalies whose grace is over. Cheap: both are index range queries."""
        now = now or utcnow()
        today = self.policy.today(now)
        # Two index ranges on (is_open, colour, day): red first, so a case overdue since
        # yesterday's sweep is not first recoloured yellow.
        due = (and_(SupervisedCase.is_open.is_(True), SupervisedCase.colour.in_((GREEN, YELLOW)),
                    SupervisedCase.red_on <= today),
               and_(SupervisedCase.is_open.is_(True), SupervisedCase.colour == GREEN,
                    SupervisedCase.yellow_on <= today))
        recoloured = 0
        for condition in due:
            while True:
                with self.engine.begin() as conn:
                    rows = conn.execute(select(SupervisedCase.case_number, SupervisedCase.department_code,
                                               SupervisedCase.limit_days, SupervisedCase.deadline,
                                               SupervisedCase.yellow_on, SupervisedCase.red_on)
                                        .where(condition).limit(chunk).with_for_update(skip_locked=True)).all()
                    if not rows:
                        break
                    self._recolour(conn, rows, today, now)
                    recoloured += len(rows)
        with self.engine.begin() as conn:
            raised = conn.execute(update(SupervisionAlert)
                                  .where(SupervisionAlert.status == PENDING, SupervisionAlert.due_at <= now)
                                  .values(status=RAISED, raised_at=now)).rowcount
        return {"recoloured": recoloured, "anomalies_raised": raised}

    def _recolour(self, conn, rows, today: dt.date, now: dt.datetime) -> None:
        updates, alerts = [], []
        for r in rows:
            colour = RED if r.red_on is not None and today >= r.red_on else YELLOW
            updates.append({"b_case": r.case_number, "colour": colour, "updated_at": now})
            alerts.append(self._colour_alert(r.case_number, r.department_code,
                                             {"colour": colour, "deadline": r.deadline, "limit_days": r.limit_days},
                                             now))
        self._update_cases(conn, updates)
        self._add_alerts(conn, alerts)

    def recompute(self, now: dt.datetime | None = None, *, chunk: int = 10_000) -> dict[str, int]:
        """Recompute every open case's clock (after the calendar or the thresholds changed):
        deadlines, colour days, colours; alerts for cases that got worse. Keyset pages, one
        transaction each."""
        now = now or utcnow()
        today = self.policy.today(now)
        policy = self.policy
        seen = changed = 0
        after = ""
        # Cases accepted on the same day with the same limit and pauses share a clock: a
        # county's million open cases have a few thousand shapes.
        clocks: dict = {}
        while True:
            with self.engine.begin() as conn:
                rows = conn.execute(select(SupervisedCase.case_number, SupervisedCase.department_code,
                                           SupervisedCase.accepted_day, SupervisedCase.limit_days,
                                           SupervisedCase.pauses, SupervisedCase.deadline, SupervisedCase.yellow_on,
                                           SupervisedCase.red_on, SupervisedCase.colour)
                                    .where(SupervisedCase.is_open.is_(True), SupervisedCase.case_number > after,
                                           SupervisedCase.accepted_day.is_not(None))
                                    .order_by(SupervisedCase.case_number).limit(chunk)).all()
                if not rows:
                    break
                after = rows[-1].case_number
                seen += len(rows)
                updates, alerts = [], []
                for r in rows:
                    shape = (r.accepted_day, r.limit_days, r.pauses)
                    c = clocks.get(shape)
                    if c is None:
                        c = clocks[shape] = clock(policy.calendar, r.accepted_day, r.limit_days, pauses_from_json(r.pauses),
                                                  policy.thresholds)
                    colour = c.colour(today)
                    if (c.deadline, c.yellow_on, c.red_on, colour) == (r.deadline, r.yellow_on, r.red_on, r.colour):
                        continue
                    updates.append({"b_case": r.case_number, "deadline": c.deadline, "yellow_on": c.yellow_on,
                                    "red_on": c.red_on, "colour": colour, "updated_at": now})
                    if _RANK[colour] > _RANK[r.colour]:
                        alerts.append(self._colour_alert(r.case_number, r.department_code,
                                                         {"colour": colour, "deadline": c.deadline,
                                                          "limit_days": r.limit_days}, now))
                if updates:
                    self._update_cases(conn, updates)
                    self._add_alerts(conn, alerts)
                    changed += len(updates)
        return {"open": seen, "changed": changed}

    # -- reading -------------------------------------------------------------------------------
    def case(self, number: str) -> dict | None:
        with Session(self.engine) as session:
            row = session.get(SupervisedCase, number)
            if row is None:
                return None
            messages = [json.loads(f) for f in session.scalars(
                select(SupervisedMessage.facts).where(SupervisedMessage.case_number == number))]
            alerts = session.scalars(select(SupervisionAlert).where(SupervisionAlert.case_number == number)
                                     .order_by(SupervisionAlert.id)).all()
        messages.sort(key=lambda m: (dt.datetime.fromisoformat(m["at"]), m["type"] != "CaseAccepted",
                                     m.get("step") or 0))
        used = None
        if row.accepted_day is not None and row.limit_days is not None:
            until = row.finished_at.astimezone(self.policy.tz).date() if row.finished_at else self.policy.today(utcnow())
            used = used_days(self.policy.calendar, row.accepted_day, pauses_from_json(row.pauses), until)
        return {**_case_dict(row), "used_working_days": used, "pauses": json.loads(row.pauses),
                "messages": messages, "alerts": [_alert_dict(a) for a in alerts]}

    def overdue(self, *, department: str | None = None, colour: str = RED, limit: int = 100) -> list[dict]:
        """Open cases of a colour (RED: overdue), the longest overdue first."""
        query = select(SupervisedCase).where(SupervisedCase.is_open.is_(True), SupervisedCase.colour == colour)
        if department:
            query = query.where(SupervisedCase.department_code == department)
        query = query.order_by(SupervisedCase.deadline, SupervisedCase.case_number).limit(limit)
        with Session(self.engine) as session:
            return [_case_dict(r) for r in session.scalars(query)]

    def by_department(self) -> list[dict]:
        """Per department: open cases by colour, and open anomalies."""
        with self.engine.connect() as conn:
            counts = conn.execute(select(SupervisedCase.department_code, SupervisedCase.department_name,
                                         SupervisedCase.colour, func.count())
                                  .where(SupervisedCase.is_open.is_(True))
                                  .group_by(SupervisedCase.department_code, SupervisedCase.department_name,
                                            SupervisedCase.colour)).all()
            anomalies = dict(conn.execute(select(SupervisionAlert.department_code, func.count())
                                          .where(SupervisionAlert.status == RAISED,
                                                 SupervisionAlert.kind.not_in((YELLOW, RED)))
                                          .group_by(SupervisionAlert.department_code)).all())
        out: dict = {}
        for code, name, colour, n in counts:
            d = out.setdefault(code, {"department_code": code, "department_name": name,
                                      GREEN: 0, YELLOW: 0, RED: 0, "anomalies": anomalies.get(code, 0)})
            d[colour or GREEN] += n
        for code, n in anomalies.items():
            out.setdefault(code, {"department_code": code, "department_name": None,
                                  GREEN: 0, YELLOW: 0, RED: 0, "anomalies": n})
        return sorted(out.values(), key=lambda d: (-d[RED], -d[YELLOW], str(d["department_code"])))

    def anomalies(self, *, department: str | None = None, limit: int = 100) -> list[dict]:
        query = select(SupervisionAlert).where(SupervisionAlert.status == RAISED,
                                               SupervisionAlert.kind.not_in((YELLOW, RED)))
        if department:
            query = query.where(SupervisionAlert.department_code == department)
        with Session(self.engine) as session:
            return [_alert_dict(a) for a in session.scalars(query.order_by(SupervisionAlert.id.desc()).limit(limit))]


def _binding(promised: int | None, statutory: int | None) -> int | None:
    if promised is None or statutory is None:
        return promised
    return min(promised, statutory)


def _statutory_days(conn, items: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Statutory limits of service items, from the shared registry of service items (the
    catalog's, in the same database); an item it does not know has none here."""
    if not items:
        return {}
    from catalog.models import ServiceItem
    rows = conn.execute(select(ServiceItem.code, ServiceItem.version, ServiceItem.statutory_days)
                        .where(ServiceItem.code.in_({code for code, _ in items}))).all()
    return {(r.code, r.version): r.statutory_days for r in rows
            if (r.code, r.version) in items and r.statutory_days is not None}


_PG_TYPES = {"String": "text", "Text": "text", "Boolean": "boolean", "Integer": "integer", "Date": "date",
             "UtcDateTime": "timestamptz"}


def _recordset(model, names: list[str], *, key: str | None = None) -> str:
    columns = model.__table__.c
    record = ([f"{key} text"] if key else []) + [f"{n} {_PG_TYPES[type(columns[n].type).__name__]}" for n in names]
    return f"jsonb_to_recordset(CAST(:rows AS jsonb)) AS v({', '.join(record)})"


def _rows_parameter(rows: list[dict]) -> dict:
    return {"rows": orjson.dumps(rows).decode()}  # dates and times as ISO 8601, as PostgreSQL reads them


def pauses_to_json(pauses) -> str:
    return json.dumps([[s.isoformat(), e.isoformat() if e else None] for s, e in pauses])


def pauses_from_json(text: str):
    return [(dt.date.fromisoformat(s), dt.date.fromisoformat(e) if e else None) for s, e in json.loads(text)]


def _iso(value):
    return value.isoformat() if value is not None else None


def _case_dict(r: SupervisedCase) -> dict:
    return {"case_number": r.case_number, "state": r.state, "open": r.is_open, "colour": r.colour,
            "region": r.region, "department_code": r.department_code, "department_name": r.department_name,
            "service_item": r.service_item, "case_type": r.case_type, "source": r.source,
            "accepted_at": _iso(r.accepted_at), "limit_days": r.limit_days, "promised_days": r.promised_days,
            "statutory_days": r.statutory_days, "deadline": _iso(r.deadline),
            "yellow_on": _iso(r.yellow_on), "red_on": _iso(r.red_on), "result": r.result,
            "finished_at": _iso(r.finished_at), "last_step": r.last_step}


def _alert_dict(a: SupervisionAlert) -> dict:
    return {"id": a.id, "kind": a.kind, "status": a.status, "case_number": a.case_number,
            "department_code": a.department_code, "text": a.text, "message_ids": json.loads(a.message_ids),
            "noticed_at": _iso(a.noticed_at), "raised_at": _iso(a.raised_at), "resolved_at": _iso(a.resolved_at),
            "alert_message_id": a.alert_message_id, "sent_at": _iso(a.sent_at), "send_error": a.send_error}
