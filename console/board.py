"""What every console page shows, as plain dicts: the pages render them and /api/v1/console
answers them as JSON, so the two cannot disagree. Live figures come from the pulse (memory);
what must be exact comes from the database, behind short snapshots so that a page is never
a scan of the log."""
from __future__ import annotations

import datetime as dt
import threading
import time
from collections import defaultdict
from dataclasses import asdict

from sqlalchemy import func, insert, select

from bus.errors import HuitongError
from bus.exchange_log import event_row
from bus.masking import mask_text, mask_value
from bus.models import Event, Message, MessageBody, RouteDelivery
from bus.periodic import PeriodicService
from console.pulse import Pulse
from console.users import User
from replay.lineage import LogQueries, LogSearch
from routes.deliveries import DEAD, DeliveryStore
from routes.loader import RouteSet
from routes.pausing import PauseStore
from routes.status import hub_health, route_status

SNAPSHOT_SECONDS = 2.0
MAX_BODY_SHOWN = 200_000


class ActionRefused(HuitongError):
    code = "VALUE_INVALID"


class Snapshot:
    """A value a background thread recomputes every `seconds` while pages read it (so no page
    waits for a query behind it); after a minute unread it is left to go stale and the next
    read computes it once."""

    def __init__(self, compute, seconds: float = SNAPSHOT_SECONDS):
        self.compute, self.seconds = compute, seconds
        self.value, self.at, self.read_at = None, float("-inf"), float("-inf")
        self.lock = threading.Lock()

    def get(self):
        self.read_at = time.monotonic()
        if self.value is None or time.monotonic() - self.at > 60:
            self.refresh()
        return self.value

    def refresh(self) -> None:
        with self.lock:
            self.value, self.at = self.compute(), time.monotonic()

    def due(self) -> bool:
        now = time.monotonic()
        return now - self.read_at < 60 and now - self.at >= self.seconds

    def expire(self) -> None:
        """Recompute now (an operator acted: the next page shows it)."""
        if self.value is not None:
            self.refresh()


class Refresher(PeriodicService):
    """One thread keeping the board's snapshots fresh."""

    name = "console-refresher"
    interval = 0.25

    def __init__(self, snapshots: list[Snapshot]):
        self.snapshots = snapshots

    def run_once(self) -> None:
        for snapshot in self.snapshots:
            if snapshot.due():
                try:
                    snapshot.refresh()
                except Exception:  # the database or broker is away: pages show the last value
                    snapshot.at = time.monotonic()

    def failed(self, exc: Exception) -> None:  # run_once keeps its own failures
        pass


