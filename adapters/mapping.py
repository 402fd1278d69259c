"""Record mappings: a department's flat record (a CSV row, a front-table row) to a canonical
message body, and back. One YAML file per department format declares the message type and,
in canonical order, each field's path and where its value comes from:

    type: CaseAccepted
    fields:
      CaseNumber: BJBH                      # the column's value as it is
      Department/Code: {value: zjj}         # a constant
      Applicant/@kind: {column: SQRLX, map: {"1": PERSON, "2": ENTERPRISE}}
      AppliedAt: {column: SQSJ, datetime: "%Y-%m-%d %H:%M:%S", zone: "+08:00"}

An empty value leaves its element out; the XSD then names a required one that is missing.
The same declaration read backwards fills a department's table from a canonical message
(the frontdb destination)."""
from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr  # writing text into XML; nothing is parsed

import yaml
from lxml import etree

from bus.errors import ConfigError
from schemas.namespaces import ENVELOPE, MESSAGE_TYPES

SHIPPED = Path(__file__).parent / "mappings"
# Message ids of mapped records: uuid5 of the system and the body's digest, so the same
# record dropped again is the same message (a DUPLICATE), never a second one.
RECORD_NAMESPACE = uuid.UUID("6f1c2d1e-8a43-5b7e-9c1d-2b1f3e4a5c6d")
_SPEC_KEYS = {"column", "value", "map", "datetime", "date", "zone", "decimal"}


class RecordError(Exception):
    """A record's value that cannot become its canonical field (code RECORD_MAPPING or ENCODING)."""

    def __init__(self, code: str, text: str, path: str = "/"):
        super().__init__(text)
        self.code, self.text, self.path = code, text, path


@dataclass(frozen=True, slots=True)
class FieldSpec:
    path: tuple[str, ...]  # element local names; the last may be "@attribute"
    column: str | None = None
    value: str | None = None
    map: dict[str, str] | None = None
    datetime: str | None = None  # strptime format of the column
    date: str | None = None
    zone: dt.timezone | None = None  # of a datetime column that carries none
    decimal: bool = False

    @property
    def xpath(self) -> str:
        return "/" + "/".join(self.path)

    def convert(self, raw: Any, clean: bool = False) -> str | None:
        """The canonical text of a column value, None when empty. clean: the text is known
        to hold no undecodable bytes (the whole file decoded strictly)."""
        if raw is None:
            return None
        if isinstance(raw, str):
            # Undecodable bytes arrive as lone surrogates (surrogateescape): refuse, never guess.
            if not clean and max(raw, default="\0") >= "\udc80" and any("\udc80" <= ch <= "\udcff" for ch in raw):
                raise RecordError("ENCODING", f"column {self.column} holds bytes that are not valid "
                                              f"in the declared encoding", self.xpath)
            raw = raw.strip()
            if not raw:
                return None
        if self.map is not None:
            key = str(raw)
            if key not in self.map:
                raise RecordError("RECORD_MAPPING", f"column {self.column} value {key!r} is not one of "
                                                    f"{', '.join(map(repr, self.map))}", self.xpath)
            return self.map[key]
        if self.datetime is not None:
            return _timestamp(raw, self)
        if self.date is not None:
            if isinstance(raw, dt.datetime):
                return raw.date().isoformat()
            if isinstance(raw, dt.date):
                return raw.isoformat()
            try:
                return dt.datetime.strptime(raw, self.date).date().isoformat()
            except ValueError:
                raise RecordError("RECORD_MAPPING", f"column {self.column} value {raw!r} is not a date "
                                                    f"in the format {self.date}", self.xpath) from None
        if isinstance(raw, decimal.Decimal):
            return format(raw, "f")
        return str(raw)

    def revert(self, text: str | None) -> Any:
        """A canonical text back to the column's value (the frontdb destination)."""
        if text is None:
            return None
        if self.map is not None:
            for key, mapped in self.map.items():
                if mapped == text:
                    return key
            return text
        if self.datetime is not None:
            moment = dt.datetime.fromisoformat(text)
            if self.zone is not None:
                moment = moment.astimezone(self.zone).replace(tzinfo=None)
            return moment
        if self.date is not None:
            return dt.date.fromisoformat(text)
        if self.decimal:
            return decimal.Decimal(text)
        return text

    def as_text(self, value: Any) -> str:
        """A reverted value as a department file writes it (the column's own formats)."""
        if value is None:
            return ""
        if isinstance(value, dt.datetime) and self.datetime:
            return value.strftime(self.datetime)
        if isinstance(value, dt.date) and self.date:
            return value.strftime(self.date)
        return str(value)


