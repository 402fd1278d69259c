"""filedrop: write each message into an outbox directory for a file ferry (摆渡) or a legacy
system to pick up. A file appears whole or not at all: it is written under a temporary name,
flushed, and renamed; its `.sha256` sidecar (sha256sum format) is in place before it. The file
name derives from the message id, so a redelivery rewrites the same file instead of adding
one. After each batch a manifest (manifest-*.json, with its own sidecar) lists the batch's
files with their sizes and digests, so the ferry on the other side can verify what crossed.

format xml writes the payload (canonical, or what the route's XSLT made of it); format csv
writes the department's CSV through a record mapping read backwards (header and one row per
message, in the mapping's encoding: GBK for most legacy systems)."""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import uuid
from pathlib import Path

from bus.errors import DeliveryError, HuitongError
from routes.destinations import Destination, Outgoing


class FileDropDestination(Destination):
    type = "filedrop"
    options_schema = {
        "type": "object", "additionalProperties": False, "required": ["dir"],
        "properties": {
            "dir": {"type": "string", "minLength": 1, "description": "Outbox directory (created if missing)."},
            "name": {"type": "string", "default": "{type}-{message_id}.xml",
                     "description": "File name; {type}, {message_id}, {source}, {route}, {seq} are filled in."},
            "fsync": {"type": "boolean", "default": True,
                      "description": "Flush files to disk before acknowledging (off only for scratch outboxes)."},
            "format": {"enum": ["xml", "csv"], "default": "xml"},
            "mapping": {"type": "string", "description": "csv: the record mapping (adapters/mappings name or path)."},
            "encoding": {"type": "string", "description": "csv: the file encoding (default: the mapping's, else UTF-8)."},
            "manifest": {"type": "boolean", "default": True, "description": "Write a manifest per batch."},
        },
    }

    def __init__(self, name, options, context):
        super().__init__(name, options, context)
        self.dir = Path(options["dir"])
        self.pattern = options.get("name", "{type}-{message_id}.xml")
        self.fsync = options.get("fsync", True)
        self.manifest = options.get("manifest", True)
        self.csv = None
        if options.get("format") == "csv":
            self.csv = _CsvWriter(options)
            if "name" not in options:
                self.pattern = "{type}-{message_id}.csv"
        self._checked = False

    def file_name(self, item: Outgoing) -> str:
        name = self.pattern.format(type=item.type, message_id=item.message_id, source=item.source,
                                   route=item.route, seq=item.message_seq)
        if "/" in name or name.startswith("."):
            raise DeliveryError(f"file name {name!r} would leave the outbox", permanent=True)
        return name

    def deliver(self, items: list[Outgoing]) -> list[dict | Exception]:
        """Group commit for files: every temporary file of the batch is written, one flush of
        the file system makes them durable, then the renames, then one flush of the directory.
        Two flushes per batch instead of two per file."""
        try:
            if not self._checked:
                self.dir.mkdir(parents=True, exist_ok=True)
                self._checked = True
            # Every file of the batch is named relative to one open descriptor of the outbox:
            # no path to build per file, and the flushes below act on it too.
            fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            failure = DeliveryError(f"outbox {self.dir} cannot be opened: {exc.strerror}")
            return [failure] * len(items)
        try:
            return self._deliver(fd, items)
        finally:
            os.close(fd)

    def _deliver(self, fd: int, items: list[Outgoing]) -> list[dict | Exception]:
        outcomes: list[dict | Exception] = []
        staged: list[tuple[int, str]] = []  # (index in outcomes, final name) of written files
        for item in items:
            try:
                name = self.file_name(item)
                payload = self.csv.render(item) if self.csv else item.payload
                digest = _stage_with_sidecar(fd, name, payload)
                staged.append((len(outcomes), name))
                outcomes.append({"file": name, "sha256": digest, "bytes": len(payload),
                                 "message_id": item.message_id})
            except DeliveryError as exc:
                outcomes.append(exc)
            except OSError as exc:
                outcomes.append(DeliveryError(f"cannot write to {self.dir}: {exc.strerror}"))
        if not staged:
            return outcomes
        try:
            if self.fsync:
                _flush(fd)
            for _, name in staged:
                _publish_with_sidecar(fd, name)
            if self.manifest:  # last: a manifest names only files that are complete
                manifest = self._write_manifest(fd, [outcomes[index] for index, _ in staged])
                for index, _ in staged:
                    outcomes[index] = {**outcomes[index], "manifest": manifest}
            if self.fsync:
                _flush(fd)
        except OSError as exc:
            failure = DeliveryError(f"cannot complete files in {self.dir}: {exc.strerror}")
            for index, _ in staged:
                outcomes[index] = failure
        return outcomes

    def _write_manifest(self, fd: int, files: list[dict]) -> str:
        now = dt.datetime.now(dt.timezone.utc)
        name = f"manifest-{now.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}.json"
        head = json.dumps({"destination": self.name, "written_at": now.isoformat(timespec="seconds"),
                           "count": len(files)}, ensure_ascii=False)
        # One line per file, each encoded by json's C encoder (indent= would take its slow
        # pure-Python path, a tenth of the destination's time).
        lines = ",\n ".join(json.dumps({"file": f["file"], "bytes": f["bytes"], "sha256": f["sha256"],
                                         "message_id": f["message_id"]}, ensure_ascii=False) for f in files)
        body = f'{head[:-1]}, "files": [\n {lines}\n]}}\n'.encode("utf-8")
        _stage_with_sidecar(fd, name, body)
        _publish_with_sidecar(fd, name)
        return name


