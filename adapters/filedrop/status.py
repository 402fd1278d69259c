"""What `huitong inbox status` shows: read from the inbox directories themselves, so it is
true whichever hub process (or host) did the work."""
from __future__ import annotations

import datetime as dt
import fnmatch
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from adapters.filedrop.inbox import ARCHIVE, CLAIMS, ERROR, MARKER, RECEIPT, SIDECAR
from bus.config import InboxSettings


@dataclass
class InboxStatus:
    inbox: str
    system: str
    dir: str
    waiting: int  # complete or not, not yet taken
    in_progress: int  # claimed by a hub process
    archived_today: int
    errors_today: int
    oldest_waiting_seconds: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def _data_files(folder: Path) -> list[os.DirEntry]:
    try:
        return [e for e in os.scandir(folder) if not e.name.startswith(".")
                and not e.name.endswith((RECEIPT, SIDECAR, MARKER)) and not e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def inbox_status(name: str, settings: InboxSettings, today: dt.date | None = None) -> InboxStatus:
    root = Path(settings.dir)
    day = (today or dt.date.today()).isoformat()
    waiting = [e for e in _data_files(root)
               if any(fnmatch.fnmatch(e.name, p) for p in settings.include)
               and not any(fnmatch.fnmatch(e.name, p) for p in settings.exclude)]
    in_progress = 0
    try:
        for claims in os.scandir(root / CLAIMS):
            if claims.is_dir(follow_symlinks=False):
                in_progress += len(_data_files(Path(claims.path)))
    except FileNotFoundError:
        pass
    oldest = None
    if waiting:
        mtimes = [e.stat(follow_symlinks=False).st_mtime for e in waiting]
        oldest = round(max(0.0, dt.datetime.now().timestamp() - min(mtimes)), 1)
    return InboxStatus(name, settings.system, str(root), len(waiting), in_progress,
                       len(_data_files(root / ARCHIVE / day)), len(_data_files(root / ERROR / day)), oldest)
