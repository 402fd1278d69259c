"""A thread that does one thing every few seconds (sealing the log, recolouring cases as days
pass, tailing events for the console, simulated traffic): started and stopped with its owner,
and a failed round is reported and tried again at the next, since what it works on waits in
the database."""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod


class PeriodicService(ABC):
    name: str  # also the thread's name
    kind: str = ""  # for a hub service: which of the hub's start switches runs it (routes, adapters, audit)
    queues: list = []
    interval: float
    first_wait: bool = True  # wait one interval before the first round
    _thread: threading.Thread | None = None

    @abstractmethod
    def run_once(self):
        """One round."""

    @abstractmethod
    def failed(self, exc: Exception) -> None:
        """Report a failed round (the subclass says what it means)."""

    def active(self) -> bool:
        return True

    def start(self):
        if self.active() and self._thread is None:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
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
