"""A file's records as canonical envelope bytes, one per record, each labelled with where it
stood (line 5, record 3) for the receipt. Three formats:

- canonical: a Huitong envelope, or an hx:Batch of them, passed on as they are;
- csv: rows turned into bodies by a record mapping (adapters/mapping.py);
- xml: a department document turned by an XSLT stylesheet into an hx:Records element whose
  children are canonical bodies.

Mapped records get a message id derived from their content (adapters.mapping.message_id_for),
so dropping a file again adds nothing. Bytes that are not valid in the declared encoding are
an ENCODING error of that record (or of the file, where the record cannot be told), never
mojibake."""
from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from adapters.filedrop.files import FileRefused, Part
from adapters.mapping import RecordError, RecordMapping, load_mapping, mapping_path, message_id_for
from bus.acceptance import Refused
from bus.config import InboxSettings
from bus.envelope import envelope_text, envelope_xml
from bus.errors import ConfigError, RejectedMessage
from schemas.hardened import HardenedParser, XmlLimits
from schemas.namespaces import ENVELOPE, MESSAGE_TYPES
from schemas.xslt import SafeStylesheet, StylesheetError

_ENVELOPE = f"{{{ENVELOPE}}}Envelope"
_BATCH = f"{{{ENVELOPE}}}Batch"
_BODY_TAGS = {f"{{{ns}}}{name}": name for name, ns in MESSAGE_TYPES.items()}
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Record:
    label: str  # where it stood in the file: "line 5", "record 3", "envelope 2"
    item: bytes | Refused  # canonical envelope bytes, or why there are none


def _codec(name: str) -> str:
    name = name.lower().replace("_", "-")
    return {"utf8": "utf-8", "gb2312": "gbk"}.get(name, name)


