"""The router: what a route worker does with a batch of deliveries from route queues.

For each message and route: skip what the delivery records say is settled (idempotency on
message, route and destination), match `from` and `when`, transform, hand the batch to each
destination, then commit every outcome with its events (ROUTED, DELIVERED, FAILED,
DEAD_LETTERED) in one transaction. Only then does the worker ack. A failure schedules a
retry with backoff; the last one (or a permanent one) makes a dead letter, which is also
published to huitong.route.<id>.dead with the original message and the error."""
from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from dataclasses import dataclass

import structlog

from bus.broker import logged_message
from bus.errors import DeliveryError, HuitongError, RejectedMessage
from bus.exchange_log import event_row, utcnow
from bus.logs import get_logger
from bus.topology import dead_queue_name, route_queue_name
from bus.worker import Delivery
from routes.definition import Route, Target
from routes.deliveries import DEAD, DELIVERED, RETRY, RETRYING, DeliveryStore, State
from routes.destinations import Outgoing
from routes.in_flight import InFlight
from routes.loader import RouteSet
from schemas.hardened import HardenedParser

log = get_logger("huitong.router")
RETRY_HEADER = "x-huitong-retry"  # destinations a retry publication is for, comma-separated
FORWARDED_HEADER = "x-huitong-forwarded-from"
ERROR_TEXT_LIMIT = 2000


@dataclass(slots=True)
class Incoming:
    seq: int
    message_id: str
    source: str
    type: str
    correlation_id: str | None
    body: bytes
    retry_for: frozenset[str] | None
    forwarded_from: str | None

    @classmethod
    def from_delivery(cls, d: Delivery) -> "Incoming | None":
        h = d.headers
        if "x-huitong-seq" not in h:
            return None
        retry = h.get(RETRY_HEADER)
        return cls(int(h["x-huitong-seq"]), d.message_id or "", h.get("x-huitong-source", ""),
                   h.get("x-huitong-type", ""), d.correlation_id, d.body,
                   frozenset(retry.split(",")) if retry else None, h.get(FORWARDED_HEADER))