def _stage(fd: int, name: str, data: bytes) -> None:
    """Write a file of the outbox (descriptor fd) under its temporary name."""
    file = os.open(f".{name}.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=fd)
    try:
        view = memoryview(data)
        while view:  # a write to a regular file may still come back short (a full disk, a signal)
            view = view[os.write(file, view):]
    finally:
        os.close(file)


def _stage_with_sidecar(fd: int, name: str, data: bytes) -> str:
    """Stage a file and its `.sha256` sidecar (sha256sum format); returns the digest."""
    digest = hashlib.sha256(data).hexdigest()
    _stage(fd, name + ".sha256", f"{digest}  {name}\n".encode())
    _stage(fd, name, data)
    return digest


def _publish_with_sidecar(fd: int, name: str) -> None:
    """Give a staged file and its sidecar their final names, each in one atomic step: the
    sidecar first, so it is in place before the file a ferry picks up."""
    for final in (name + ".sha256", name):
        os.replace(f".{final}.tmp", final, src_dir_fd=fd, dst_dir_fd=fd)


def _flush(fd: int) -> None:
    """Make what was written to the outbox (descriptor fd) durable: syncfs(2) where Linux has
    it (one call for the batch), else os.sync(); then fsync of the directory."""
    if _syncfs is None or _syncfs(fd) != 0:
        os.sync()
    os.fsync(fd)


class _CsvWriter:
    """A canonical message as the department's CSV: the header and its one row."""

    def __init__(self, options: dict):
        # The record mappings live with the adapters that read the same formats inbound.
        from adapters.mapping import load_mapping
        from schemas.hardened import HardenedParser

        if not options.get("mapping"):
            raise ValueError("format csv needs a mapping")
        try:
            self.mapping = load_mapping(options["mapping"])
        except HuitongError as exc:
            raise ValueError(str(exc)) from None
        self.encoding = options.get("encoding") or self.mapping.encoding or "utf-8"
        "".encode(self.encoding)  # LookupError for an unknown encoding
        self.parser = HardenedParser()

    def render(self, item: Outgoing) -> bytes:
        try:
            root = self.parser.parse(item.payload)
        except HuitongError as exc:
            raise DeliveryError(f"the payload is not XML: {exc}", code="TRANSFORM_FAILED", permanent=True) from None
        body = self.mapping.body_in(root)
        if body is None:
            raise DeliveryError(f"mapping {self.mapping.name} writes {self.mapping.type}, not {item.type}",
                                code="TRANSFORM_FAILED", permanent=True)
        text = io.StringIO(newline="")
        writer = csv.writer(text, delimiter=self.mapping.csv.get("delimiter", ","), lineterminator="\r\n")
        writer.writerow(self.mapping.columns)
        writer.writerow(self.mapping.to_text_row(body))
        try:
            return text.getvalue().encode(self.encoding)
        except UnicodeEncodeError as exc:
            raise DeliveryError(f"{exc.object[exc.start:exc.end]!r} cannot be written in {self.encoding}",
                                code="TRANSFORM_FAILED", permanent=True) from None


def _load_syncfs():
    try:
        import ctypes
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()