class RecordReader:
    """Reads files in one inbox's format; built once per inbox (mapping and XSLT compiled)."""

    def __init__(self, inbox: InboxSettings, *, base: Path | None = None, max_depth: int = 64):
        self.inbox = inbox
        self.format = inbox.format
        self.mapping: RecordMapping | None = None
        self.stylesheet: SafeStylesheet | None = None
        explicit = "encoding" in inbox.model_fields_set
        self.encoding = _codec(inbox.encoding)
        # A whole file is bigger than one message: the file parser's caps follow the inbox's.
        self.parser = HardenedParser(XmlLimits(max_bytes=max(inbox.max_file_bytes, inbox.max_decompressed_bytes),
                                               max_depth=max_depth, max_elements=50_000_000))
        if self.format == "csv":
            if not inbox.mapping:
                raise ConfigError(f"inbox for {inbox.system}: format csv needs a mapping")
            self.mapping = load_mapping(inbox.mapping, base)
            if self.mapping.encoding and not explicit:
                self.encoding = _codec(self.mapping.encoding)
        elif self.format == "xml":
            if not inbox.xslt:
                raise ConfigError(f"inbox for {inbox.system}: format xml needs an xslt stylesheet")
            try:
                self.stylesheet = SafeStylesheet(mapping_path(inbox.xslt, base, ".xsl"), HardenedParser())
            except ValueError as exc:
                raise ConfigError(f"inbox for {inbox.system}: {exc}") from None
        try:
            "".encode(self.encoding)
        except LookupError:
            raise ConfigError(f"inbox for {inbox.system}: unknown encoding {inbox.encoding}") from None

    def records(self, part: Part, system: str) -> Iterator[Record]:
        sent_at = dt.datetime.now(dt.timezone.utc)
        if self.format == "csv":
            return self._csv(part, system, sent_at)
        if self.format == "xml":
            return self._department_xml(part, system, sent_at)
        return self._canonical(part)

    # -- canonical ---------------------------------------------------------------------
    def _canonical(self, part: Part) -> Iterator[Record]:
        root = self._parse(part)
        if root.tag == _ENVELOPE:
            yield Record("envelope 1", part.data)
            return
        if root.tag != _BATCH:
            raise FileRefused("FILE_FORMAT", f"{part.name}: the root element is {root.tag}, not hx:Envelope or hx:Batch")
        for index, child in enumerate((c for c in root if isinstance(c.tag, str)), 1):
            if child.tag != _ENVELOPE:
                yield Record(f"envelope {index}", Refused(RejectedMessage.single(
                    "FILE_FORMAT", f"a batch holds hx:Envelope elements, not {child.tag}", "/Batch")))
                continue
            yield Record(f"envelope {index}", etree.tostring(child, encoding="UTF-8", xml_declaration=True))

    # -- department XML ------------------------------------------------------------------
    def _department_xml(self, part: Part, system: str, sent_at) -> Iterator[Record]:
        root = self._parse(part)
        try:
            result = self.stylesheet(root).getroot()
        except StylesheetError as exc:
            raise FileRefused("FILE_FORMAT", f"{part.name}: the inbox's stylesheet failed: {exc}") from None
        for index, body in enumerate((c for c in result if isinstance(c.tag, str)), 1):
            label = f"record {index}"
            message_type = _BODY_TAGS.get(body.tag)
            if message_type is None:
                yield Record(label, Refused(RejectedMessage.single(
                    "RECORD_MAPPING", f"the stylesheet produced {body.tag}, not a canonical message body")))
                continue
            yield Record(label, envelope_xml(message_type, body, system, message_id=message_id_for(system, body),
                                             sent_at=sent_at))

    def _parse(self, part: Part) -> etree._Element:
        data = part.data
        if not data.lstrip(UTF8_BOM + b" \t\r\n").startswith(b"<?xml") and self.encoding != "utf-8":
            # No declaration: the inbox's encoding says what the bytes are.
            try:
                data = data.decode(self.encoding).encode("utf-8")
            except UnicodeDecodeError as exc:
                raise FileRefused("ENCODING", f"{part.name}: byte {exc.start} is not valid {self.encoding}") from None
        try:
            return self.parser.parse(data)
        except RejectedMessage as exc:
            code = "ENCODING" if "encoding" in str(exc).lower() or "utf-8" in str(exc).lower() else exc.code
            raise FileRefused(code, f"{part.name}: {exc.errors[0].text}") from None

    # -- CSV --------------------------------------------------------------------------------
    def _csv(self, part: Part, system: str, sent_at) -> Iterator[Record]:
        data = part.data
        if data.startswith(UTF8_BOM):
            if self.encoding != "utf-8":
                raise FileRefused("ENCODING", f"{part.name} starts with a UTF-8 byte-order mark but the inbox "
                                              f"declares {self.encoding}")
            data = data[len(UTF8_BOM):]
        try:
            text, clean = data.decode(self.encoding), True
        except UnicodeDecodeError:
            # Undecodable bytes become lone surrogates, so each is pinned to its own row and field.
            text, clean = data.decode(self.encoding, "surrogateescape"), False
        mapping = self.mapping
        options = mapping.csv
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=options.get("delimiter", ","),
                            quotechar=options.get("quotechar", '"'), strict=True)
        header = self._header(part, reader, options)
        width = len(header)
        line = reader.line_num
        while True:
            start = line + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line = reader.line_num
                yield Record(f"line {start}", Refused(RejectedMessage.single("CSV_MALFORMED", str(exc))))
                continue
            line = reader.line_num
            if not row or all(not field.strip() for field in row):
                continue
            label = f"line {start}"
            evidence = options.get("delimiter", ",").join(row).encode("utf-8", "backslashreplace")
            if len(row) != width:
                yield Record(label, Refused(RejectedMessage.single(
                    "CSV_MALFORMED", f"{len(row)} fields where the header has {width}"), evidence))
                continue
            try:
                body = mapping.body_text(dict(zip(header, row)), clean)
            except RecordError as exc:
                yield Record(label, Refused(RejectedMessage.single(exc.code, exc.text, exc.path), evidence))
                continue
            yield Record(label, envelope_text(mapping.type, body, system, sent_at=sent_at,
                                              message_id=message_id_for(system, body)))

    def _header(self, part: Part, reader, options: dict) -> list[str]:
        if options.get("header", True) is False:
            columns = options.get("columns") or []
            if not columns:
                raise ConfigError(f"mapping {self.mapping.name}: csv without a header needs columns")
            return list(columns)
        try:
            header = [name.strip() for name in next(reader)]
        except StopIteration:
            raise FileRefused("CSV_MALFORMED", f"{part.name} is empty: no header row") from None
        except csv.Error as exc:
            raise FileRefused("CSV_MALFORMED", f"{part.name}: the header row cannot be read: {exc}") from None
        if any("\udc80" <= ch <= "\udcff" for name in header for ch in name):
            raise FileRefused("ENCODING", f"{part.name}: the header row is not valid {self.encoding}")
        missing = [c for c in self.mapping.columns if c not in header]
        if missing:
            raise FileRefused("CSV_MALFORMED", f"{part.name}: the header lacks the mapped column(s) "
                                               f"{', '.join(missing)} (mapping {self.mapping.name}, encoding {self.encoding})")
        return header