class Router:
    def __init__(self, routes: RouteSet, store: DeliveryStore, parser: HardenedParser, publisher,
                 in_flight: InFlight | None = None):
        self.routes = routes
        self.store = store
        self.parser = parser
        self.publisher = publisher  # dead-letter copies
        self.in_flight = in_flight or InFlight()  # shared by the routers of one process's threads
        self._archived: set[str] = set()  # transform sources this process has stored
        self._to_archive: dict[str, bytes] = {}
        self._by_queue = {route_queue_name(r.id): r for r in routes.routes.values()}

    def handle(self, batch: list[Delivery]) -> None:
        now = utcnow()
        rows: list[dict] = []
        events: list[dict] = []
        dead: list[tuple] = []
        by_route: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in batch:
            by_route[delivery.queue].append(delivery)
        held: list[tuple[str, set[int]]] = []  # released once the outcomes are committed (or not)
        try:
            for queue, deliveries in by_route.items():
                route = self._by_queue.get(queue)
                if route is None:
                    log.warning("route.unknown_queue", queue=queue, count=len(deliveries))
                    continue
                self._route_batch(route, deliveries, now, rows, events, dead, held)
            archive, self._to_archive = self._to_archive, {}
            self.store.commit(rows, events, archive)
        finally:
            for route_id, seqs in held:
                self.in_flight.release(route_id, seqs)
        self._archived.update(archive)
        if dead:
            self._publish_dead(dead)

    # -- one route's share of the batch ---------------------------------------------------
    def _route_batch(self, route: Route, deliveries: list[Delivery], now: dt.datetime,
                     rows: list, events: list, dead: list, held: list) -> None:
        incoming: dict[int, Incoming] = {}
        for d in deliveries:
            m = Incoming.from_delivery(d)
            if m is None:
                log.warning("route.not_a_logged_message", route=route.id, message_id=d.message_id)
            elif m.seq not in incoming:  # the same message twice in one batch: once is enough
                incoming[m.seq] = m
        mine = self.in_flight.claim(route.id, incoming)
        held.append((route.id, mine))
        for seq in [seq for seq in incoming if seq not in mine]:
            log.info("route.copy_in_work", route=route.id, message_id=incoming.pop(seq).message_id,
                     reason="another worker thread of this process is delivering it")
        logged, states = self.store.states(route.id, list(incoming))
        for seq in [seq for seq, m in incoming.items() if logged.get(seq) != m.message_id]:
            # Not a message of this exchange log (a broker shared by mistake, a restored
            # database): it cannot be recorded, and holding it would block the route.
            log.error("route.message_not_in_log", route=route.id, seq=seq, message_id=incoming.pop(seq).message_id)
        known: dict[int, dict[str, State]] = defaultdict(dict)
        for (seq, destination), state in states.items():
            known[seq][destination] = state
        work: dict[str, list[tuple[Incoming, Target, Outgoing]]] = defaultdict(list)
        for m in incoming.values():
            seen = known.get(m.seq, {})
            targets = self._targets(route, m, seen)
            if not targets:
                continue
            root = None
            if route.needs_body:
                try:
                    root = self.parser.parse(m.body)
                except RejectedMessage as exc:
                    failure = DeliveryError(f"logged message does not parse: {exc}", code="TRANSFORM_FAILED",
                                            permanent=True)
                    for t in targets:
                        self._failed(route, m, t, seen, failure, now, rows, events, dead)
                    continue
            if not seen:
                if route.when is not None and not route.when(root):
                    continue
                events.append(event_row("ROUTED", now, message_seq=m.seq, message_id=m.message_id, route=route.id,
                                    source=m.source, detail={"to": [t.name for t in targets]}))
            for t in targets:
                transform = route.transform_for(t)
                try:
                    payload = transform.apply(root) if transform else m.body
                except DeliveryError as exc:
                    self._failed(route, m, t, seen, exc, now, rows, events, dead)
                    continue
                work[t.name].append((m, t, Outgoing(m.seq, m.message_id, m.source, m.type, m.correlation_id,
                                                    route.id, payload, m.body)))
        for name, items in work.items():
            destination = self.routes.destinations[name]
            try:
                outcomes = destination.deliver([o for _, _, o in items])
            except Exception as exc:  # a plug-in that raised instead of reporting
                outcomes = [DeliveryError(f"{name}: {exc.__class__.__name__}: {exc}")] * len(items)
            for (m, t, o), outcome in zip(items, outcomes):
                seen = known.get(m.seq, {})
                if isinstance(outcome, Exception):
                    self._failed(route, m, t, seen, outcome, now, rows, events, dead)
                else:
                    attempt = _attempt(seen, t.name)
                    rows.append(_row(m, route, t, DELIVERED, attempt))
                    events.append(event_row("DELIVERED", now, message_seq=m.seq, message_id=m.message_id, route=route.id,
                                        source=m.source, detail={"destination": t.name, "attempt": attempt,
                                                                 **self._what_went_out(route, t, o), **outcome}))

    def _what_went_out(self, route: Route, target: Target, item: Outgoing) -> dict:
        """The digest of what the destination got and of the transform that made it (its source
        archived once per process), so a replay can tell whether it would now send the same."""
        out = {"payload_digest": hashlib.sha256(item.payload).hexdigest()}
        transform = route.transform_for(target)
        if transform is not None:
            out["transform"] = transform.name
            if transform.digest:
                out["transform_digest"] = transform.digest
                if transform.digest not in self._archived:
                    self._to_archive[transform.digest] = transform.source
        return out

    @staticmethod
    def _targets(route: Route, m: Incoming, seen: dict[str, State]) -> list[Target]:
        if m.retry_for is not None:
            # A retry publication: only its destinations, and only while they still wait.
            return [t for t in route.targets if t.name in m.retry_for
                    and seen.get(t.name) is not None and seen[t.name].status in (RETRY, RETRYING)]
        if seen:
            # Seen before (a redelivery or a duplicate on the wire): only destinations added since.
            return [t for t in route.targets if t.name not in seen]
        if not m.forwarded_from and not route.from_.matches(m.type, m.source):
            return []  # the queue's binding is wider than the route's filter
        return list(route.targets)

    def _failed(self, route: Route, m: Incoming, t: Target, seen: dict, exc: Exception, now: dt.datetime,
                rows: list, events: list, dead: list) -> None:
        code = exc.code if isinstance(exc, HuitongError) else "DELIVERY_FAILED"
        text = str(exc)[:ERROR_TEXT_LIMIT]
        attempt = _attempt(seen, t.name)
        permanent = getattr(exc, "permanent", False)
        with structlog.contextvars.bound_contextvars(message_id=m.message_id, route=route.id, destination=t.name):
            if permanent or attempt >= route.retry.attempts:
                rows.append(_row(m, route, t, DEAD, attempt, error=(code, text)))
                events.append(event_row("FAILED", now, message_seq=m.seq, message_id=m.message_id, route=route.id,
                                    source=m.source, code=code,
                                    detail={"destination": t.name, "attempt": attempt, "error": text}))
                events.append(event_row("DEAD_LETTERED", now, message_seq=m.seq, message_id=m.message_id, route=route.id,
                                    source=m.source, code=code,
                                    detail={"destination": t.name, "attempts": attempt, "error": text,
                                            "queue": dead_queue_name(route.id)}))
                dead.append((route.id, m, t.name, code, text, attempt))
                log.error("route.dead_lettered", code=code, attempts=attempt, error=text)
                return
            retry_at = now + dt.timedelta(seconds=route.retry.delay(attempt))
            rows.append(_row(m, route, t, RETRY, attempt, error=(code, text), due_at=retry_at))
            events.append(event_row("FAILED", now, message_seq=m.seq, message_id=m.message_id, route=route.id,
                                source=m.source, code=code,
                                detail={"destination": t.name, "attempt": attempt, "error": text,
                                        "retry_at": retry_at.isoformat()}))
            log.warning("route.delivery_failed", code=code, attempt=attempt, error=text,
                        retry_at=retry_at.isoformat())

    def _publish_dead(self, dead: list[tuple]) -> None:
        entries = [dead_letter(route_id, m.body, seq=m.seq, message_id=m.message_id, source=m.source, type=m.type,
                               correlation_id=m.correlation_id, destination=destination, code=code, error=text,
                               attempts=attempts)
                   for route_id, m, destination, code, text, attempts in dead]
        try:
            self.publisher.publish_raw(entries)
        except HuitongError as exc:
            # The delivery records hold the dead letters (the console and `huitong dlq` read
            # them there); the queue copy is put back when the retry scheduler mirrors them.
            log.warning("route.dead_queue_unavailable", error=str(exc), count=len(entries))


def dead_letter(route_id: str, body: bytes, *, destination: str, code: str | None, error: str | None,
                attempts: int, **message) -> tuple:
    """The copy of a dead letter in huitong.route.<id>.dead: the original message, and why."""
    return logged_message(dead_queue_name(route_id), body, **message, headers={
        "x-huitong-route": route_id, "x-huitong-destination": destination, "x-huitong-error-code": code or "",
        "x-huitong-error": (error or "")[:1000], "x-huitong-attempts": attempts})


def _attempt(seen: dict[str, State], destination: str) -> int:
    state = seen.get(destination)
    return (state.attempts if state else 0) + 1


def _row(m: Incoming, route: Route, t: Target, status: str, attempts: int, *, error=None, due_at=None) -> dict:
    code, text = error or (None, None)
    return {"message_seq": m.seq, "message_id": m.message_id, "route": route.id, "destination": t.name,
            "status": status, "attempts": attempts, "due_at": due_at, "error_code": code, "last_error": text}
