"""A hub service that does one thing every few seconds in a thread of its own (sealing the
log, recolouring cases as days pass): started and stopped with the hub, and a failed round
is logged and tried again at the next, since what it works on waits in the database."""
from __future__ import annotations

import threading


class PeriodicService:
    name: str
    kind: str  # which of the hub's start switches runs it: routes, adapters or audit
    queues: list = []
    interval: float
    first_wait: bool = True  # wait one interval before the first round

    def run_once(self):
        raise NotImplementedError

    def failed(self, exc: Exception) -> None:
        """Log the failed round (the subclass says what it means)."""
        raise NotImplementedError

    def active(self) -> bool:
        return True

    def start(self) -> None:
        if self.active() and getattr(self, "_thread", None) is None:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if getattr(self, "_thread", None) is not None:
            self._stop.set()
            self._thread.join(timeout=30)
            self._thread = None

    def drained(self) -> bool:
        return True

    def _run(self) -> None:
        if self.first_wait and self._stop.wait(self.interval):
            return
        while True:
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                self.failed(exc)
            if self._stop.wait(self.interval):
                return
