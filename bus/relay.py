"""The relay: puts what the exchange log holds as unpublished on the wire, in confirmed
batches, and records PUBLISHED. It is the only writer to the message exchange, so after a
crash or a broker outage re-publishing from the log is all recovery takes."""
from __future__ import annotations

import threading

from bus.broker import Publisher
from bus.errors import BrokerUnavailable
from bus.exchange_log import ExchangeLog
from bus.logs import get_logger

log = get_logger("huitong.relay")


class Relay:
    def __init__(self, exchange_log: ExchangeLog, publisher: Publisher, *,
                 batch_size: int = 500, poll_interval: float = 0.5, max_backoff: float = 15.0):
        self.log = exchange_log
        self.publisher = publisher
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.published_total = 0

    def wake(self) -> None:
        self._wake.set()

    def run_once(self) -> int:
        """Publish one batch; returns how many messages went out."""
        count = self.log.publish_pending(self.publisher.publish_batch, self.batch_size)
        self.published_total += count
        return count

    def drain(self) -> int:
        """Publish until the log holds nothing unpublished (CLI and tests)."""
        total = 0
        while (count := self.run_once()):
            total += count
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
                    continue  # more may be waiting: no sleep between full batches
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
