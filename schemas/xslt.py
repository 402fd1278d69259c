"""XSLT 1.0 stylesheets as Huitong runs them: read through the hardened parser, run by
libxml2 with every file and network access denied (no document(), no xsl:document writes),
compiled once per thread (a compiled stylesheet must not run on two threads at once)."""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from lxml import etree

from bus.errors import RejectedMessage
from schemas.hardened import HardenedParser

_DENY = etree.XSLTAccessControl.DENY_ALL


class StylesheetError(Exception):
    """The stylesheet failed on one document (text names the first libxslt error)."""


class SafeStylesheet:
    def __init__(self, path: Path, parser: HardenedParser, *, source: bytes | None = None):
        """From a file, or from its bytes (source) as archived in the exchange log."""
        self.path = Path(path)
        try:
            self.source = self.path.read_bytes() if source is None else source
            document = parser.parse(self.source, base_url=str(self.path))
        except OSError as exc:
            raise ValueError(f"XSLT file {path} cannot be read: {exc.strerror}") from None
        except RejectedMessage as exc:
            raise ValueError(f"XSLT file {path} is not acceptable XML: {exc}") from None
        try:
            etree.XSLT(document, access_control=_DENY)
        except etree.XSLTParseError as exc:
            raise ValueError(f"XSLT file {path} does not compile: {first_error(exc)}") from None
        # What a delivery records, so a replay can rebuild the output of this very version.
        self.digest = hashlib.sha256(self.source).hexdigest()
        self._document = document
        self._local = threading.local()

    @classmethod
    def from_bytes(cls, source: bytes, parser: HardenedParser) -> "SafeStylesheet":
        return cls(Path("archived.xsl"), parser, source=source)

    def __call__(self, root: etree._Element):
        """The result tree (bytes() of it honours xsl:output); StylesheetError when the
        stylesheet fails or yields no document element."""
        compiled = getattr(self._local, "xslt", None)
        if compiled is None:
            compiled = self._local.xslt = etree.XSLT(self._document, access_control=_DENY)
        try:
            result = compiled(root)
        except etree.XSLTApplyError as exc:
            raise StylesheetError(first_error(exc)) from None
        if result.getroot() is None:
            raise StylesheetError("the stylesheet produced no document element")
        return result


def first_error(exc: Exception) -> str:
    log = getattr(exc, "error_log", None)
    if log:
        entry = log[0]
        return f"line {entry.line}: {entry.message}"
    return str(exc)
