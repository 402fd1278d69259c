"""Transforms: what a route does to a message before a destination gets it.

- XSLT 1.0 files, read through the hardened parser and run by libxml2 with every file and
  network access denied (no document(), no xsl:document writes).
- Named Python mappers: `mapper(envelope_root) -> bytes | element`, registered by an adapter
  with `register_mapper` or through the `huitong.mappers` entry-point group.

A transform that fails on a message fails the same way on every retry: TRANSFORM_FAILED is
permanent and the message goes straight to the dead-letter queue."""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from lxml import etree

from bus.errors import DeliveryError, RejectedMessage
from schemas.hardened import HardenedParser

Mapper = Callable[[etree._Element], "bytes | etree._Element"]
_mappers: dict[str, Mapper] = {}


def register_mapper(name: str, mapper: Mapper) -> None:
    _mappers[name] = mapper


def find_mapper(name: str) -> Mapper | None:
    if name not in _mappers:
        for ep in entry_points(group="huitong.mappers", name=name):
            _mappers[name] = ep.load()
    return _mappers.get(name)


class Transform(ABC):
    """Applies to the parsed envelope; returns the bytes a destination sends."""

    name: str

    @abstractmethod
    def apply(self, root: etree._Element) -> bytes:
        """The bytes to send, or DeliveryError(code TRANSFORM_FAILED, permanent)."""


class XsltTransform(Transform):
    def __init__(self, path: Path, parser: HardenedParser):
        self.name = f"xslt:{path.name}"
        self.path = path
        try:
            document = parser.parse_file(path)
        except OSError as exc:
            raise ValueError(f"XSLT file {path} cannot be read: {exc.strerror}") from None
        except RejectedMessage as exc:
            raise ValueError(f"XSLT file {path} is not acceptable XML: {exc}") from None
        try:
            self._stylesheet = etree.XSLT(document, access_control=etree.XSLTAccessControl.DENY_ALL)
        except etree.XSLTParseError as exc:
            raise ValueError(f"XSLT file {path} does not compile: {_first_error(exc)}") from None
        self._document = document
        self._local = threading.local()

    def _compiled(self) -> etree.XSLT:
        # A compiled stylesheet must not run on two threads at once.
        compiled = getattr(self._local, "xslt", None)
        if compiled is None:
            compiled = self._local.xslt = etree.XSLT(self._document,
                                                     access_control=etree.XSLTAccessControl.DENY_ALL)
        return compiled

    def apply(self, root: etree._Element) -> bytes:
        try:
            result = self._compiled()(root)
        except etree.XSLTApplyError as exc:
            raise DeliveryError(f"{self.name} failed: {_first_error(exc)}", code="TRANSFORM_FAILED",
                                permanent=True) from None
        if result.getroot() is None:
            raise DeliveryError(f"{self.name} produced no document element", code="TRANSFORM_FAILED",
                                permanent=True)
        return bytes(result)


class MapperTransform(Transform):
    def __init__(self, name: str):
        mapper = find_mapper(name)
        if mapper is None:
            raise ValueError(f"no mapper named {name!r} is registered")
        self.name = f"mapper:{name}"
        self._mapper = mapper

    def apply(self, root: etree._Element) -> bytes:
        try:
            out = self._mapper(root)
        except Exception as exc:
            raise DeliveryError(f"{self.name} failed: {exc.__class__.__name__}: {exc}",
                                code="TRANSFORM_FAILED", permanent=True) from None
        if isinstance(out, etree._Element):
            return etree.tostring(out, xml_declaration=True, encoding="UTF-8")
        return out


def _first_error(exc: Exception) -> str:
    log = getattr(exc, "error_log", None)
    if log:
        entry = log[0]
        return f"line {entry.line}: {entry.message}"
    return str(exc)
