"""Reading a claimed file safely: only a regular file, opened without following a symlink
and without blocking on a FIFO, never more than the inbox's caps; compressed input only
where the inbox allows it, decompressed in bounded steps (the sizes a zip or gzip header
claims are never trusted)."""
from __future__ import annotations

import io
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bus.errors import HuitongError

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"


class FileRefused(HuitongError):
    """The whole file is refused (code FILE_REFUSED, FILE_TOO_LARGE, COMPRESSED_NOT_ALLOWED,
    DECOMPRESSED_TOO_LARGE, FILE_CHECKSUM, FILE_FORMAT, ...)."""

    def __init__(self, code: str, text: str):
        super().__init__(text, code=code)
        self.text = text


@dataclass(frozen=True, slots=True)
class Part:
    """One document inside a file: the file itself, or a member of its zip."""

    name: str
    data: bytes


def describe_kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def read_regular(path: Path, max_bytes: int, name: str | None = None) -> bytes:
    """The bytes of a regular file; FileRefused for anything else or anything too big.
    O_NOFOLLOW refuses a symlink put in the file's place, O_NONBLOCK keeps a FIFO from
    hanging the reader, and fstat checks what was actually opened. name: how the file is
    called in the errors (its name in the inbox, not its claimed name)."""
    name = name or path.name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        kind = describe_kind(os.lstat(path).st_mode) if path.is_symlink() else exc.strerror
        raise FileRefused("FILE_REFUSED", f"cannot open {name}: {kind}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused("FILE_REFUSED", f"{name} is {describe_kind(info.st_mode)}, not a regular file")
        if info.st_size > max_bytes:
            raise FileRefused("FILE_TOO_LARGE", f"{name} is {info.st_size} bytes, the inbox takes at most {max_bytes}")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:  # it grew while being read
                raise FileRefused("FILE_TOO_LARGE", f"{name} passed {max_bytes} bytes while being read")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def is_compressed(name: str, data: bytes) -> bool:
    return data.startswith((GZIP_MAGIC, ZIP_MAGIC)) or name.lower().endswith((".gz", ".zip"))


def unpack(name: str, data: bytes, *, allowed: bool, cap: int) -> list[Part]:
    """The documents of a file: itself, or what its gzip or zip holds, at most `cap` bytes
    in all."""
    if not is_compressed(name, data):
        return [Part(name, data)]
    if not allowed:
        raise FileRefused("COMPRESSED_NOT_ALLOWED",
                          f"{name} is compressed and this inbox does not take compressed files (compressed: false)")
    if data.startswith(GZIP_MAGIC):
        inner = name[:-3] if name.lower().endswith(".gz") else name
        return [Part(inner, gunzip(data, cap, name))]
    if data.startswith(ZIP_MAGIC):
        return unzip(data, cap, name)
    raise FileRefused("FILE_FORMAT", f"{name} is named as compressed but is neither gzip nor zip")


def gunzip(data: bytes, cap: int, name: str) -> bytes:
    out, total = [], 0
    while data:
        inflater = zlib.decompressobj(wbits=31)
        pending = data
        while pending:
            try:
                chunk = inflater.decompress(pending, cap - total + 1)
            except zlib.error as exc:
                raise FileRefused("FILE_FORMAT", f"{name} is not valid gzip: {exc}") from None
            total += len(chunk)
            if total > cap:
                raise FileRefused("DECOMPRESSED_TOO_LARGE",
                                  f"{name} decompresses to more than {cap} bytes (max_decompressed_bytes)")
            out.append(chunk)
            pending = inflater.unconsumed_tail
            if inflater.eof:
                break
        if not inflater.eof:
            raise FileRefused("FILE_FORMAT", f"{name} is truncated gzip")
        data = inflater.unused_data  # a further gzip member, as `cat a.gz b.gz` makes
    return b"".join(out)


def unzip(data: bytes, cap: int, name: str) -> list[Part]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise FileRefused("FILE_FORMAT", f"{name} is not a valid zip: {exc}") from None
    parts, total = [], 0
    for member in members:
        if member.is_dir():
            continue
        path = PurePosixPath(member.filename.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or member.filename.startswith("/"):
            raise FileRefused("FILE_REFUSED", f"{name}: member {member.filename!r} points outside the inbox")
        if stat.S_ISLNK(member.external_attr >> 16):
            raise FileRefused("FILE_REFUSED", f"{name}: member {member.filename!r} is a symbolic link")
        chunks = []
        try:
            with archive.open(member) as stream:
                while True:
                    chunk = stream.read(min(CHUNK, cap - total + 1))
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > cap:
                        raise FileRefused("DECOMPRESSED_TOO_LARGE",
                                          f"{name} decompresses to more than {cap} bytes (max_decompressed_bytes)")
                    chunks.append(chunk)
        # What zipfile raises for a damaged member (BadZipFile, zlib.error), a compression
        # method it lacks (NotImplementedError) and an encrypted member (RuntimeError).
        except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as exc:
            raise FileRefused("FILE_FORMAT", f"{name}: member {member.filename!r} cannot be read: {exc}") from None
        parts.append(Part(f"{name}:{member.filename}", b"".join(chunks)))
    if not parts:
        raise FileRefused("FILE_FORMAT", f"{name} is an empty zip")
    return parts
