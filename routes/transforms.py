"""Transforms: what a route does to a message before a destination gets it.

- XSLT 1.0 files (schemas.xslt: hardened parse, no file or network access).
- Named Python mappers: `mapper(envelope_root) -> bytes | element`, registered by an adapter
  with `register_mapper` or through the `huitong.mappers` entry-point group.

A transform that fails on a message fails the same way on every retry: TRANSFORM_FAILED is
permanent and the message goes straight to the dead-letter queue."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from lxml import etree

from bus.errors import DeliveryError
from schemas.hardened import HardenedParser
from schemas.xslt import SafeStylesheet, StylesheetError

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
    """Applies to the parsed envelope; returns the bytes a destination sends. A transform whose
    definition is data (a stylesheet) has a digest and its source, archived in the exchange log
    when used, so that a replay can rebuild what this version produced."""

    name: str
    digest: str | None = None
    source: bytes | None = None

    @abstractmethod
    def apply(self, root: etree._Element) -> bytes:
        """The bytes to send, or DeliveryError(code TRANSFORM_FAILED, permanent)."""


class XsltTransform(Transform):
    def __init__(self, path: Path, parser: HardenedParser):
        self.name = f"xslt:{path.name}"
        self.path = path
        self._stylesheet = SafeStylesheet(path, parser)  # ValueError when it cannot run
        self.digest, self.source = self._stylesheet.digest, self._stylesheet.source

    def apply(self, root: etree._Element) -> bytes:
        try:
            result = self._stylesheet(root)
        except StylesheetError as exc:
            raise DeliveryError(f"{self.name} failed: {exc}", code="TRANSFORM_FAILED", permanent=True) from None
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
