"""The inboxes inside a hub process (`huitong.services` entry point `inboxes`).

One scanner thread looks at every inbox when a file event wakes it (watchdog: inotify on
Linux) or when poll_interval passes (the fallback, and the clock of quiet-file settling);
at most adapters.file_workers files are read at once, and nothing new is taken while the
relay is behind by adapters.max_unpublished messages (back pressure: files wait on disk,
not in memory)."""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from adapters.filedrop.inbox import Inbox
from bus.logs import get_logger

log = get_logger("huitong.inbox")


class InboxService:
    name = "inboxes"
    kind = "adapters"
    queues: list = []

    def __init__(self, hub):
        self.hub = hub
        self.options = hub.settings.adapters
        # Built with the hub, so a bad mapping or stylesheet stops it before it accepts anything.
        self.inboxes = [Inbox(name, settings, hub.acceptance, systems=hub.systems,
                              records_per_commit=self.options.records_per_commit)
                        for name, settings in hub.settings.inboxes.items()]
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._observer = None
        self._in_flight: set = set()
        self._lock = threading.Lock()
        self._paused = False
        self._retry: list = []  # claimed files whose reading was interrupted

    def start(self) -> None:
        if not self.inboxes or self._thread is not None:
            return
        for inbox in self.inboxes:
            inbox.prepare()
        self._stop.clear()
        self._pool = ThreadPoolExecutor(self.options.file_workers, thread_name_prefix="inbox-file")
        if self.options.watch:
            self._observer = _watch([i.dir for i in self.inboxes], self._wake.set)
        self._thread = threading.Thread(target=self._run, name="inbox-scanner", daemon=True)
        self._thread.start()
        log.info("inboxes.started", inboxes=[i.name for i in self.inboxes],
                 watching="inotify" if self._observer else "polling")

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self._thread = None
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        self._pool.shutdown(wait=True)  # a file being read is finished, not abandoned
        self._pool = None

    def drained(self) -> bool:
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.scan_once()
            except Exception:
                log.exception("inbox.scan_failed")
                wait = self.options.poll_interval
            self._wake.wait(wait)
            self._wake.clear()

    def scan_once(self) -> float:
        """Take what is ready, up to the free workers; returns how long to sleep."""
        wait = self.options.poll_interval
        for inbox in self.inboxes:
            inbox.heartbeat()
        if self._behind():
            return wait
        with self._lock:
            retry, self._retry = self._retry, []
        for inbox, path in retry:
            self._submit(inbox, path)
        for inbox in self.inboxes:
            for path in inbox.orphaned_claims(inbox.settings.claim_timeout_seconds):
                self._submit(inbox, path)
            for name in inbox.ready():
                if self._free() <= 0:
                    return wait  # the busy workers wake the scanner when done
                path = inbox.claim(name)
                if path is not None:
                    self._submit(inbox, path)
            if inbox.settings.complete == "quiet" and inbox.waiting_to_settle():
                wait = min(wait, max(0.05, inbox.settings.settle_seconds / 4))
        return wait

    def _behind(self) -> bool:
        backlog = self.hub.log.unpublished_count()
        behind = backlog > self.options.max_unpublished
        if behind != self._paused:
            self._paused = behind
            log.warning("inboxes.paused" if behind else "inboxes.resumed", unpublished=backlog,
                        limit=self.options.max_unpublished)
        return behind

    def _free(self) -> int:
        with self._lock:
            return self.options.file_workers - len(self._in_flight)

    def _submit(self, inbox: Inbox, path) -> None:
        with self._lock:
            self._in_flight.add(path)
        self._pool.submit(self._process, inbox, path)

    def _process(self, inbox: Inbox, path) -> None:
        try:
            inbox.process(path)
        except Exception as exc:
            # The log could not commit (StoreUnavailable) or the disk failed: the file stays
            # claimed and is read again after a pause; what was accepted answers DUPLICATE.
            log.error("inbox.file_interrupted", inbox=inbox.name, file=path.name, error=str(exc),
                      code=getattr(exc, "code", None))
            time.sleep(self.options.poll_interval)
            with self._lock:
                self._retry.append((inbox, path))
        finally:
            with self._lock:
                self._in_flight.discard(path)
            self._wake.set()


def _watch(directories, wake):
    """inotify wake-ups through watchdog; None (polling only) where it cannot run."""
    try:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
    except ImportError:
        return None

    class Waker(FileSystemEventHandler):
        def on_any_event(self, event):
            if event.event_type != "opened":
                wake()

    # watchdog logs an error when an event races its own shutdown; nothing is lost by it.
    logging.getLogger("watchdog.observers.inotify").setLevel(logging.CRITICAL)
    observer = Observer()
    try:
        for directory in directories:
            observer.schedule(Waker(), str(directory), recursive=False)
        observer.start()
    except OSError as exc:  # inotify watches exhausted, a file system without events
        log.warning("inboxes.watch_unavailable", error=str(exc), fallback="polling")
        return None
    return observer
