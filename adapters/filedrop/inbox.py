"""One inbox directory of one department system.

    <dir>/                         the department (or the ferry) drops files here
    <dir>/.claims/<host>.<pid>/    files this process took, while it reads them
    <dir>/archive/<date>/          files whose every record is in the exchange log
    <dir>/error/<date>/            files with refused records, or refused whole
                                   (each beside a NAME.receipt.json: record, code, text)

A file is taken only when complete (quiet for settle_seconds, or NAME.done beside it) and
by an atomic rename into this process's claim directory, so of several hub processes on one
inbox exactly one takes it. A claim whose process died (same host) or went silent for
claim_timeout_seconds (another host) is taken over; reading a file again is harmless, since
every record's message id is derived from its content and the log answers DUPLICATE."""
from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import os
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from adapters.filedrop.files import FileRefused, Part, read_regular, unpack
from adapters.filedrop.readers import Record, RecordReader
from bus.acceptance import Acceptance, Refused
from bus.config import InboxSettings
from bus.errors import RejectedMessage
from bus.logs import get_logger
from bus.masking import mask_text
from bus.receipts import ACCEPTED, DUPLICATE

log = get_logger("huitong.inbox")
CLAIMS, ARCHIVE, ERROR = ".claims", "archive", "error"
MARKER, SIDECAR, RECEIPT = ".done", ".sha256", ".receipt.json"
PIPELINE = 3  # batches of one file queued for commit at once
_SEPARATOR = "~"  # claimed files are named <token>~<original name>


@dataclass
class FileOutcome:
    name: str
    sha256: str = ""
    bytes: int = 0
    records: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: list[dict] = field(default_factory=list)
    refused: dict | None = None  # the whole file was refused: code and text
    moved_to: str = ""

    @property
    def ok(self) -> bool:
        return self.refused is None and not self.rejected


