"""The one XML parser of Huitong. No DTD at all (a DOCTYPE is refused before parsing),
no entity expansion, no network, no XInclude, and caps on bytes, depth and element count.
Every inbound path (SOAP bodies, files, front-database columns) parses through here."""
from __future__ import annotations

import re
import threading
from pathlib import Path
from dataclasses import dataclass

from lxml import etree

from bus.errors import RejectedMessage

XINCLUDE_NS = "http://www.w3.org/2001/XInclude"


@dataclass(frozen=True, slots=True)
class XmlLimits:
    max_bytes: int = 5 * 1024 * 1024
    max_depth: int = 64
    max_elements: int = 20_000


# The prolog is what may precede the root element: declaration, comments, PIs, DOCTYPE.
_PROLOG_DOCTYPE = re.compile(
    rb"(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]{0,200}\?>)?(?:\s+|<!--.*?-->|<\?.*?\?>)*<!DOCTYPE", re.S)


def _has_doctype(data: bytes) -> bool:
    head = data[:65536]
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(head) > 1 and 0 in head[:2]):
        # UTF-16/32: look at the text, not the bytes.
        for codec in ("utf-16", "utf-32"):
            try:
                text = head.decode(codec, errors="ignore")
            except UnicodeError:  # pragma: no cover - decode with ignore only fails on BOM issues
                continue
            if "<!DOCTYPE" in text:
                return True
        return False
    # A substring search is ~20x cheaper than the prolog pattern; run the pattern only on a hit,
    # so a CDATA section that merely mentions <!DOCTYPE is not refused.
    return b"<!DOCTYPE" in head and _PROLOG_DOCTYPE.match(head) is not None


class HardenedParser:
    """Parses bytes into an lxml tree or raises RejectedMessage with an XML_* code."""

    def __init__(self, limits: XmlLimits = XmlLimits()):
        self.limits = limits
        self._local = threading.local()
        # A document deeper than the cap has an element on this path.
        self._too_deep_path = "/" + "/".join(["*"] * (limits.max_depth + 1))

    def _tools(self):
        # lxml parsers and XPath evaluators are not shared between threads.
        tools = getattr(self._local, "tools", None)
        if tools is None:
            parser = etree.XMLParser(
                resolve_entities=False, no_network=True, load_dtd=False,
                dtd_validation=False, huge_tree=False, collect_ids=False,
                remove_pis=True, remove_comments=True)
            tools = self._local.tools = (parser, etree.XPath(self._too_deep_path))
        return tools

    def parse(self, data: bytes, *, check_depth: bool = True, base_url: str | None = None) -> etree._Element:
        """check_depth=False is for callers that validate against a schema which bounds the
        depth anyway and call check_depth() on the failure path (MessageValidator). base_url
        names the document, so that an XSD's xs:include can be found beside it."""
        limits = self.limits
        if len(data) > limits.max_bytes:
            raise RejectedMessage.single(
                "XML_TOO_LARGE", f"document is {len(data)} bytes, the cap is {limits.max_bytes}")
        if _has_doctype(data):
            raise RejectedMessage.single(
                "XML_DOCTYPE_FORBIDDEN", "a DOCTYPE is not allowed (no DTDs, no entities)")
        parser = self._tools()[0]
        try:
            root = etree.fromstring(data, parser, base_url=base_url)
        except etree.XMLSyntaxError as exc:
            raise _syntax_rejection(exc) from None
        if root is None:
            raise RejectedMessage.single("XML_MALFORMED", "document is empty")
        if root.getroottree().docinfo.doctype:  # belt and braces behind the prolog scan
            raise RejectedMessage.single("XML_DOCTYPE_FORBIDDEN", "a DOCTYPE is not allowed")
        if check_depth:
            self.check_depth(root)
        # Each element costs at least 4 bytes (<a/>), so small documents cannot break the cap.
        if len(data) > 4 * limits.max_elements:
            count = sum(1 for _ in root.iter())
            if count > limits.max_elements:
                raise RejectedMessage.single(
                    "XML_TOO_MANY_ELEMENTS",
                    f"document has {count} elements, the cap is {limits.max_elements}")
        return root


    def parse_file(self, path) -> etree._Element:
        """Our own files (the XSDs) go through the same door as everything else."""
        return self.parse(Path(path).read_bytes(), base_url=str(path))

    def check_depth(self, root: etree._Element) -> None:
        if self._tools()[1](root):
            raise RejectedMessage.single(
                "XML_TOO_DEEP", f"elements are nested deeper than {self.limits.max_depth}")


def find_xinclude(root: etree._Element) -> etree._Element | None:
    """Used on the failure path to name XInclude instead of a vaguer XSD error."""
    return next(root.iter(f"{{{XINCLUDE_NS}}}*"), None)


def _syntax_rejection(exc: etree.XMLSyntaxError) -> RejectedMessage:
    msg = str(exc)
    lowered = msg.lower()
    if "excessive depth" in lowered or "depth" in lowered and "exceed" in lowered:
        return RejectedMessage.single("XML_TOO_DEEP", "elements are nested too deeply")
    if "huge" in lowered or "too long" in lowered or "limit" in lowered:
        return RejectedMessage.single("XML_TOO_LARGE", f"document exceeds a parser limit: {msg}")
    if "entity" in lowered and ("loop" in lowered or "amplification" in lowered):
        return RejectedMessage.single("XML_DOCTYPE_FORBIDDEN", "entity expansion is not allowed")
    line, col = exc.position if exc.position else (0, 0)
    return RejectedMessage.single("XML_MALFORMED", f"not well-formed XML at line {line}, column {col}: {msg}")
