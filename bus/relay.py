"""The relay: puts what the exchange log holds as unpublished on the wire, in confirmed
batches, and records PUBLISHED. It is the only writer to the message exchange, so after a
crash or a broker outage re-publishing from the log is all recovery takes.

Fast path: the log hands each commit's new messages to `offer`, and the relay publishes
them from memory instead of reading them back. Whenever that memory may be incomplete (at
start, after a failure, after an overflow, or when idle) it scans the log, which stays the
truth. Under load the relay lingers a moment after each batch (`linger`), so one claim and
one confirm round carry many group commits. The scan takes only messages older than
`scan_grace` seconds: younger ones belong to the fast path of the process that accepted
them (several hub workers share one database).
On PostgreSQL both paths lock the rows they publish until PUBLISHED is committed, so a late
fast path and another process's scan never both send one message. A message goes out twice
only after a failure between the broker's confirm and that commit, with the same message
id, which consumers tolerate."""
from __future__ import annotations

import threading
import time
from collections import deque

from bus.broker import Publisher
from bus.errors import BrokerUnavailable
from bus.exchange_log import ExchangeLog
from bus.logs import get_logger

log = get_logger("huitong.relay")


class Relay:
    def __init__(self, exchange_log: ExchangeLog, publisher: Publisher, *,
                 batch_size: int = 500, poll_interval: float = 0.5, max_backoff: float = 15.0,
                 scan_grace: float = 5.0, linger: float = 0.0):
        self.log = exchange_log
        self.publisher = publisher
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.scan_grace = scan_grace
        self.linger = linger
        self.max_offered = batch_size * 20
        self._offered: deque = deque()
        self._scan_needed = True  # at start the log may hold what an earlier process left
        self._scanned_up_to = 0
        self._last_scan = 0.0
        self._marks: list = []  # PUBLISHED marks queued for the log's next group commit
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.published_total = 0

    def wake(self) -> None:
        self._wake.set()

    def offer(self, pending: list) -> None:
        """Newly committed messages (called on the log's committer thread)."""
        if len(self._offered) + len(pending) > self.max_offered:
            self._scan_needed = True  # the broker is slow or away: the log will catch up
        else:
            self._offered.extend(pending)
        self._wake.set()

    def run_once(self) -> int:
        """Publish one batch; returns how many messages went out."""
        if self._offered and not self._scan_needed:
            count = self._publish_offered()
        elif not self._scan_needed and time.monotonic() - self._last_scan < self.poll_interval:
            count = 0  # nothing offered, and the log was looked at a moment ago
        else:
            count = self._scan()
        self.published_total += count
        return count

    def _scan(self) -> int:
        """One batch from the log itself, past the grace."""
        self._last_scan = time.monotonic()
        scanned: list[int] = []

        def publish(pending):
            self.publisher.publish_batch(pending)
            scanned.append(pending[-1].seq)

        count = self.log.publish_pending(publish, self.batch_size, older_than=self.scan_grace)
        if scanned:
            # Offered messages this scan already published are skipped by seq (one committer
            # per process, so its offers arrive in seq order).
            self._scanned_up_to = max(self._scanned_up_to, scanned[-1])
        self._scan_needed = count == self.batch_size  # a full batch: the log may hold more
        return count

    def _publish_offered(self) -> int:
        batch = []
        while self._offered and len(batch) < self.batch_size:
            pending = self._offered.popleft()
            if pending.seq > self._scanned_up_to:
                batch.append(pending)
        if not batch:
            return 0
        try:
            count, mark = self.log.publish_fresh(batch, self.publisher.publish_batch)
        except Exception:
            self._offered.clear()
            self._scan_needed = True  # they are still unpublished in the log
            raise
        if mark is not None:
            self._marks = [m for m in self._marks if not m.done()]
            self._marks.append(mark)
        return count

    def drain(self) -> int:
        """Publish what this process accepted and what the log holds beyond the grace (CLI
        and tests)."""
        total = 0
        while True:
            self._last_scan = 0.0  # a drain always looks at the log
            count = self.run_once()
            total += count
            if not count and not self._offered:
                for mark in self._marks:  # drained means recorded, too
                    mark.result(timeout=60)
                self._marks.clear()
                return total

    def start(self) -> "Relay":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.publisher.close()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                count = self.run_once()
                if self.last_error:
                    log.info("relay.recovered", after=self.last_error)
                self.last_error, backoff = None, 0.5
                if count:
                    log.debug("relay.published", count=count)
                    if count < self.batch_size and self.linger:
                        # Let the next commits gather: one claim, one commit and one confirm
                        # round per linger instead of one per group commit. A full batch means
                        # a backlog, which goes on at once.
                        self._stop.wait(self.linger)
                    continue
            except BrokerUnavailable as exc:
                self._note_failure(str(exc))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            except Exception as exc:  # database trouble: the log is still the truth, try again
                self._note_failure(f"{exc.__class__.__name__}: {exc}")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def _note_failure(self, text: str) -> None:
        if text != self.last_error:
            log.warning("relay.publish_failed", error=text)
        self.last_error = text
