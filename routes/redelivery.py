"""The retry scheduler: hands due retries from the delivery records back to their route's
queue, and keeps each route's dead-letter queue a faithful copy of its dead letters.

Delays live in the database, not in the broker: a retry due in an hour survives a restart
of the hub or of RabbitMQ, works the same on the in-memory transport, and an operator's
`huitong dlq retry` (another process, perhaps another host) only has to mark the record."""
from __future__ import annotations

import threading
import time

from bus.broker import Publisher, connect, logged_message
from bus.logs import get_logger
from bus.topology import dead_queue, route_queue_name
from routes.deliveries import DeliveryStore
from routes.router import RETRY_HEADER, dead_letter

log = get_logger("huitong.retry_scheduler")


class RetryScheduler:
    def __init__(self, store: DeliveryStore, publisher: Publisher, routes: list, *, broker_url: str,
                 quorum: bool, poll_interval: float = 0.5, lease_seconds: float = 120.0,
                 mirror_interval: float = 10.0, batch: int = 500, sweep_after: float = 60.0,
                 sweep_interval: float = 5.0, paused=None):
        self.store = store
        self.paused = paused or frozenset  # () -> ids of routes an operator paused: nothing handed out
        self.publisher = publisher
        self.routes = routes
        self.route_ids = {r.id for r in routes}
        self.sweep_after = sweep_after
        self.sweep_interval = sweep_interval
        self._swept_at = 0.0
        self.broker_url = broker_url
        self.quorum = quorum
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self.mirror_interval = mirror_interval
        self.batch = batch
        self._mirrored_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def run_once(self) -> int:
        """Publish the retries that are due; returns how many messages went out."""
        due = self.store.claim_due(self.batch, self.lease_seconds, self.route_ids - self.paused())
        if due:
            self.publisher.publish_raw([_to_route(d, headers={RETRY_HEADER: ",".join(d.destinations),
                                                              "x-huitong-attempt": d.attempts + 1}) for d in due])
            log.info("retry.published", count=len(due))
        if time.monotonic() - self._swept_at >= self.sweep_interval:
            self.sweep()
        if time.monotonic() - self._mirrored_at >= self.mirror_interval:
            self.mirror_dead_letters()
        return len(due)

    def sweep(self) -> int:
        """Re-drive what was published but never reached a route (the log is the truth, the
        broker only transport). A message the route then finds it has settled, or that does
        not match, costs one look."""
        self._swept_at = time.monotonic()
        total = 0
        paused = self.paused()
        for route in self.routes:
            if route.id in paused:
                continue
            while True:
                missing = [d for d in self.store.unrouted(route.id, route.from_.types, older_than=self.sweep_after,
                                                          limit=self.batch)
                           if route.from_.matches(d.type, d.source)]
                if missing:
                    self.publisher.publish_raw([_to_route(d) for d in missing])
                    log.warning("route.redriven", route=route.id, count=len(missing),
                                reason="published but never recorded by the route")
                    total += len(missing)
                if len(missing) < self.batch:
                    break
        return total

    def mirror_dead_letters(self) -> None:
        """Make each dead-letter queue hold exactly the route's dead letters: copies of letters
        an operator retried or discarded leave it, letters whose copy was lost (a broker that
        forgot, a publish that failed) are put back."""
        self._mirrored_at = time.monotonic()
        conn = connect(self.broker_url)
        try:
            channel = conn.channel()
            for route_id in sorted(self.route_ids):
                self._mirror(channel, route_id)
        finally:
            conn.release()

    def _mirror(self, channel, route_id: str) -> None:
        queue = dead_queue(route_id, quorum=self.quorum)(channel)
        queue.declare()
        _, count, _ = queue.queue_declare(passive=True)
        letters = {(d.message_seq, d.destination): d for d in self.store.dead_letters(route_id)}
        if not count and not letters:
            return
        held, keep = [], set()
        for _ in range(count):
            message = queue.get(no_ack=False, accept=["application/xml"])
            if message is None:
                break
            held.append(message)
        for message in held:
            h = message.headers or {}
            key = (int(h.get("x-huitong-seq", 0)), h.get("x-huitong-destination", ""))
            if key in letters and key not in keep:
                keep.add(key)
                message.reject(requeue=True)
            else:
                message.ack()  # retried, discarded, or a second copy
        missing = [d for key, d in letters.items() if key not in keep]
        if missing:
            bodies = self.store.bodies([d.message_seq for d in missing])
            self.publisher.publish_raw([
                dead_letter(route_id, bodies[d.message_seq], seq=d.message_seq, message_id=d.message_id,
                            source=d.source, type=d.type, destination=d.destination, code=d.error_code,
                            error=d.last_error, attempts=d.attempts) for d in missing])

    # -- thread -----------------------------------------------------------------------------
    def start(self) -> "RetryScheduler":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="retry-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.publisher.close()

    def _run(self) -> None:
        backoff = self.poll_interval
        while not self._stop.is_set():
            try:
                count = self.run_once()
                self.last_error, backoff = None, self.poll_interval
                if count == self.batch:
                    continue
            except Exception as exc:  # database or broker away: the records keep every retry
                text = f"{exc.__class__.__name__}: {exc}"
                if text != self.last_error:
                    log.warning("retry.failed", error=text)
                self.last_error = text
                backoff = min(backoff * 2, 15.0)
            self._stop.wait(backoff)


def _to_route(d, headers: dict | None = None) -> tuple:
    """A logged message (Due) handed straight to its route's queue."""
    return logged_message(route_queue_name(d.route), d.body, seq=d.message_seq, message_id=d.message_id,
                          source=d.source, type=d.type, correlation_id=d.correlation_id, headers=headers)