_ISO_LIKE = "%Y-%m-%d %H:%M:%S"


def _timestamp(raw: Any, spec: FieldSpec) -> str:
    if isinstance(raw, dt.datetime):
        moment = raw
    elif spec.datetime == _ISO_LIKE and len(raw) == 19 and raw[10] == " ":
        try:  # the common export format: fromisoformat is ~20x cheaper than strptime
            moment = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise RecordError("RECORD_MAPPING", f"column {spec.column} value {raw!r} is not a time in the "
                                                f"format {spec.datetime}", spec.xpath) from None
    else:
        try:
            moment = dt.datetime.strptime(str(raw), spec.datetime)
        except ValueError:
            raise RecordError("RECORD_MAPPING", f"column {spec.column} value {raw!r} is not a time in the "
                                                f"format {spec.datetime}", spec.xpath) from None
    if moment.tzinfo is None:
        if spec.zone is None:
            raise RecordError("RECORD_MAPPING", f"column {spec.column} value {raw!r} has no time zone and "
                                                f"the mapping declares none", spec.xpath)
        moment = moment.replace(tzinfo=spec.zone)
    return moment.isoformat()


class RecordMapping:
    def __init__(self, name: str, message_type: str, fields: list[FieldSpec], *,
                 encoding: str | None = None, csv: dict | None = None, description: str = ""):
        self.name = name
        self.type = message_type
        self.namespace = MESSAGE_TYPES[message_type]
        self.fields = fields
        self.encoding = encoding
        self.csv = csv or {}
        self.description = description
        self._tag = f"{{{self.namespace}}}{message_type}"

        self._plan = _plan(fields, message_type)
        # Compiled once: to_row runs for every message a destination writes.
        self._readers = [(spec, etree.XPath(_read_path(spec), namespaces={"m": self.namespace}))
                         for spec in fields if spec.column]
        self._open = f'<m:{message_type} xmlns:m="{self.namespace}"'

    @property
    def columns(self) -> list[str]:
        return [f.column for f in self.fields if f.column]

    def body_text(self, row: dict[str, Any], clean: bool = False) -> str:
        """The canonical body of one record as XML text (the fast path of file ingestion:
        no element objects; the acceptance parses it once anyway). RecordError names the
        column that cannot be mapped."""
        inner, attributes = _render(self._plan, row, clean)
        return f"{self._open}{attributes}>{inner}</m:{self.type}>"

    def to_row(self, body: etree._Element) -> dict[str, Any]:
        """Column values from a canonical body (constants and absent fields left out)."""
        row: dict[str, Any] = {}
        for spec, find in self._readers:
            found = find(body)
            row[spec.column] = spec.revert(str(found[0]).strip()) if found else None
        return row

    def to_text_row(self, body: etree._Element) -> list[str]:
        """The row as the department's file writes it, in `columns` order: times and dates
        in the column's own format, empty for absent fields."""
        row = self.to_row(body)
        return [spec.as_text(row[spec.column]) for spec, _ in self._readers]

    def body_in(self, root: etree._Element) -> etree._Element | None:
        """This mapping's message body in a parsed payload: an envelope's body, or the body
        itself (what a route's transform may hand on); None when it is another message."""
        body = root.find(f"{{{ENVELOPE}}}Body/*") if root.tag == f"{{{ENVELOPE}}}Envelope" else root
        return body if body is not None and body.tag == self._tag else None


def _read_path(spec: FieldSpec) -> str:
    *steps, leaf = spec.path
    prefix = "".join(f"m:{s}/" for s in steps)
    return f"{prefix}@{leaf[1:]}" if leaf.startswith("@") else f"{prefix}m:{leaf}/text()"


@dataclass(slots=True)
class _Node:
    """An element of the body with the fields (leaves) and elements under it, in order."""

    name: str
    attributes: list = field(default_factory=list)  # (attribute name, FieldSpec)
    children: list = field(default_factory=list)  # _Node | FieldSpec
    index: dict = field(default_factory=dict)


def _plan(fields: list[FieldSpec], root: str) -> _Node:
    top = _Node(root)
    for spec in fields:
        node = top
        for part in spec.path[:-1]:
            child = node.index.get(part)
            if child is None:
                child = node.index[part] = _Node(part)
                node.children.append(child)
            node = child
        leaf = spec.path[-1]
        if leaf.startswith("@"):
            node.attributes.append((leaf[1:], spec))
        else:
            node.children.append(spec)
    return top