class Board:
    def __init__(self, hub, routes: RouteSet, pulse: Pulse):
        self.hub = hub
        self.engine = hub.engine
        self.routes = routes
        self.pulse = pulse
        self.deliveries = DeliveryStore(hub.engine)
        self.pauses = PauseStore(hub.engine, cache_seconds=0)
        self.log = LogQueries(hub.engine)
        self._route_rows = Snapshot(lambda: route_status(self.engine, self.routes, self.hub.settings.broker_url))
        self._health = Snapshot(lambda: hub_health(self.engine, self.hub.settings.broker_url,
                                                   self.hub.settings.relay.max_lag_seconds))
        self.refresher = Refresher([self._route_rows, self._health]).start()
        self._verification: dict | None = None
        self._verifying = threading.Lock()

    def close(self) -> None:
        self.refresher.stop()

    # -- overview -------------------------------------------------------------------------------
    def overview(self) -> dict:
        series = self.pulse.series()
        accepted = sum(p["in"] for p in series)
        rejected = sum(p["rejected"] for p in series)
        routes = self.route_rows()
        health = self._health.get()
        sealing = health["checks"].get("sealing", {})
        relay = health["checks"].get("relay", {})
        return {"series": series,
                "last_hour": {"accepted": accepted, "rejected": rejected, "delivered": sum(p["out"] for p in series),
                              "acceptance_rate": round(accepted / (accepted + rejected), 3)
                              if accepted + rejected else None,
                              "rejection_rate": round(rejected / (accepted + rejected), 3)
                              if accepted + rejected else None},
                "backlog": {"unpublished": relay.get("unpublished"),
                            "queued": sum(r["queue_depth"] or 0 for r in routes),
                            "retrying": sum(r["retrying"] for r in routes)},
                "dead_letters": sum(r["dead"] for r in routes),
                "unsealed_events": sealing.get("unsealed_events"),
                "last_seal_at": sealing.get("last_seal_at"),
                "health": health}

    def overview_health(self) -> dict:
        return self._health.get()

    # -- routes ---------------------------------------------------------------------------------
    def route_rows(self) -> list[dict]:
        pauses = self.pauses.pauses()
        rows = []
        for status in self._route_rows.get():
            row = asdict(status)
            times = self.pulse.route_times(status.id)
            pause = pauses.get(status.id)
            row.update(per_second=times["per_second"], mean_ms=times["mean_ms"], p99_ms=times["p99_ms"],
                       total=status.delivered + status.dead + status.discarded,
                       failed=status.dead + status.discarded, in_flight=status.retrying,
                       state="disabled" if not status.enabled else "paused" if pause or status.paused else "running",
                       paused_by=pause.paused_by if pause else None,
                       paused_reason=mask_text(pause.reason) if pause else None,
                       last_error=mask_text(status.last_error) if status.last_error else None)
            rows.append(row)
        return rows

    def pause(self, user: User, route: str, reason: str) -> bool:
        self._known_route(route)
        done = self.pauses.pause(route, by=user.username, reason=reason)
        self._route_rows.expire()
        return done

    def resume(self, user: User, route: str, reason: str | None) -> bool:
        self._known_route(route)
        done = self.pauses.resume(route, by=user.username, reason=reason)
        self._route_rows.expire()
        return done

    def _known_route(self, route: str) -> None:
        if route not in self.routes.routes:
            raise ActionRefused(f"no route {route!r}", code="NOT_FOUND")

    # -- systems --------------------------------------------------------------------------------
    def systems(self) -> list[dict]:
        today = self.pulse.systems_today()
        rows = []
        for s in self.hub.systems.list():
            day = today.get(s.id, {})
            rows.append({"id": s.id, "name": s.name, "enabled": s.enabled, "grants": sorted(s.grants),
                         "last_seen": day.get("last_seen"), "pushes_today": day.get("pushes_today", 0),
                         "rejected_today": day.get("rejected_today", 0),
                         "rejection_rate": day.get("rejection_rate"),
                         "top_reasons": [{"code": c, "count": n} for c, n in day.get("top_reasons", [])]})
        return rows

    def set_system_enabled(self, user: User, system_id: str, enabled: bool, reason: str) -> None:
        if not reason.strip():
            raise ActionRefused("say why (reason)")
        if self.hub.systems.get(system_id, fresh=True) is None:
            raise ActionRefused(f"no system {system_id!r}", code="NOT_FOUND")
        self.hub.systems.set_enabled(system_id, enabled)
        self._record("SYSTEM_CHANGED", user, {"system": system_id, "enabled": enabled, "reason": reason})

    # -- dead letters ---------------------------------------------------------------------------
    def dead_letters(self, route: str | None = None, limit: int = 200) -> list[dict]:
        return [_letter(d) for d in self.deliveries.dead_letters(route or None, limit=limit)]

    def dead_letter(self, letter_id: int) -> dict:
        letters = self.deliveries.dead_letters(ids=[letter_id], limit=1)
        if not letters:
            with self.engine.connect() as conn:
                row = conn.execute(select(RouteDelivery).where(RouteDelivery.id == letter_id)).first()
            if row is None:
                raise ActionRefused(f"no dead letter {letter_id}", code="NOT_FOUND")
            return {"id": letter_id, "route": row.route, "destination": row.destination, "status": row.status,
                    "message_id": row.message_id, "settled": True}
        d = letters[0]
        with self.engine.connect() as conn:
            body = conn.scalar(select(MessageBody.content).join(Message, Message.digest == MessageBody.digest)
                               .where(Message.seq == d.message_seq))
        out = _letter(d)
        out.update(status=DEAD, settled=False,
                   body=mask_text(body[:MAX_BODY_SHOWN].decode("utf-8", "replace")) if body else None)
        return out

    def act(self, user: User, ids: list[int], action: str, reason: str | None) -> dict:
        """RETRIED or DISCARDED, one or many dead letters of any routes, recorded with who and why."""
        if action not in ("RETRIED", "DISCARDED"):
            raise ActionRefused(f"action {action!r} is not retry or discard")
        if action == "DISCARDED" and not (reason or "").strip():
            raise ActionRefused("say why the message will never be delivered (reason)")
        if not ids:
            raise ActionRefused("choose at least one dead letter")
        letters = self.deliveries.dead_letters(ids=ids, limit=len(ids))
        by_route = defaultdict(list)
        for d in letters:
            by_route[d.route].append(d)
        done = sum(self.deliveries.operator_action(route, group, action=action, by=user.username, reason=reason)
                   for route, group in by_route.items())
        self._route_rows.expire()
        return {"done": done, "not_dead": sorted(set(ids) - {d.id for d in letters})}

    # -- messages -------------------------------------------------------------------------------
    def search(self, user: User, criteria: LogSearch, *, after: int | None = None, limit: int = 50) -> dict:
        return self.log.search(f"console:{user.username}", criteria, after=after, limit=limit)

    def lineage(self, user: User, message_id: str, source: str | None = None) -> dict:
        return self.log.lineage(f"console:{user.username}", message_id, source=source)

    def case(self, user: User, case_number: str) -> dict:
        """Every message of a case in the order they came, each with its events."""
        case_number = case_number.strip()
        with self.log.reads.connect() as conn:
            messages = conn.execute(select(Message.seq, Message.message_id, Message.source, Message.type,
                                           Message.received_at).where(Message.case_number == case_number)
                                    .order_by(Message.received_at, Message.seq).limit(500)).all()
            events = defaultdict(list)
            if messages:
                for e in conn.execute(select(Event.message_seq, Event.kind, Event.at, Event.route, Event.code)
                                      .where(Event.message_seq.in_([m.seq for m in messages]))
                                      .order_by(Event.seq)):
                    events[e.message_seq].append({"event": e.kind, "at": e.at.isoformat(), "route": e.route,
                                                  "code": e.code})
        self.log.record_read(f"console:{user.username}", {"case": mask_text(case_number), "results": len(messages)})
        return {"case_number": case_number,
                "messages": [{"message_id": m.message_id, "source": m.source, "type": m.type,
                              "received_at": m.received_at.isoformat(), "events": events.get(m.seq, [])}
                             for m in messages]}

    def export_case(self, user: User, case_number: str) -> tuple[str, bytes]:
        """The case's evidence bundle (replay/bundle.py: sealed events, bodies, seals, keys,
        signed manifest), recorded as AUDIT_EXPORT by this user."""
        import tempfile
        from pathlib import Path
        from bus.secret_box import SecretBox
        from replay.bundle import NothingToExport, export_bundle
        from replay.keys import SealKeys
        keys = SealKeys(self.engine, SecretBox.from_settings(self.hub.settings))
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bundle.zip"
            try:
                export_bundle(self.engine, keys, out, case_number=case_number.strip(),
                              reader=f"console:{user.username}")
            except NothingToExport as exc:
                raise ActionRefused(str(exc), code="NOT_FOUND") from None
            data = out.read_bytes()
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in case_number.strip())
        return f"evidence-{safe}.zip", data

    def replay_case(self, user: User, case_number: str, mode: str, reason: str) -> dict:
        """Run a case's messages through the routes again: a dry run (what would go out, and
        whether it differs from what went out then) or a real delivery; REPLAYED events carry
        the user and the reason."""
        from replay.replayer import DELIVER, DRY_RUN, Replayer, ReplayRequest
        if mode not in (DRY_RUN, DELIVER):
            raise ActionRefused(f"mode must be {DRY_RUN} or {DELIVER}")
        runtime = self.hub.service("routes")
        request = ReplayRequest(reason=reason, by=f"console:{user.username}", mode=mode,
                                case_number=case_number.strip())
        report = Replayer(self.engine, self.routes, runtime.parser).run(request)
        if mode == DRY_RUN:  # nothing sent, so no REPLAYED events: the look itself is recorded
            self._record("AUDIT_READ", user, {"replay": DRY_RUN, "case": mask_text(case_number.strip()),
                                              "reason": reason, "replay_id": report.replay_id})
        return {"case_number": case_number.strip(), "replay_id": report.replay_id, "mode": report.mode,
                "by": user.username, "reason": mask_text(reason), "messages": report.messages,
                "counts": report.counts(), "planned": [mask_value(p.as_dict()) for p in report.planned[:500]]}

    # -- audit ----------------------------------------------------------------------------------
    def audit(self) -> dict:
        from replay.chain import chain_head
        with self.engine.connect() as conn:
            head = chain_head(conn)
            top = conn.scalar(select(func.max(Event.seq))) or 0
        return {"sealed_through_seq": head.next_seq - 1, "next_seal": head.next_id,
                "last_seal_at": head.sealed_at.isoformat() if head.sealed_at else None,
                "unsealed_events": max(0, top - (head.next_seq - 1)), "events": top,
                "sealing_here": self.hub.settings.audit.seal,
                "verification": self._verification, "verifying": self._verifying.locked()}

    def verify_now(self, user: User) -> bool:
        """Start a full verification in the background; False if one is running already."""
        if not self._verifying.acquire(blocking=False):
            return False
        self._record("AUDIT_VERIFY", user, {"from": "console"})
        threading.Thread(target=self._verify, args=(user.username,), name="console-verify", daemon=True).start()
        return True

    def _verify(self, username: str) -> None:
        from bus.secret_box import SecretBox
        from replay.keys import SealKeys
        from replay.verify import verify_log
        started = time.monotonic()
        try:
            keys = SealKeys(self.engine, SecretBox.from_settings(self.hub.settings)).public_keys()
            report = verify_log(self.engine, keys)
            self._verification = {"ok": report.ok, "seals": report.seals, "events": report.events,
                                  "unsealed": report.unsealed, "findings": [str(f) for f in report.findings[:20]],
                                  "by": username, "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                  "seconds": round(time.monotonic() - started, 2)}
        except Exception as exc:
            self._verification = {"ok": False, "findings": [f"verification failed to run: {exc.__class__.__name__}"],
                                  "by": username, "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        finally:
            self._verifying.release()

    # -- the record of what users did -----------------------------------------------------------
    def _record(self, kind: str, user: User, detail: dict) -> None:
        self._append(kind, user.username, mask_value({"by": user.username, **detail}))

    def record_login(self, username: str, ok: bool, address: str | None) -> None:
        self._append("LOGIN" if ok else "LOGIN_FAILED", username, {"address": address})

    def _append(self, kind: str, username: str, detail: dict) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(Event.__table__).values(
                event_row(kind, dt.datetime.now(dt.timezone.utc), source=f"console:{username[:60]}", detail=detail)))

    def failed_logins(self, username: str, minutes: int = 15) -> int:
        since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=minutes)
        with self.engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(Event).where(
                Event.kind == "LOGIN_FAILED", Event.at >= since, Event.source == f"console:{username[:60]}")) or 0


def _letter(d) -> dict:
    return {"id": d.id, "route": d.route, "destination": d.destination, "message_id": d.message_id,
            "type": d.type, "source": d.source, "attempts": d.attempts, "code": d.error_code,
            "error": mask_text(d.last_error or ""), "dead_at": d.dead_at.isoformat(timespec="seconds")}


