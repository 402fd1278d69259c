"""Sealing in the background (`huitong.services` entry point `sealer`): every seal_interval,
the events logged since the last seal are hashed, chained to it and signed. It only reads the
events, in its own thread and connection, and writes one small row per seal, so acceptance
never waits for it.

Events get their seq when inserted but become visible when their transaction commits, so on
PostgreSQL a later seq can show before an earlier one (and a rolled-back transaction leaves a
seq unused for good). A missing seq therefore holds the seal back until it appears or has been
missing for gap_wait_seconds; then it is recorded in the seal as skipped. Should an event ever
commit into a skipped seq, verification reports it as not sealed."""
from __future__ import annotations

import datetime as dt
import time
from functools import partial

from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import IntegrityError

from bus.logs import get_logger
from bus.models import Event
from bus.periodic import PeriodicService
from bus.secret_box import SecretBox
from bus.seq_ranges import rows_after
from replay.chain import EVENT_COLUMNS, chain_head, events_from, iso_utc, row_leaf
from replay.keys import SealKeys
from replay.models import Seal
from replay.verifier import SealHeader, events_hash

log = get_logger("huitong.audit")

# PostgreSQL advisory lock key of the background sealers ("HTSL"): one seals, the rest stand by.
SEALING_LOCK = 0x4854_534C


# A range of seq, read as bus.seq_ranges says.
_EVENTS = (f"SELECT {', '.join(c.name for c in EVENT_COLUMNS)} FROM events WHERE seq > %s AND seq <= %s "
           "ORDER BY seq")


class ChainSealer:
    """The sealing itself, for the background service and `huitong audit seal`."""

    def __init__(self, engine: Engine, keys: SealKeys, *, max_events: int = 10_000, gap_wait_seconds: float = 10.0):
        self.engine = engine
        self.keys = keys
        self.max_events = max_events
        self.gap_wait_seconds = gap_wait_seconds
        self._gaps_seen: dict[int, float] = {}  # first missing seq -> when first seen missing

    def seal_once(self) -> tuple[int, bool]:
        """Seal what can be sealed now, in one seal: how many events it covered, and whether
        events it did not reach were already logged when it read (a backlog, or events past
        a hole)."""
        signer = self.keys.signer()
        with self.engine.connect() as conn:
            head = chain_head(conn)
            seal_id, expected, prev = head.next_id, head.next_seq, head.prev_hash
            top = conn.scalar(select(func.max(Event.seq))) or 0
            rows = self._events(conn, expected)
        first_seq, skipped, leaves, last_seq = expected, [], bytearray(), None
        now = time.monotonic()
        for row in rows:
            seq = row[0]
            if seq != expected:  # seqs expected..seq-1 are not (yet) visible
                seen = self._gaps_seen.setdefault(expected, now)
                if now - seen < self.gap_wait_seconds:
                    break
                log.warning("audit.seq_skipped", first=expected, last=seq - 1,
                            reason=f"missing for {self.gap_wait_seconds:g} s: a rolled-back transaction")
                skipped.append((expected, seq - 1))
            leaves += row_leaf(row)
            expected, last_seq = seq + 1, seq
        if last_seq is None:
            return 0, False
        self._gaps_seen = {seq: at for seq, at in self._gaps_seen.items() if seq > last_seq}
        sealed_at = dt.datetime.now(dt.timezone.utc)
        header = SealHeader(id=seal_id, first_seq=first_seq, last_seq=last_seq, event_count=len(leaves) // 32,
                            skipped=tuple(skipped), events_hash=events_hash(bytes(leaves)), prev_hash=prev,
                            key_id=signer.key_id, sealed_at=iso_utc(sealed_at))
        seal_hash = header.hash()
        try:
            with self.engine.begin() as conn:
                conn.execute(Seal.__table__.insert().values(
                    id=header.id, first_seq=header.first_seq, last_seq=header.last_seq,
                    event_count=header.event_count, skipped=[list(r) for r in header.skipped],
                    events_hash=header.events_hash, leaves=bytes(leaves), prev_hash=header.prev_hash,
                    seal_hash=seal_hash, key_id=header.key_id, signature=signer.sign(seal_hash),
                    sealed_at=sealed_at))
        except IntegrityError:  # another sealer took this position first; start again from it
            return 0, False
        return header.event_count, last_seq < top

    def _events(self, conn, first: int) -> list:
        """The next events in seq order, as tuples of their EVENT_COLUMNS. Every event passes
        through here once: on PostgreSQL they come as plain tuples in the binary protocol
        (a quarter of sealing's time was building rows)."""
        return rows_after(conn, Event.seq, first - 1, self.max_events, partial(self._range, conn))

    def _range(self, conn, low: int, high: int) -> list:
        if self.engine.dialect.name != "postgresql":
            return conn.execute(events_from(low + 1).where(Event.seq <= high)).all()
        with conn.connection.dbapi_connection.cursor(binary=True) as cur:
            cur.execute(_EVENTS, (low, high))
            return cur.fetchall()

    def seal_all(self) -> int:
        """Seal until caught up with the events logged when each round read: a backlog is
        sealed max_events at a time, and a round that stops short of them (at a hole the
        size of its window, or a gap it waits for) is followed by another. Events logged
        meanwhile wait for the next call: under steady load a round always finds a few new
        ones, and sealing each at once cost a transaction every ~15 ms (70 seals a second)."""
        total = 0
        while True:
            sealed, more = self.seal_once()
            total += sealed
            if not (sealed and more):
                return total


class Sealer(PeriodicService):
    """The background service of a hub process (audit.seal)."""

    name = "sealer"
    kind = "audit"

    def __init__(self, hub):
        options = hub.settings.audit
        self.interval = options.seal_interval
        self.chain = ChainSealer(hub.engine, SealKeys(hub.engine, SecretBox.from_settings(hub.settings)),
                                 max_events=options.seal_max_events, gap_wait_seconds=options.gap_wait_seconds)

    def run_once(self) -> int:
        """Every hub process and worker seals by default. On PostgreSQL they take turns under
        an advisory lock, tried and never waited for: without it each would hash the same
        events only to lose the insert race (a fifth of a route worker's CPU, measured). A
        process that dies lets go of the lock with its connection."""
        engine = self.chain.engine
        if engine.dialect.name != "postgresql":
            return self.chain.seal_all()
        with engine.connect() as conn:
            if not conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": SEALING_LOCK}):
                return 0
            conn.commit()  # the lock is the session's; no transaction stays open while sealing
            try:
                return self.chain.seal_all()
            finally:
                try:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SEALING_LOCK})
                except Exception:
                    conn.invalidate()  # closed, not pooled: a session lock must not outlive its turn

    def failed(self, exc: Exception) -> None:  # the database is away: the events wait, sealed later
        log.error("audit.seal_failed", error=f"{exc.__class__.__name__}: {exc}")
