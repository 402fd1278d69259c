"""filedrop: write each message into an outbox directory for a file ferry (摆渡) or a legacy
system to pick up. A file appears whole or not at all: it is written under a temporary name,
flushed, and renamed; its `.sha256` sidecar (sha256sum format) is in place before it. The file
name derives from the message id, so a redelivery rewrites the same file instead of adding
one."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from bus.errors import DeliveryError
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
        },
    }

    def __init__(self, name, options, context):
        super().__init__(name, options, context)
        self.dir = Path(options["dir"])
        self.pattern = options.get("name", "{type}-{message_id}.xml")
        self.fsync = options.get("fsync", True)
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
        except OSError as exc:
            failure = DeliveryError(f"outbox {self.dir} cannot be created: {exc.strerror}")
            return [failure] * len(items)
        outcomes: list[dict | Exception] = []
        staged: list[tuple[int, str]] = []  # (index in outcomes, final name) of written files
        for item in items:
            try:
                name = self.file_name(item)
                digest = hashlib.sha256(item.payload).hexdigest()
                self._stage(name + ".sha256", f"{digest}  {name}\n".encode())
                self._stage(name, item.payload)
                staged.append((len(outcomes), name))
                outcomes.append({"file": name, "sha256": digest, "bytes": len(item.payload)})
            except DeliveryError as exc:
                outcomes.append(exc)
            except OSError as exc:
                outcomes.append(DeliveryError(f"cannot write to {self.dir}: {exc.strerror}"))
        if not staged:
            return outcomes
        try:
            if self.fsync:
                self._flush()
            for _, name in staged:  # the sidecar is in place before the file a ferry picks up
                os.replace(self.dir / f".{name}.sha256.tmp", self.dir / f"{name}.sha256")
                os.replace(self.dir / f".{name}.tmp", self.dir / name)
            if self.fsync:
                self._flush()
        except OSError as exc:
            failure = DeliveryError(f"cannot complete files in {self.dir}: {exc.strerror}")
            for index, _ in staged:
                outcomes[index] = failure
        return outcomes

    def _stage(self, name: str, data: bytes) -> None:
        fd = os.open(self.dir / f".{name}.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def _flush(self) -> None:
        """Make what was written to the outbox's file system durable: syncfs(2) where Linux
        has it (one call for the batch), else fsync of the directory after os.sync()."""
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            if _syncfs is None or _syncfs(fd) != 0:
                os.sync()
            os.fsync(fd)
        finally:
            os.close(fd)


def _load_syncfs():
    try:
        import ctypes
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()
