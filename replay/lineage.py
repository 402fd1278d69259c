"""Searching the exchange log and tracing one message, for auditors: by time window, system,
route, message type, status and business keys; a message's lineage is every event from
RECEIVED to DELIVERED or DEAD_LETTERED with the time each hop took, and the messages derived
from it (replays). Citizen ids and phones are masked. Every read is itself an AUDIT_READ
event in the exchange log: who looked, for what, how much they saw."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine, exists, insert, select

from bus.errors import HuitongError
from bus.exchange_log import event_row
from bus.masking import mask_text, mask_value
from bus.models import Event, Message, RouteDelivery
from schemas.identifiers import check_citizen_id, check_project_code, check_uscc

# A status is "the message has an event of this kind"; REJECTED and DUPLICATE are events of
# messages that were never (again) accepted, so those searches list events.
MESSAGE_STATUSES = ("RECEIVED", "PUBLISHED", "ROUTED", "DELIVERED", "FAILED", "DEAD_LETTERED", "REPLAYED")
EVENT_STATUSES = ("REJECTED", "DUPLICATE")
STATUSES = MESSAGE_STATUSES + EVENT_STATUSES
MAX_LIMIT = 500


class SearchInvalid(HuitongError):
    code = "VALUE_INVALID"


class MessageNotFound(HuitongError):
    code = "NOT_FOUND"


@dataclass(frozen=True)
class LogSearch:
    """What an auditor asks for; every part optional, all given parts must hold."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    system: str | None = None
    route: str | None = None
    type: str | None = None
    status: str | None = None
    case_number: str | None = None
    uscc: str | None = None
    citizen_id: str | None = None
    project_code: str | None = None

    def check(self) -> "LogSearch":
        """Bad input named, with the identifier's own code (a mistyped USCC finds nothing
        silently otherwise)."""
        if self.status and self.status not in STATUSES:
            raise SearchInvalid(f"status {self.status!r} is not one of {', '.join(STATUSES)}")
        if self.since and self.until and self.until < self.since:
            raise SearchInvalid("until is before since")
        for value, checker in ((self.uscc, check_uscc), (self.citizen_id, check_citizen_id),
                               (self.project_code, check_project_code)):
            if value:
                problem = checker(value)
                if problem:
                    raise SearchInvalid(problem[1], code=problem[0])
        return self

    def described(self) -> dict:
        """The criteria as recorded in the AUDIT_READ event (a citizen id masked)."""
        return {k: (v.isoformat() if isinstance(v, dt.datetime) else mask_text(v))
                for k, v in asdict(self).items() if v is not None}