def _value(spec: FieldSpec, row: dict, clean: bool = False) -> str | None:
    return spec.value if spec.column is None else spec.convert(row.get(spec.column), clean)


def _render(node: _Node, row: dict, clean: bool) -> tuple[str, str]:
    """The content and the attribute text of an element; an element with neither is left out."""
    parts = []
    for child in node.children:
        if isinstance(child, FieldSpec):
            text = _value(child, row, clean)
            if text is not None:
                name = child.path[-1]
                parts.append(f"<m:{name}>{escape(text)}</m:{name}>")
        else:
            inner, attributes = _render(child, row, clean)
            if inner or attributes:
                parts.append(f"<m:{child.name}{attributes}>{inner}</m:{child.name}>")
    attributes = ""
    for name, spec in node.attributes:
        text = _value(spec, row, clean)
        if text is not None:
            attributes += f" {name}={quoteattr(text)}"
    return "".join(parts), attributes


def message_id_for(system: str, body: etree._Element | str) -> str:
    """The same record from the same system is always the same message id."""
    data = body.encode("utf-8") if isinstance(body, str) else etree.tostring(body)
    return str(uuid.uuid5(RECORD_NAMESPACE, f"{system}\n{hashlib.sha256(data).hexdigest()}"))


def mapping_path(reference: str, base: Path | None = None, suffix: str = ".yaml") -> Path:
    """A shipped mapping by name (zjj-sgxk-accepted; suffix .xsl for stylesheets), else a
    path (relative to base: the configuration file's directory)."""
    shipped = SHIPPED / f"{reference}{suffix}"
    if "/" not in reference and "." not in reference and shipped.exists():
        return shipped
    path = Path(reference)
    return path if path.is_absolute() or base is None else base / path


def load_mapping(reference: str, base: Path | None = None) -> RecordMapping:
    path = mapping_path(reference, base)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"mapping {reference}: {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"mapping {path}: not valid YAML: {exc}") from None
    return parse_mapping(data, str(path))


def parse_mapping(data: Any, where: str) -> RecordMapping:
    def fail(text: str):
        raise ConfigError(f"mapping {where}: {text}")

    if not isinstance(data, dict):
        fail("the top level must be a mapping with type and fields")
    unknown = set(data) - {"type", "fields", "encoding", "csv", "description", "name"}
    if unknown:
        fail(f"unknown key(s) {', '.join(sorted(unknown))}")
    message_type = data.get("type")
    if message_type not in MESSAGE_TYPES:
        fail(f"type {message_type!r} is not one of {', '.join(MESSAGE_TYPES)}")
    raw_fields = data.get("fields")
    if not isinstance(raw_fields, dict) or not raw_fields:
        fail("fields must map canonical paths to columns")
    fields = []
    for path, spec in raw_fields.items():
        parts = tuple(str(path).split("/"))
        if any(not p or (p.startswith("@") and i != len(parts) - 1) for i, p in enumerate(parts)):
            fail(f"field path {path!r} is not Name/Name/@attribute")
        if isinstance(spec, str):
            spec = {"column": spec}
        if not isinstance(spec, dict) or not (set(spec) <= _SPEC_KEYS) or \
                ("column" in spec) == ("value" in spec):
            fail(f"field {path}: give a column name, or {{column: ..}} / {{value: ..}} with "
                 f"{', '.join(sorted(_SPEC_KEYS - {'column', 'value'}))}")
        zone = None
        if "zone" in spec:
            try:
                zone = dt.datetime.strptime(str(spec["zone"]), "%z").tzinfo
            except ValueError:
                fail(f"field {path}: zone {spec['zone']!r} is not like +08:00")
        mapped = spec.get("map")
        if mapped is not None and not isinstance(mapped, dict):
            fail(f"field {path}: map must be a mapping of column values to canonical values")
        fields.append(FieldSpec(
            path=parts, column=spec.get("column"), value=None if "value" not in spec else str(spec["value"]),
            map={str(k): str(v) for k, v in mapped.items()} if mapped else None,
            datetime=spec.get("datetime"), date=spec.get("date"), zone=zone, decimal=bool(spec.get("decimal"))))
    csv_options = data.get("csv") or {}
    if not isinstance(csv_options, dict) or not set(csv_options) <= {"delimiter", "quotechar", "header", "columns"}:
        fail("csv takes delimiter, quotechar, header (true/false) and columns (when there is no header)")
    return RecordMapping(str(data.get("name") or Path(where).stem), message_type, fields,
                         encoding=data.get("encoding"), csv=csv_options,
                         description=str(data.get("description", "")))
