"""Pausing a route: an operator stops its workers taking from its queue (the messages wait
there, nothing is lost, retries are not handed out) and resumes it later. The state is a row in
route_pauses, shared by every worker process; who and why also go into the exchange log."""
from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select

from bus.errors import HuitongError
from bus.exchange_log import event_row
from bus.models import Event, RoutePause


class PauseRefused(HuitongError):
    code = "VALUE_INVALID"


@dataclass(frozen=True)
class Pause:
    route: str
    paused_at: dt.datetime
    paused_by: str
    reason: str


class PauseStore:
    def __init__(self, engine: Engine, *, cache_seconds: float = 1.0):
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._cached: frozenset[str] = frozenset()
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def pauses(self) -> dict[str, Pause]:
        with self.engine.connect() as conn:
            return {r.route: Pause(r.route, r.paused_at, r.paused_by, r.reason)
                    for r in conn.execute(select(RoutePause))}

    def paused(self) -> frozenset[str]:
        """The paused route ids, read at most once per cache_seconds (workers ask every loop)."""
        with self._lock:
            if time.monotonic() - self._read_at >= self.cache_seconds:
                with self.engine.connect() as conn:
                    self._cached = frozenset(conn.scalars(select(RoutePause.route)))
                self._read_at = time.monotonic()
            return self._cached

    def pause(self, route: str, *, by: str, reason: str) -> bool:
        """True if the route was running and is now paused."""
        if not reason or not reason.strip():
            raise PauseRefused("say why the route is paused (reason)")
        now = dt.datetime.now(dt.timezone.utc)
        with self.engine.begin() as conn:
            if conn.scalar(select(RoutePause.route).where(RoutePause.route == route)):
                return False
            conn.execute(insert(RoutePause).values(route=route, paused_at=now, paused_by=by, reason=reason.strip()))
            conn.execute(insert(Event.__table__).values(
                event_row("ROUTE_PAUSED", now, route=route, source=by, detail={"by": by, "reason": reason.strip()})))
        self._read_at = float("-inf")
        return True

    def resume(self, route: str, *, by: str, reason: str | None = None) -> bool:
        """True if the route was paused and now runs again."""
        now = dt.datetime.now(dt.timezone.utc)
        with self.engine.begin() as conn:
            if not conn.execute(delete(RoutePause).where(RoutePause.route == route)).rowcount:
                return False
            conn.execute(insert(Event.__table__).values(
                event_row("ROUTE_RESUMED", now, route=route, source=by, detail={"by": by, "reason": reason})))
        self._read_at = float("-inf")
        return True