class LogQueries:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.reads = engine.execution_options(isolation_level="AUTOCOMMIT")

    # -- search ---------------------------------------------------------------------------------
    def search(self, reader: str, criteria: LogSearch, *, limit: int = 50, after: int | None = None,
               only_source: str | None = None) -> dict[str, Any]:
        """Newest first. after: the `next` of the previous page. only_source: a system that may
        read only its own messages."""
        criteria.check()
        limit = max(1, min(limit, MAX_LIMIT))
        if criteria.status in EVENT_STATUSES:
            items = self._search_events(criteria, limit + 1, after, only_source)
        else:
            items = self._search_messages(criteria, limit + 1, after, only_source)
        more = len(items) > limit
        items = items[:limit]
        self.record_read(reader, {"search": criteria.described(), "results": len(items)})
        return {"items": items, "next": items[-1]["cursor"] if more else None}

    def _search_messages(self, c: LogSearch, limit: int, after: int | None, only_source: str | None) -> list[dict]:
        query = select(Message.seq, Message.message_id, Message.source, Message.type, Message.received_at,
                       Message.published_at, Message.case_number, Message.uscc, Message.citizen_id,
                       Message.project_code, Message.correlation_id)
        conditions = []
        for column, value in ((Message.case_number, c.case_number), (Message.uscc, c.uscc),
                              (Message.citizen_id, c.citizen_id), (Message.project_code, c.project_code),
                              (Message.type, c.type), (Message.source, c.system or only_source)):
            if value:
                conditions.append(column == value)
        if only_source and c.system and c.system != only_source:
            return []
        if c.since:
            conditions.append(Message.received_at >= c.since)
        if c.until:
            conditions.append(Message.received_at < c.until)
        if c.route:
            conditions.append(exists().where(RouteDelivery.message_seq == Message.seq, RouteDelivery.route == c.route))
        if c.status:
            conditions.append(exists().where(Event.message_seq == Message.seq, Event.kind == c.status))
        if after:
            conditions.append(Message.seq < after)
        query = query.where(*conditions).order_by(Message.seq.desc()).limit(limit)
        with self.reads.connect() as conn:
            rows = conn.execute(query).all()
            states = self._delivery_states(conn, [r.seq for r in rows])
        return [{"cursor": r.seq, "message_id": r.message_id, "source": r.source, "type": r.type,
                 "received_at": _iso(r.received_at), "published_at": _iso(r.published_at),
                 "case_number": r.case_number, "uscc": r.uscc, "citizen_id": mask_text(r.citizen_id or "") or None,
                 "project_code": r.project_code, "correlation_id": r.correlation_id,
                 "deliveries": states.get(r.seq, [])} for r in rows]

    @staticmethod
    def _delivery_states(conn, seqs: list[int]) -> dict[int, list[dict]]:
        if not seqs:
            return {}
        out: dict[int, list[dict]] = {}
        for d in conn.execute(select(RouteDelivery.message_seq, RouteDelivery.route, RouteDelivery.destination,
                                     RouteDelivery.status, RouteDelivery.attempts)
                              .where(RouteDelivery.message_seq.in_(seqs))
                              .order_by(RouteDelivery.route, RouteDelivery.destination)):
            out.setdefault(d.message_seq, []).append({"route": d.route, "destination": d.destination,
                                                      "status": d.status, "attempts": d.attempts})
        return out

    def _search_events(self, c: LogSearch, limit: int, after: int | None, only_source: str | None) -> list[dict]:
        if c.case_number or c.uscc or c.citizen_id or c.project_code or c.route or c.type:
            raise SearchInvalid(f"{c.status} entries are refused or repeated messages: search them by time "
                                "and system only")
        conditions = [Event.kind == c.status]
        source = c.system or only_source
        if source:
            conditions.append(Event.source == source)
        if c.since:
            conditions.append(Event.at >= c.since)
        if c.until:
            conditions.append(Event.at < c.until)
        if after:
            conditions.append(Event.seq < after)
        with self.reads.connect() as conn:
            rows = conn.execute(select(Event.seq, Event.kind, Event.at, Event.message_id, Event.source, Event.code,
                                       Event.detail).where(*conditions)
                                .order_by(Event.seq.desc()).limit(limit)).all()
        return [{"cursor": r.seq, "event": r.kind, "at": _iso(r.at), "message_id": r.message_id,
                 "source": r.source, "code": r.code, "detail": mask_value(_json(r.detail))} for r in rows]

    # -- lineage --------------------------------------------------------------------------------
    def lineage(self, reader: str, message_id: str, *, source: str | None = None,
                only_source: str | None = None) -> dict[str, Any]:
        """Every event of one message in log order with the time since the previous hop and
        since RECEIVED; what derives from it: messages that name it as their correlation id,
        transformed outputs (route, destination, transform, digest) and replays; its
        deliveries now."""
        message_id = message_id.strip().lower()
        with self.reads.connect() as conn:
            query = select(Message.__table__).where(Message.message_id == message_id)
            if source or only_source:
                query = query.where(Message.source == (source or only_source))
            messages = conn.execute(query.order_by(Message.seq)).all()
            if not messages:
                rejected = conn.execute(select(Event.seq, Event.kind, Event.at, Event.source, Event.code, Event.detail)
                                        .where(Event.message_id == message_id,
                                               *([Event.source == only_source] if only_source else []))
                                        .order_by(Event.seq)).all()
                if not rejected:
                    raise MessageNotFound(f"no message {message_id} in the exchange log")
                self.record_read(reader, {"lineage": message_id})
                return {"message": None, "events": [_event(r, None, None) for r in rejected], "derived": [],
                        "outputs": [], "replays": [], "deliveries": []}
            if len(messages) > 1 and not source:
                raise SearchInvalid(f"message id {message_id} was sent by {len(messages)} systems: give the source "
                                    f"({', '.join(m.source for m in messages)})")
            m = messages[0]
            columns = (Event.seq, Event.kind, Event.at, Event.route, Event.code, Event.detail, Event.source)
            # Its own events, and those naming it without the link (a DUPLICATE, a REJECTED reuse):
            # two index look-ups; one OR of both made PostgreSQL scan millions of events.
            rows = conn.execute(select(*columns).where(Event.message_seq == m.seq)).all()
            rows += conn.execute(select(*columns).where(Event.message_id == m.message_id,
                                                        Event.message_seq.is_(None), Event.source == m.source)).all()
            rows.sort(key=lambda r: r.seq)
            derived = conn.execute(select(Message.message_id, Message.source, Message.type, Message.received_at)
                                   .where(Message.correlation_id == m.message_id, Message.seq != m.seq)
                                   .order_by(Message.seq)).all()
            deliveries = self._delivery_states(conn, [m.seq]).get(m.seq, [])
        received = next((r.at for r in rows if r.kind == "RECEIVED"), m.received_at)
        events, previous = [], None
        for r in rows:
            events.append(_event(r, previous, received))
            previous = r.at
        self.record_read(reader, {"lineage": m.message_id, "source": m.source})
        outputs = [{"route": e["route"], "destination": e["detail"].get("destination"),
                    "transform": e["detail"].get("transform"), "payload_digest": e["detail"]["payload_digest"],
                    "replay_id": e["detail"].get("replay_id"), "at": e["at"]}
                   for e in events if e["event"] == "DELIVERED" and isinstance(e["detail"], dict)
                   and e["detail"].get("payload_digest") not in (None, m.digest)]
        replays = [{"replay_id": e["detail"].get("replay_id"), "mode": e["detail"].get("mode"),
                    "by": e["detail"].get("by"), "reason": e["detail"].get("reason"), "at": e["at"]}
                   for e in events if e["event"] == "REPLAYED" and isinstance(e["detail"], dict)]
        return {"message": {"message_id": m.message_id, "source": m.source, "type": m.type,
                            "schema_version": m.schema_version, "correlation_id": m.correlation_id,
                            "target": m.target, "digest": m.digest, "received_at": _iso(m.received_at),
                            "published_at": _iso(m.published_at), "case_number": m.case_number, "uscc": m.uscc,
                            "citizen_id": mask_text(m.citizen_id or "") or None, "project_code": m.project_code},
                "events": events,
                "derived": [{"message_id": d.message_id, "source": d.source, "type": d.type,
                             "received_at": _iso(d.received_at)} for d in derived],
                "outputs": outputs, "replays": replays, "deliveries": deliveries}

    # -- the reads are evidence too -------------------------------------------------------------
    def record_read(self, reader: str, detail: dict) -> None:
        """An AUDIT_READ event: who read what (the console's case page records through here too)."""
        with self.engine.begin() as conn:
            conn.execute(insert(Event.__table__).values(
                event_row("AUDIT_READ", dt.datetime.now(dt.timezone.utc), source=reader, detail=detail)))


def _event(r, previous: dt.datetime | None, received: dt.datetime | None) -> dict:
    return {"seq": r.seq, "event": r.kind, "at": _iso(r.at), "route": getattr(r, "route", None), "code": r.code,
            "source": r.source, "detail": mask_value(_json(r.detail)),
            "since_previous_ms": _ms(r.at - previous) if previous else None,
            "since_received_ms": _ms(r.at - received) if received and r.at >= received else None}


def _json(text: str | None):
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _ms(delta: dt.timedelta) -> float:
    return round(delta.total_seconds() * 1000, 1)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None
