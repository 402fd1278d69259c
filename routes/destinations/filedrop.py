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
        try:
            if not self._checked:
                self.dir.mkdir(parents=True, exist_ok=True)
                self._checked = True
        except OSError as exc:
            failure = DeliveryError(f"outbox {self.dir} cannot be created: {exc.strerror}")
            return [failure] * len(items)
        outcomes: list[dict | Exception] = []
        written = []
        for item in items:
            try:
                name = self.file_name(item)
                digest = hashlib.sha256(item.payload).hexdigest()
                self._write(name + ".sha256", f"{digest}  {name}\n".encode())
                self._write(name, item.payload)
                written.append(name)
                outcomes.append({"file": name, "sha256": digest, "bytes": len(item.payload)})
            except DeliveryError as exc:
                outcomes.append(exc)
            except OSError as exc:
                outcomes.append(DeliveryError(f"cannot write to {self.dir}: {exc.strerror}"))
        if written and self.fsync:
            try:  # the renames themselves are durable once the directory is flushed
                fd = os.open(self.dir, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                failure = DeliveryError(f"cannot flush {self.dir}: {exc.strerror}")
                outcomes = [failure if isinstance(o, dict) else o for o in outcomes]
        return outcomes

    def _write(self, name: str, data: bytes) -> None:
        temporary = self.dir / f".{name}.tmp"
        with open(temporary, "wb") as f:
            f.write(data)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(temporary, self.dir / name)
