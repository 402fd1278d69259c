"""Front-database pollers inside a hub process (`huitong.services` entry point `frontdb`):
one thread per front database. A poll that found rows polls again at once; an empty one
waits poll_interval; a front database that is down is retried with a growing pause, and
nothing is taken while the relay is behind by adapters.max_unpublished messages."""
from __future__ import annotations

import threading

from adapters.frontdb.poller import FrontDbPoller
from bus.logs import get_logger

log = get_logger("huitong.frontdb")


class FrontDbService:
    name = "frontdb"
    kind = "adapters"
    queues: list = []

    def __init__(self, hub):
        self.hub = hub
        self.options = hub.settings.adapters
        self.pollers = [FrontDbPoller(name, settings, hub.acceptance, systems=hub.systems)
                        for name, settings in hub.settings.frontdb.items()]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        for poller in self.pollers:
            thread = threading.Thread(target=self._run, args=(poller,), name=f"frontdb-{poller.name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.pollers:
            log.info("frontdb.started", frontdb=[p.name for p in self.pollers])

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        for poller in self.pollers:
            poller.close()

    def drained(self) -> bool:
        return True

    def _run(self, poller: FrontDbPoller) -> None:
        interval = poller.settings.poll_interval
        pause = interval
        while not self._stop.is_set():
            if self.hub.log.unpublished_count() > self.options.max_unpublished:
                self._stop.wait(interval)  # back pressure: rows wait in the front database
                continue
            try:
                taken = poller.poll_once()
                pause = interval
            except Exception as exc:  # front database down, exchange log down, table missing
                log.error("frontdb.poll_failed", frontdb=poller.name, code=getattr(exc, "code", "INTERNAL"),
                          error=str(exc))
                self._stop.wait(pause)
                pause = min(pause * 2, 60.0)
                continue
            if not taken:
                self._stop.wait(interval)
