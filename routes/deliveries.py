"""The delivery records of routes (table route_deliveries) and the events that go with them.
Everything a route worker decided about a batch is committed here in one transaction
before the batch is acked; operators' dead-letter actions go through here too."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, and_, exists, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from bus.exchange_log import event_row, utcnow
from bus.log_writers import raw_cursor, unnest_params, writer_for
from bus.models import HubState, Message, MessageBody, RouteDelivery
from bus.seq_ranges import rows_after

DELIVERED, RETRY, RETRYING, DEAD, DISCARDED = "DELIVERED", "RETRY", "RETRYING", "DEAD", "DISCARDED"
SETTLED = (DELIVERED, DISCARDED)


@dataclass(frozen=True, slots=True)
class State:
    status: str
    attempts: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    message_seq: int
    message_id: str
    route: str
    destination: str
    attempts: int
    error_code: str | None
    last_error: str | None
    dead_at: dt.datetime
    source: str
    type: str


@dataclass(frozen=True, slots=True)
class Due:
    """A retry to hand to the route queue."""

    message_seq: int
    route: str
    destinations: tuple[str, ...]
    attempts: int
    message_id: str
    source: str
    type: str
    correlation_id: str | None
    body: bytes


# The columns of a delivery row the router decides, and those a new decision overwrites.
_UPSERTED = ("message_seq", "message_id", "route", "destination", "status", "attempts", "due_at", "error_code",
             "last_error")
_UPDATED = ("status", "attempts", "due_at", "error_code", "last_error")
_UPSERT = (f"INSERT INTO route_deliveries ({', '.join(_UPSERTED)}, updated_at) "
           f"SELECT t.*, %b::timestamptz FROM unnest({unnest_params(_UPSERTED)}) AS t "
           "ON CONFLICT (message_seq, route, destination) DO UPDATE SET "
           + ", ".join(f"{name} = excluded.{name}" for name in _UPDATED + ("updated_at",)))
_STATES = ("SELECT m.seq, m.message_id, d.destination, d.status, d.attempts FROM messages m "
           "LEFT JOIN route_deliveries d ON d.message_seq = m.seq AND d.route = %b "
           "WHERE m.seq = ANY(%b::int8[])")


class DeliveryStore:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._writer = writer_for(engine.dialect.name)
        self._postgres = engine.dialect.name == "postgresql"
        self._insert = (postgresql if self._postgres else sqlite).insert

    # -- the route worker ---------------------------------------------------------------------
    def states(self, route: str, seqs: list[int]) -> tuple[dict[int, str], dict[tuple[int, str], State]]:
        """The logged message id of each seq (a seq this log does not hold is missing), and
        the delivery state of each (seq, destination) on this route, in one query."""
        if not seqs:
            return {}, {}
        logged, states = {}, {}
        with self.engine.connect() as conn:
            if self._postgres:  # a worker asks this for every batch: a raw statement, no SQL to build
                with raw_cursor(conn) as cur:
                    cur.execute(_STATES, (route, seqs))
                    rows = cur.fetchall()
            else:
                rows = conn.execute(
                    select(Message.seq, Message.message_id, RouteDelivery.destination, RouteDelivery.status,
                           RouteDelivery.attempts)
                    .outerjoin(RouteDelivery, and_(RouteDelivery.message_seq == Message.seq,
                                                   RouteDelivery.route == route))
                    .where(Message.seq.in_(seqs)))
            for r in rows:
                logged[r.seq] = r.message_id
                if r.destination is not None:
                    states[(r.seq, r.destination)] = State(r.status, r.attempts)
        return logged, states

    def commit(self, rows: list[dict], events: list[dict], archive: dict[str, bytes] | None = None) -> None:
        """Upsert delivery rows (message_seq, message_id, route, destination, status, attempts,
        due_at, error_code, last_error) and append their events, in one transaction; archive
        holds transform sources by digest (stored beside the bodies, once)."""
        if not rows and not events:
            return
        now = utcnow()
        # On PostgreSQL in pipeline mode: the three statements travel with the COMMIT.
        with self._writer.transaction(self.engine) as conn:
            if rows and self._postgres:
                # One row per key: a statement may not upsert the same row twice.
                rows = list({(r["message_seq"], r["route"], r["destination"]): r for r in rows}.values())
                with raw_cursor(conn) as cur:
                    cur.execute(_UPSERT, [now] + [[row[name] for row in rows] for name in _UPSERTED])
            elif rows:
                statement = self._insert(RouteDelivery)
                statement = statement.on_conflict_do_update(
                    index_elements=["message_seq", "route", "destination"],
                    set_={name: statement.excluded[name] for name in _UPDATED + ("updated_at",)})
                conn.execute(statement, [{**row, "updated_at": now} for row in rows])
            if archive:
                self._writer.insert_bodies(conn, archive)
            self._writer.append_events(conn, events)

    # -- the retry scheduler ------------------------------------------------------------------
    def claim_due(self, limit: int, lease_seconds: float, routes: set[str]) -> list[Due]:
        """Retries whose time has come (and handed-out ones whose lease ran out), marked
        RETRYING until the lease ends; grouped per message and route."""
        now = utcnow()
        query = (select(RouteDelivery.id, RouteDelivery.message_seq, RouteDelivery.route,
                        RouteDelivery.destination, RouteDelivery.attempts)
                 .where(RouteDelivery.status.in_((RETRY, RETRYING)), RouteDelivery.due_at <= now,
                        RouteDelivery.route.in_(routes))
                 .order_by(RouteDelivery.due_at).limit(limit))
        if self.engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        with self.engine.begin() as conn:
            rows = list(conn.execute(query))
            if not rows:
                return []
            conn.execute(update(RouteDelivery).where(RouteDelivery.id.in_([r.id for r in rows]))
                         .values(status=RETRYING, due_at=now + dt.timedelta(seconds=lease_seconds),
                                 updated_at=now))
            messages = {m.seq: m for m in conn.execute(
                select(Message.seq, Message.message_id, Message.source, Message.type, Message.correlation_id,
                       MessageBody.content).join(MessageBody, MessageBody.digest == Message.digest)
                .where(Message.seq.in_({r.message_seq for r in rows})))}
        grouped: dict[tuple[int, str], list] = {}
        for r in rows:
            grouped.setdefault((r.message_seq, r.route), []).append(r)
        due = []
        for (seq, route), group in grouped.items():
            m = messages[seq]
            due.append(Due(seq, route, tuple(r.destination for r in group), max(r.attempts for r in group),
                           m.message_id, m.source, m.type, m.correlation_id, m.content))
        return due

    def bodies(self, seqs: list[int]) -> dict[int, bytes]:
        with self.engine.connect() as conn:
            return dict(conn.execute(select(Message.seq, MessageBody.content)
                                     .join(MessageBody, MessageBody.digest == Message.digest)
                                     .where(Message.seq.in_(seqs))).all())

    def start_sweep_marks(self, routes: list[str]) -> None:
        """A route takes the messages published from when it first exists; older ones are
        not re-driven to it."""
        if not routes:
            return
        with self.engine.begin() as conn:
            top = str(conn.scalar(select(func.max(Message.seq))) or 0)
            for route in routes:
                conn.execute(self._insert(HubState).values(key=f"route_swept:{route}", value=top)
                             .on_conflict_do_nothing())

    def unrouted(self, route: str, types: tuple[str, ...], *, older_than: float, limit: int) -> list[Due]:
        """Messages published more than `older_than` seconds ago that the route never recorded
        (the broker lost them, e.g. a queue that was not up when they were routed), past the
        route's sweep mark, which then moves on. The mark lives in hub_state; a new route
        starts at the present. On PostgreSQL one process sweeps a route at a time."""
        key = f"route_swept:{route}"
        cutoff = utcnow() - dt.timedelta(seconds=older_than)
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql" and not conn.scalar(
                    text("SELECT pg_try_advisory_xact_lock(hashtext(:key))"), {"key": key}):
                return []
            mark = conn.scalar(select(HubState.value).where(HubState.key == key))
            if mark is None:
                top = conn.scalar(select(func.max(Message.seq))) or 0
                conn.execute(self._insert(HubState).values(key=key, value=str(top)).on_conflict_do_nothing())
                return []
            # Only a prefix of published, old-enough messages: one published later (or not
            # yet) stops the sweep there, so nothing is passed over.
            def published(low: int, high: int) -> list:
                return conn.execute(select(Message.seq, Message.published_at)
                                    .where(Message.seq > low, Message.seq <= high).order_by(Message.seq)).all()
            window = []
            for seq, published_at in rows_after(conn, Message.seq, int(mark), limit, published):
                if published_at is None or published_at >= cutoff:
                    break
                window.append(seq)
            if not window:
                return []
            recorded = exists().where(RouteDelivery.message_seq == Message.seq, RouteDelivery.route == route)
            query = (select(Message.seq, Message.message_id, Message.source, Message.type, Message.correlation_id,
                            MessageBody.content).join(MessageBody, MessageBody.digest == Message.digest)
                     .where(Message.seq.between(window[0], window[-1]), ~recorded))
            if types:
                query = query.where(Message.type.in_(types))
            missing = [Due(r.seq, route, (), 0, r.message_id, r.source, r.type, r.correlation_id, r.content)
                       for r in conn.execute(query)]
            conn.execute(update(HubState).where(HubState.key == key).values(value=str(window[-1])))
        return missing

    def release_leases(self) -> int:
        """After a restart on the in-memory broker: handed-out retries died with the old
        process, so they are due now."""
        with self.engine.begin() as conn:
            return conn.execute(update(RouteDelivery).where(RouteDelivery.status == RETRYING)
                                .values(status=RETRY, due_at=utcnow())).rowcount

    # -- dead letters ---------------------------------------------------------------------------
    def dead_letters(self, route: str | None = None, *, limit: int = 1000,
                     ids: list[int] | None = None) -> list[DeadLetter]:
        query = (select(RouteDelivery.id, RouteDelivery.message_seq, RouteDelivery.message_id,
                        RouteDelivery.route, RouteDelivery.destination, RouteDelivery.attempts,
                        RouteDelivery.error_code, RouteDelivery.last_error, RouteDelivery.updated_at,
                        Message.source, Message.type)
                 .join(Message, Message.seq == RouteDelivery.message_seq)
                 .where(RouteDelivery.status == DEAD).order_by(RouteDelivery.id).limit(limit))
        if route:
            query = query.where(RouteDelivery.route == route)
        if ids is not None:
            query = query.where(RouteDelivery.id.in_(ids))
        with self.engine.connect() as conn:
            return [DeadLetter(*row) for row in conn.execute(query)]

    def dead_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return dict(conn.execute(select(RouteDelivery.route, func.count())
                                     .where(RouteDelivery.status == DEAD).group_by(RouteDelivery.route)).all())

    def still_dead(self, keys: list[tuple[int, str, str]]) -> set[tuple[int, str, str]]:
        """Which (message_seq, route, destination) are still dead letters."""
        if not keys:
            return set()
        with self.engine.connect() as conn:
            rows = conn.execute(select(RouteDelivery.message_seq, RouteDelivery.route, RouteDelivery.destination)
                                .where(RouteDelivery.status == DEAD,
                                       or_(*(and_(RouteDelivery.message_seq == s, RouteDelivery.route == r,
                                                  RouteDelivery.destination == d) for s, r, d in keys))))
            return {tuple(r) for r in rows}

    def operator_action(self, route: str, letters: list[DeadLetter], *, action: str, by: str,
                        reason: str | None) -> int:
        """RETRIED (due now, attempts start again) or DISCARDED, with who and why in the log.
        Only rows that are still dead change, so two operators cannot act twice."""
        if not letters:
            return 0
        now = utcnow()
        retry = action == "RETRIED"
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(RouteDelivery)
                .where(RouteDelivery.id.in_([d.id for d in letters]), RouteDelivery.status == DEAD)
                .values(status=RETRY if retry else DISCARDED, due_at=now if retry else None,
                        attempts=0 if retry else RouteDelivery.attempts,
                        updated_at=now)
                .returning(RouteDelivery.id)).scalars().all()
            done = set(changed)
            self._writer.append_events(conn, [
                event_row(action, now, message_seq=d.message_seq, message_id=d.message_id, route=route, source=d.source,
                      code=None, detail={"destination": d.destination, "by": by, "reason": reason,
                                         "dead_letter": d.id})
                for d in letters if d.id in done])
        return len(done)
