"""The pulse of the hub: a live aggregate of the exchange log, kept by tailing the events table
once a second (by seq, so each event is read once). Counters for /metrics, the messages in and
out per minute for the overview's chart, per-route rates and delivery times, per-system
pushes and rejections of the day. Pages read it from memory instead of counting millions of
rows per view; every process that serves the console keeps its own (counters start at zero
when it starts, as Prometheus counters may)."""
from __future__ import annotations

import bisect
import datetime as dt
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

from sqlalchemy import Engine, and_, func, or_, select

from bus.logs import get_logger
from bus.periodic import PeriodicService
from bus.models import Event, Message
from bus.seq_ranges import rows_after
from bus.times import BEIJING

log = get_logger("huitong.console")

# Seconds from acceptance to delivery (huitong_route_seconds).
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, float("inf"))
MINUTES = 60  # the overview's chart
RECENT = 300.0  # seconds of per-route delivery times kept for mean and p99
GAP_WAIT = 10.0  # a seq not yet visible is looked for again this long (a commit in flight)
OUTCOMES = {"RECEIVED": "accepted", "REJECTED": "rejected", "DUPLICATE": "duplicate"}
ROUTE_OUTCOMES = {"DELIVERED": "delivered", "FAILED": "failed", "DEAD_LETTERED": "dead_lettered"}


@dataclass
class SystemDay:
    """One department system today (Beijing day)."""
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    last_seen: dt.datetime | None = None
    reasons: Counter = field(default_factory=Counter)


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds


class Pulse(PeriodicService):
    name = "console-pulse"
    first_wait = False  # the first read (backfill) at once

    def __init__(self, engine: Engine, *, interval: float = 1.0, batch: int = 50_000):
        self.engine = engine
        self.reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.interval = interval
        self.batch = batch
        self.lock = threading.Lock()
        self.high = 0  # the highest seq read
        self.gaps: dict[int, float] = {}  # seq not yet seen -> when first missed
        self.messages: Counter = Counter()  # (system, type, outcome)
        self.deliveries: Counter = Counter()  # (route, outcome)
        self.route_seconds: dict[str, Histogram] = defaultdict(Histogram)
        self.recent: dict[str, deque] = defaultdict(lambda: deque(maxlen=20_000))  # route -> (at, seconds)
        self.minutes: dict[int, Counter] = {}  # epoch minute -> {"in", "out", "rejected"}
        self.day = _today()
        self.systems: dict[str, SystemDay] = defaultdict(SystemDay)
        self.last_seen: dict[str, dt.datetime] = {}
        self.ready = threading.Event()
        self.last_error: str | None = None

    # -- running (PeriodicService: a round every interval, the first at once) ---------------------
    def run_once(self) -> None:
        if not self.ready.is_set():
            self.backfill()
        self.refresh()
        self.last_error = None

    def failed(self, exc: Exception) -> None:  # the database is away: try again, keep what we have
        text = f"{exc.__class__.__name__}: {exc}"
        if text != self.last_error:
            log.warning("console.pulse_failed", error=text)
        self.last_error = text

    # -- the start: what happened before this process looked --------------------------------------
    def backfill(self) -> None:
        """The last hour's minutes and today's systems, by grouped counts (not by reading every
        event); counters start from here."""
        now = dt.datetime.now(dt.timezone.utc)
        since = now - dt.timedelta(minutes=MINUTES)
        midnight = self.day
        with self.reads.connect() as conn:
            high = conn.scalar(select(func.max(Event.seq))) or 0
            minute = _minute_expr(self.engine.dialect.name)
            minutes: dict[int, Counter] = {}
            for kind, key in (("RECEIVED", "in"), ("DELIVERED", "out"), ("REJECTED", "rejected")):
                for bucket, count in conn.execute(select(minute, func.count()).where(
                        Event.kind == kind, Event.at >= since, Event.seq <= high).group_by(minute)):
                    epoch = _epoch_minute(bucket)
                    minutes.setdefault(epoch, Counter())[key] += count
            systems: dict[str, SystemDay] = defaultdict(SystemDay)
            for source, kind, count, last in conn.execute(
                    select(Event.source, Event.kind, func.count(), func.max(Event.at))
                    .where(Event.kind.in_(tuple(OUTCOMES)), Event.at >= midnight, Event.seq <= high)
                    .group_by(Event.source, Event.kind)):
                day = systems[source]
                setattr(day, {"RECEIVED": "accepted", "REJECTED": "rejected", "DUPLICATE": "duplicates"}[kind], count)
                day.last_seen = _latest(day.last_seen, _aware(last))
            for source, code, count in conn.execute(
                    select(Event.source, Event.code, func.count())
                    .where(Event.kind == "REJECTED", Event.at >= midnight, Event.seq <= high)
                    .group_by(Event.source, Event.code)):
                systems[source].reasons[code or "?"] += count
            last_seen = {source: _aware(at) for source, at in conn.execute(
                select(Message.source, func.max(Message.received_at)).group_by(Message.source))}
        with self.lock:
            self.high = high
            self.minutes = minutes
            self.systems = systems
            for source, at in last_seen.items():
                self.last_seen[source] = _latest(self.last_seen.get(source), at)
        self.ready.set()

    # -- every second: what is new --------------------------------------------------------------
    def refresh(self) -> int:
        """Read the events after the last one read (and gaps that may have filled); returns how
        many were taken in."""
        now_mono = time.monotonic()
        with self.lock:
            high, gaps = self.high, [s for s, t in self.gaps.items() if now_mono - t < GAP_WAIT]
        with self.reads.connect() as conn:
            rows = rows_after(conn, Event.seq, high, self.batch,
                              lambda low, top: conn.execute(new_events(_between(low, top, gaps), self.batch)).all())
        with self.lock:
            self._take(rows, now_mono)
        return len(rows)

    def _take(self, rows, now_mono: float) -> None:
        today = _today()
        if today != self.day:
            self.day, self.systems = today, defaultdict(SystemDay)
        expected = self.high + 1
        for r in rows:
            self.gaps.pop(r.seq, None)
            if r.seq > self.high:
                for missing in range(expected, r.seq):
                    self.gaps[missing] = now_mono
                expected = r.seq + 1
                self.high = r.seq
            self._count(r)
        for seq in [s for s, t in self.gaps.items() if now_mono - t >= GAP_WAIT]:
            del self.gaps[seq]  # a transaction that rolled back: that seq never comes
        oldest = int(time.time() // 60) - MINUTES
        for minute in [m for m in self.minutes if m < oldest]:
            del self.minutes[minute]

    def _count(self, r) -> None:
        # Half the log is PUBLISHED events, which nothing here counts: they leave first.
        outcome = OUTCOMES.get(r.kind)
        route_outcome = None if outcome else ROUTE_OUTCOMES.get(r.kind)
        if not (outcome or (route_outcome and r.route)):
            return
        at = _aware(r.at)
        minute = int(at.timestamp() // 60)
        if outcome:
            self.messages[(r.source or "", r.type or "unknown", outcome)] += 1
            if at >= self.day:
                day = self.systems[r.source or ""]
                day.last_seen = _latest(day.last_seen, at)
                if r.kind == "RECEIVED":
                    day.accepted += 1
                elif r.kind == "REJECTED":
                    day.rejected += 1
                    day.reasons[r.code or "?"] += 1
                else:
                    day.duplicates += 1
            self.last_seen[r.source or ""] = _latest(self.last_seen.get(r.source or ""), at)
            if r.kind in ("RECEIVED", "REJECTED"):
                self._minute(minute)["in" if r.kind == "RECEIVED" else "rejected"] += 1
            return
        self.deliveries[(r.route, route_outcome)] += 1
        if r.kind == "DELIVERED":
            self._minute(minute)["out"] += 1
            if r.received_at is not None:
                seconds = max(0.0, (at - _aware(r.received_at)).total_seconds())
                self.route_seconds[r.route].observe(seconds)
                self.recent[r.route].append((at.timestamp(), seconds))

    def _minute(self, minute: int) -> Counter:
        counts = self.minutes.get(minute)
        if counts is None:
            counts = self.minutes[minute] = Counter()
        return counts

    # -- what pages read ------------------------------------------------------------------------
    def series(self) -> list[dict]:
        """The last hour, one point per minute (Beijing time), oldest first."""
        now_minute = int(time.time() // 60)
        with self.lock:
            points = [(m, self.minutes.get(m, Counter())) for m in range(now_minute - MINUTES + 1, now_minute + 1)]
        return [{"minute": dt.datetime.fromtimestamp(m * 60, BEIJING).strftime("%H:%M"),
                 "in": c["in"], "out": c["out"], "rejected": c["rejected"]} for m, c in points]

    def route_times(self, route: str) -> dict:
        """Deliveries of the last minute (per second) and delivery times of the last five minutes."""
        now = time.time()
        with self.lock:
            samples = [s for at, s in self.recent.get(route, ()) if now - at <= RECENT]
            last_minute = sum(1 for at, _ in self.recent.get(route, ()) if now - at <= 60)
            counts = {o: self.deliveries[(route, o)] for o in ROUTE_OUTCOMES.values()}
        samples.sort()
        return {"per_second": round(last_minute / 60, 1), "since_start": counts,
                "mean_ms": round(1000 * sum(samples) / len(samples), 1) if samples else None,
                "p99_ms": round(1000 * samples[min(len(samples) - 1, int(len(samples) * 0.99))], 1)
                if samples else None}

    def systems_today(self) -> dict[str, dict]:
        with self.lock:
            out = {}
            for source in set(self.systems) | set(self.last_seen):
                day = self.systems.get(source, SystemDay())
                pushes = day.accepted + day.rejected + day.duplicates
                out[source] = {"pushes_today": pushes, "accepted_today": day.accepted, "rejected_today": day.rejected,
                               "rejection_rate": round(day.rejected / pushes, 3) if pushes else None,
                               "top_reasons": day.reasons.most_common(3),
                               "last_seen": _iso(_latest(day.last_seen, self.last_seen.get(source)))}
            return out

    def snapshot_counters(self) -> tuple[dict, dict, dict]:
        with self.lock:
            return (dict(self.messages), dict(self.deliveries),
                    {r: Histogram(list(h.counts), h.total) for r, h in self.route_seconds.items()})


def _between(low: int, high: int, gaps: list[int]):
    """The seqs of a range (bus.seq_ranges), and the gaps still looked for."""
    condition = and_(Event.seq > low, Event.seq <= high)
    return or_(condition, Event.seq.in_(gaps[:1000])) if gaps else condition


def new_events(condition, limit: int):
    """The events a refresh takes in, each with its message's type and received_at. Those two
    are looked up per event by the message's key (scalar subqueries, which neither database
    turns into a join): as a join, PostgreSQL planned a (parallel) hash join that read the whole
    messages table every second in every process, 46 % of the time busy at 100,000 messages
    and slowing the hub as its log grew."""
    def of_message(column):
        return select(column).where(Message.seq == Event.message_seq).scalar_subquery()
    return (select(Event.seq, Event.kind, Event.at, Event.source, Event.route, Event.code,
                   of_message(Message.type).label("type"), of_message(Message.received_at).label("received_at"))
            .where(condition).order_by(Event.seq).limit(limit))


def _today() -> dt.datetime:
    now = dt.datetime.now(BEIJING)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _minute_expr(dialect: str):
    if dialect == "postgresql":
        return func.date_trunc("minute", Event.at)
    return func.strftime("%Y-%m-%dT%H:%M:00", Event.at)


def _epoch_minute(bucket) -> int:
    if isinstance(bucket, str):
        bucket = dt.datetime.fromisoformat(bucket)
    return int(_aware(bucket).timestamp() // 60)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _latest(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return b if a is None or (b is not None and b > a) else a


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(BEIJING).isoformat(timespec="seconds") if value else None
