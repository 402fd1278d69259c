"""Bulk import and export of the registries as CSV (UTF-8 or GBK/GB18030, English or the
departments' Chinese column names).

Every row is checked as a message would be (USCC, citizen id with its birth date and gender,
project code, region code, dates, enumerations); a bad row is reported with its line, column,
code and text and the rest go in. Rows are merged like messages (authority, then recency), so
running the same file again changes nothing."""
from __future__ import annotations

import csv
import gc
import hashlib
import io
import json
import queue
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import select, text

from catalog.merge import Origin
from catalog.registries import RecordType
from catalog.store import CatalogStore, Tally, utcnow
from schemas import identifiers as ids

ENCODINGS = ("utf-8", "gbk", "gb18030")
_SURROGATES = re.compile("[\udc80-\udcff]")  # bytes surrogateescape could not decode


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    column: str
    code: str
    text: str


@dataclass(slots=True)
class ImportReport:
    rows: int = 0
    accepted: int = 0
    tally: Tally = field(default_factory=Tally)
    errors: list[RowError] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def refused_rows(self) -> int:
        return len({e.line for e in self.errors})


class ImportRefused(Exception):
    """The file as a whole cannot be imported (unknown encoding, no key column)."""

    code = "CSV_MALFORMED"


def column_names(record_type: RecordType) -> dict[str, str]:
    """Every accepted header (lower-cased English name, Chinese names) -> field name."""
    names = {}
    for f in record_type.all_fields:
        names[f.name.lower()] = f.name
        for header in f.headers:
            names[header.strip().lower()] = f.name
    return names