class Inbox:
    def __init__(self, name: str, settings: InboxSettings, acceptance: Acceptance, *,
                 systems=None, records_per_commit: int = 500, reader: RecordReader | None = None):
        self.name = name
        self.settings = settings
        self.system = settings.system
        self.dir = Path(settings.dir)
        self.acceptance = acceptance
        self.systems = systems
        self.records_per_commit = records_per_commit
        self.reader = reader or RecordReader(settings)
        self.claim_dir = self.dir / CLAIMS / f"{socket.gethostname()}.{os.getpid()}"
        self._observed: dict[str, tuple[int, int, float]] = {}  # name -> size, mtime, since
        self._reported: set[str] = set()

    def prepare(self) -> None:
        for sub in (self.dir, self.claim_dir, self.dir / ARCHIVE, self.dir / ERROR):
            sub.mkdir(parents=True, exist_ok=True)

    # -- what is ready -------------------------------------------------------------------
    def ready(self, now: float | None = None) -> list[str]:
        """Names to take now: complete data files, and entries to refuse (not regular files)."""
        now = time.monotonic() if now is None else now
        settings = self.settings
        names, seen = [], set()
        try:
            entries = list(os.scandir(self.dir))
        except FileNotFoundError:
            return []
        present = {e.name for e in entries}
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name.endswith((MARKER, SIDECAR)):
                continue
            if entry.is_dir(follow_symlinks=False) and not entry.is_symlink():
                if name not in (ARCHIVE, ERROR) and name not in self._reported:
                    self._reported.add(name)
                    log.warning("inbox.directory_ignored", inbox=self.name, entry=name,
                                reason="an inbox takes files, not directories")
                continue
            if any(fnmatch.fnmatch(name, p) for p in settings.exclude) or \
                    not any(fnmatch.fnmatch(name, p) for p in settings.include):
                continue
            if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                names.append(name)  # refused at once: nothing to wait for
                continue
            if settings.complete == "marker":
                if name + MARKER in present:
                    names.append(name)
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            seen.add(name)
            state = (info.st_size, info.st_mtime_ns)
            known = self._observed.get(name)
            if known is None or known[:2] != state:
                self._observed[name] = (*state, now)  # new, or still being written
            elif now - known[2] >= settings.settle_seconds:
                names.append(name)
        for gone in set(self._observed) - seen:
            del self._observed[gone]
        return sorted(names)

    def waiting_to_settle(self) -> bool:
        """Files seen but not yet quiet for settle_seconds (the scanner looks sooner)."""
        return bool(self._observed)

    # -- claiming --------------------------------------------------------------------------
    def claim(self, name: str) -> Path | None:
        """Rename the file into this process's claim directory; None if another took it."""
        target = self.claim_dir / f"{uuid.uuid4().hex[:12]}{_SEPARATOR}{name}"
        try:
            os.rename(self.dir / name, target)
        except FileNotFoundError:
            return None
        self._observed.pop(name, None)
        try:
            os.rename(self.dir / (name + SIDECAR), target.with_name(target.name + SIDECAR))
        except FileNotFoundError:
            pass
        if self.settings.complete == "marker":
            try:
                os.unlink(self.dir / (name + MARKER))
            except FileNotFoundError:
                pass
        return target

    def orphaned_claims(self, timeout: float) -> list[Path]:
        """Files claimed by a process that is gone: on this host a dead pid, elsewhere a claim
        directory untouched for `timeout` seconds. They are moved into this process's claims."""
        host = socket.gethostname()
        taken = []
        try:
            directories = [d for d in os.scandir(self.dir / CLAIMS) if d.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return []
        for directory in directories:
            if directory.path == str(self.claim_dir):
                continue
            owner_host, _, pid = directory.name.rpartition(".")
            dead = owner_host == host and pid.isdigit() and not _alive(int(pid))
            # A live owner touches its directory at every scan (heartbeat); a pid that was
            # reused, or a host that is gone, shows as silence.
            if not dead and time.time() - directory.stat().st_mtime < timeout:
                continue
            for entry in os.scandir(directory.path):
                if entry.name.endswith(SIDECAR):
                    continue
                target = self.claim_dir / entry.name
                try:
                    os.rename(entry.path, target)
                except FileNotFoundError:
                    continue  # another process took it over first
                try:
                    os.rename(entry.path + SIDECAR, str(target) + SIDECAR)
                except FileNotFoundError:
                    pass
                log.info("inbox.claim_taken_over", inbox=self.name, file=_original(entry.name), owner=directory.name)
                taken.append(target)
            try:
                os.rmdir(directory.path)
            except OSError:
                pass
        return taken

    def heartbeat(self) -> None:
        """Tells other hosts this process's claims are alive."""
        try:
            os.utime(self.claim_dir)
        except FileNotFoundError:
            self.claim_dir.mkdir(parents=True, exist_ok=True)

    # -- processing --------------------------------------------------------------------------
    def process(self, claimed: Path) -> FileOutcome:
        """Read, accept every record, then archive the file or put it in error/ with its
        receipt. Records accepted before a refusal later in the file stay accepted."""
        name = _original(claimed.name)
        outcome = FileOutcome(name)
        started = dt.datetime.now(dt.timezone.utc)
        try:
            self._read_and_accept(claimed, outcome)
        except FileRefused as exc:
            outcome.refused = {"code": exc.code, "text": exc.text}
            self._log_refusal(exc.code, exc.text, name)
        self._finish(claimed, outcome, started)
        event = "inbox.file_archived" if outcome.ok else "inbox.file_failed"
        log.info(event, inbox=self.name, system=self.system, file=name, records=outcome.records,
                 accepted=outcome.accepted, duplicate=outcome.duplicate, rejected=len(outcome.rejected),
                 refused=outcome.refused["code"] if outcome.refused else None, moved_to=outcome.moved_to)
        return outcome

    def _read_and_accept(self, claimed: Path, outcome: FileOutcome) -> None:
        settings = self.settings
        data = read_regular(claimed, settings.max_file_bytes, outcome.name)  # refuses all but a regular file
        outcome.bytes = len(data)
        outcome.sha256 = hashlib.sha256(data).hexdigest()
        self._check_sidecar(claimed, outcome)
        grants = self._grants()
        for part in unpack(outcome.name, data, allowed=settings.compressed, cap=settings.max_decompressed_bytes):
            self._accept_part(part, outcome, grants)

    def _grants(self) -> frozenset[str] | None:
        if self.systems is None:
            return None
        identity = self.systems.get(self.system)
        if identity is None:
            raise FileRefused("SYSTEM_UNKNOWN", f"the inbox's system {self.system} is not registered "
                                                "(huitong systems add, or systems: in the configuration)")
        if not identity.enabled:
            raise FileRefused("SYSTEM_DISABLED", f"the inbox's system {self.system} is disabled")
        return identity.grants

    def _check_sidecar(self, claimed: Path, outcome: FileOutcome) -> None:
        sidecar = Path(str(claimed) + SIDECAR)
        if not os.path.lexists(sidecar):
            return
        try:
            text = read_regular(sidecar, 4096).decode("ascii", "replace")
        except FileRefused as exc:
            raise FileRefused("FILE_CHECKSUM", f"{outcome.name}{SIDECAR}: {exc.text}") from None
        expected = text.split()[0].lower() if text.split() else ""
        if expected != outcome.sha256:
            raise FileRefused("FILE_CHECKSUM", f"{outcome.name} has sha256 {outcome.sha256}, its sidecar says "
                                               f"{expected or 'nothing'}: damaged or incomplete in transit")

    def _accept_part(self, part: Part, outcome: FileOutcome, grants) -> None:
        """Batches of records_per_commit, up to PIPELINE of them queued at once: while the
        log commits one, the next are read and validated, so the commit's wait is not added
        to the reading."""
        prefix = f"{part.name}: " if part.name != outcome.name else ""
        waiting: deque = deque()
        for batch in _batches(self.reader.records(part, self.system), self.records_per_commit):
            waiting.append((batch, self.acceptance.submit_many([r.item for r in batch], system=self.system,
                                                               grants=grants)))
            if len(waiting) >= PIPELINE:
                self._count(*waiting.popleft(), outcome, prefix)
        while waiting:
            self._count(*waiting.popleft(), outcome, prefix)

    def _count(self, batch: list[Record], futures: list, outcome: FileOutcome, prefix: str) -> None:
        receipts = self.acceptance.receipts(futures, system=self.system)
        outcome.records += len(batch)
        for record, receipt in zip(batch, receipts):
            if receipt.status == ACCEPTED:
                outcome.accepted += 1
            elif receipt.status == DUPLICATE:
                outcome.duplicate += 1
            else:
                first = receipt.errors[0] if receipt.errors else None
                outcome.rejected.append({
                    "record": prefix + record.label, "message_id": receipt.message_id,
                    "code": first.code if first else "REJECTED", "path": first.path if first else "/",
                    "text": mask_text(first.text) if first else "", "receipt_id": receipt.receipt_id})

    def _log_refusal(self, code: str, text: str, name: str) -> None:
        """A whole-file refusal is on the audit trail too, not only in the receipt."""
        try:
            self.acceptance.accept_many([Refused(RejectedMessage.single(code, f"{name}: {text}", "/file"))],
                                        system=self.system)
        except Exception as exc:  # the receipt file still says it; the log may be down
            log.error("inbox.refusal_not_logged", inbox=self.name, file=name, error=str(exc))

    # -- finishing -------------------------------------------------------------------------
    def _finish(self, claimed: Path, outcome: FileOutcome, started: dt.datetime) -> None:
        day = dt.date.today().isoformat()
        folder = self.dir / (ARCHIVE if outcome.ok else ERROR) / day
        folder.mkdir(parents=True, exist_ok=True)
        target = _free_name(folder, outcome.name)
        outcome.moved_to = str(target.relative_to(self.dir))
        receipt = {
            "inbox": self.name, "system": self.system, "file": outcome.name, "sha256": outcome.sha256,
            "bytes": outcome.bytes, "started_at": started.isoformat(timespec="seconds"),
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "outcome": "archived" if outcome.ok else ("refused" if outcome.refused else "rejected records"),
            "records": outcome.records, "accepted": outcome.accepted,
            # already in the exchange log: the same file or record was dropped before
            "duplicate": outcome.duplicate, "rejected": len(outcome.rejected),
            "refused": outcome.refused, "rejections": outcome.rejected}
        temporary = folder / f".{target.name}{RECEIPT}.tmp"
        temporary.write_text(json.dumps(receipt, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(temporary, folder / f"{target.name}{RECEIPT}")
        os.rename(claimed, target)  # a symlink or FIFO moves as itself, never followed
        try:
            os.rename(str(claimed) + SIDECAR, str(target) + SIDECAR)
        except FileNotFoundError:
            pass


def _batches(records, size: int):
    batch = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _original(claimed_name: str) -> str:
    return claimed_name.split(_SEPARATOR, 1)[1] if _SEPARATOR in claimed_name else claimed_name


def _free_name(folder: Path, name: str) -> Path:
    target = folder / name
    counter = 1
    while target.exists() or target.is_symlink():
        target = folder / f"{name}.{counter}"
        counter += 1
    return target


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