def _decoded(path: Path, encoding: str) -> io.TextIOWrapper:
    if encoding not in ENCODINGS:
        raise ImportRefused(f"encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
    # surrogateescape: a byte that is not valid in the encoding becomes a lone surrogate, so
    # the row (and column) it is in can be named instead of the whole file failing.
    return open(path, encoding="utf-8-sig" if encoding == "utf-8" else encoding, errors="surrogateescape",
                newline="")


def read_rows(record_type: RecordType, path: Path, encoding: str,
              report: ImportReport) -> Iterator[tuple[int, tuple[str, ...], dict[str, Any]]]:
    """Good rows as (line, key, plain values); bad ones go to report.errors."""
    names = column_names(record_type)
    with _decoded(path, encoding) as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise ImportRefused(f"{path.name} is empty") from None
        except csv.Error as exc:
            raise ImportRefused(f"{path.name}: {exc}") from None
        columns: list[str | None] = []
        for cell in header:
            name = names.get(cell.strip().lower())
            if name is None:
                report.ignored_columns.append(cell)
            columns.append(name)
        missing = [f.name for f in record_type.keys if f.name not in columns]
        if missing:
            raise ImportRefused(f"{path.name} has no {', '.join(missing)} column; the header is "
                                f"{', '.join(header)}; known columns: {', '.join(f.name for f in record_type.all_fields)}")
        fields = {f.name: f for f in record_type.all_fields}
        parsers = [None if name is None else _json_list if fields[name].kind == "list" else fields[name].parse
                   for name in columns]
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                report.rows += 1
                report.errors.append(RowError(reader.line_num, "", "CSV_MALFORMED", str(exc)))
                continue
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            report.rows += 1
            values, problems = {}, []
            if _SURROGATES.search("".join(cells)) is not None:
                problems = [RowError(line, name, "ENCODING", f"bytes that are not {encoding}")
                            for name, cell in zip(columns, cells) if name and _SURROGATES.search(cell)]
            for name, parse, cell in zip(columns, parsers, cells):
                if parse is None:
                    continue
                value, problem = parse(cell)
                if problem:
                    problems.append(RowError(line, name, *problem))
                values[name] = value
            key = tuple(values.pop(f.name, None) or "" for f in record_type.keys)
            for f, part in zip(record_type.keys, key):
                if not part and not any(p.column == f.name for p in problems):
                    problems.append(RowError(line, f.name, "KEY_MISSING", f"{f.name} is empty"))
            for f in record_type.fields:
                if f.required and not values.get(f.name) and not any(p.column == f.name for p in problems):
                    problems.append(RowError(line, f.name, "FIELD_REQUIRED", f"{f.name} is empty"))
            if record_type.name == "person" and not problems:
                problems.extend(_person_agrees(line, key[0], values))
            if problems:
                report.errors.extend(problems)
                continue
            yield line, key, values


def _json_list(cell: str) -> tuple[Any, tuple[str, str] | None]:
    cell = cell.strip()
    if not cell:
        return None, None
    try:
        value = json.loads(cell)
    except ValueError:
        return None, ("VALUE_INVALID", "not a JSON list of objects")
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        return None, ("VALUE_INVALID", "not a JSON list of objects")
    return value, None


def _person_agrees(line: int, citizen_id: str, values: dict) -> list[RowError]:
    """Birth date and gender must agree with the number (GB 11643); absent, they come from it."""
    problems = []
    born = ids.citizen_birth_date(citizen_id).isoformat()
    gender = ids.citizen_gender(citizen_id)
    if values.get("birth_date") not in (None, born):
        problems.append(RowError(line, "birth_date", "CITIZEN_ID_BIRTHDATE",
                                 f"birth date {values['birth_date']} disagrees with the citizen id ({born})"))
    if values.get("gender") not in (None, gender):
        problems.append(RowError(line, "gender", "GENDER_MISMATCH",
                                 f"gender {values['gender']} disagrees with the citizen id ({gender})"))
    values["birth_date"] = values.get("birth_date") or born
    values["gender"] = values.get("gender") or gender
    return problems


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_csv(store: CatalogStore, record_type: RecordType, path: Path, *, encoding: str = "utf-8",
               system: str = "import", batch_size: int = 5000,
               progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import a CSV file; `system` is whose authority the rows carry (e.g. the market-regulation
    registration system for its enterprise export). progress(n) is told of every n rows read."""
    report = ImportReport()
    digest = file_digest(path)[:16]
    now = utcnow()
    # One origin for the whole file: the system whose authority it carries, the file (by its
    # digest) and the time of the import. A record's key finds its row in the file.
    origin = Origin.of(system, f"import:{digest}", now)

    # Reading and checking rows is Python work; writing a batch is mostly the database's.
    # A writer thread takes each batch while the next one is read, so the two overlap.
    batches: queue.Queue = queue.Queue(maxsize=2)
    failure: list[BaseException] = []
    lock = threading.Lock()

    def write() -> None:
        while (batch := batches.get()) is not None:
            if failure:
                continue
            try:
                tally = store.transaction(lambda conn: store.write_offers(conn, record_type, batch, now))
                with lock:
                    report.tally.add(tally)
                    report.accepted += len(batch)
            except BaseException as exc:  # handed to the reading thread, which raises it
                failure.append(exc)

    # Two writers, each with its own connection: while one waits for the database the other
    # prepares its batch. Batches rarely share a key; when they do, the loser's transaction
    # fails on the duplicate and is retried, finding the record.
    writers = [threading.Thread(target=write, name=f"catalog-import-writer-{i}", daemon=True) for i in range(2)]
    for writer in writers:
        writer.start()
    # Millions of small dicts and no reference cycles: the cyclic collector would only walk
    # the growing heap again and again (a third of the import's time).
    collecting = gc.isenabled()
    gc.disable()
    batch: list = []
    seen = 0
    try:
        for _line, key, values in read_rows(record_type, path, encoding, report):
            batch.append((key, values, origin))
            if len(batch) >= batch_size:
                batches.put(batch)
                batch = []
                if failure:
                    break
            if progress and report.rows - seen >= 1000:
                progress(report.rows - seen)
                seen = report.rows
        if batch and not failure:
            batches.put(batch)
    finally:
        for writer in writers:
            batches.put(None)
        for writer in writers:
            writer.join()
        if collecting:
            gc.enable()
    if failure:
        raise failure[0]
    if store.postgres and report.tally.created + report.tally.updated >= 10_000:
        # A table that grew by a large import has stale planner statistics (a name search
        # would scan instead of walking the name index) and no visibility map (no index-only
        # scans) until autovacuum comes by, at a time of its choosing. PostgreSQL's advice
        # after a bulk load: VACUUM (ANALYZE) now, as part of the import (~2 s a million rows).
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"VACUUM (ANALYZE) {record_type.model.__tablename__}"))
    if progress:
        progress(report.rows - seen)
    return report


def write_error_report(report: ImportReport, path: Path) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "column", "code", "text"])
        for e in report.errors:
            writer.writerow([e.line, e.column, e.code, e.text])


def export_rows(engine, record_type: RecordType, *, mask: Callable[[str], str] | None) -> Iterator[list[str]]:
    """The header, then one row per record in key order; personal fields through mask."""
    fields = record_type.all_fields
    yield [f.name for f in fields]
    table = record_type.model.__table__
    query = select(*(table.c[f.name] for f in fields)).order_by(*(table.c[f.name] for f in record_type.keys))
    with engine.connect() as conn:
        for row in conn.execution_options(yield_per=5000).execute(query):
            out = []
            for f, value in zip(fields, row):
                value = f.plain(value)
                if value is None:
                    out.append("")
                elif f.kind == "list":
                    out.append(json.dumps(value, ensure_ascii=False))
                else:
                    text = str(value)
                    out.append(mask(text) if mask and f.personal else text)
            yield out


def export_csv(engine, record_type: RecordType, handle, *, mask: Callable[[str], str] | None) -> int:
    writer = csv.writer(handle)
    count = -1
    for row in export_rows(engine, record_type, mask=mask):
        writer.writerow(row)
        count += 1
    return count

