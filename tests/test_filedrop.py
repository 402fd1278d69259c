"""Inbound file drops with real directories and a real database (SQLite embedded, and
PostgreSQL + RabbitMQ): department CSV in GBK and XML in GB18030 become canonical messages
through the normal acceptance; bad records are named in a receipt and the rest are not lost;
a file dropped again adds nothing; hostile files are refused while the watcher keeps going."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import time
import zipfile
from pathlib import Path

import yaml
from sqlalchemy import func, select

from bus.config import load_settings
from bus.hub import Hub
from bus.models import Event, Message
from tests.helpers.filedrop import BDC_SYSTEM, ZJJ_SYSTEM, bdc_xml, drop, zjj_csv
from tests.helpers.routing import wait_for
from tests.helpers.messages import sample

SECRET = "sample-secret-not-real"


def inbox_config(tmp_path: Path, backend, inboxes: dict, **extra) -> Path:
    config = {"state_dir": str(tmp_path / "var"), "database_url": backend.database_url,
              "broker_url": backend.broker_url, "relay": {"poll_interval": 0.05},
              "adapters": {"poll_interval": 0.1, **extra.pop("adapters", {})},
              "systems": [
                  {"id": ZJJ_SYSTEM, "name": "施工许可审批系统 (sample)", "secret": SECRET, "grants": ["CaseAccepted"]},
                  {"id": BDC_SYSTEM, "name": "不动产登记系统 (sample)", "secret": SECRET, "grants": ["CaseResult"]},
                  {"id": "320382.scjgj.djxt", "name": "登记系统 (sample)", "secret": SECRET,
                   "grants": ["CaseAccepted", "CaseResult"]}],
              "inboxes": inboxes, **extra}
    path = tmp_path / "huitong.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def zjj_inbox(tmp_path: Path, **options) -> dict:
    return {"system": ZJJ_SYSTEM, "dir": str(tmp_path / "inbox" / "zjj"), "format": "csv",
            "mapping": "zjj-sgxk-accepted", "settle_seconds": 0.3, **options}


def receipts(inbox_dir: Path, where: str) -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((inbox_dir / where).glob("*/*.receipt.json"))]


def wait_receipts(inbox_dir: Path, count: int, timeout: float = 90) -> list[dict]:
    wait_for(lambda: len(receipts(inbox_dir, "archive")) + len(receipts(inbox_dir, "error")) >= count, timeout)
    return receipts(inbox_dir, "archive") + receipts(inbox_dir, "error")


def count_messages(hub, source: str) -> int:
    with hub.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Message).where(Message.source == source))


def test_gbk_csv_of_10000_rows_with_3_bad_rows_and_dropped_again(tmp_path, backend):
    inbox_dir = tmp_path / "inbox" / "zjj"
    hub = Hub(load_settings(inbox_config(tmp_path, backend, {"zjj": zjj_inbox(tmp_path)}), environ={})).start()
    try:
        data = zjj_csv(10_000, bad={17: "citizen-id", 4_242: "case-type", 9_999: "bytes"})
        drop(inbox_dir, "sgxk-20261121.csv", data)
        [receipt] = wait_receipts(inbox_dir, 1)
        assert receipt["outcome"] == "rejected records"
        assert (receipt["records"], receipt["accepted"], receipt["duplicate"], receipt["rejected"]) == (10_000, 9_997, 0, 3)
        # Data row n is on line n + 1 (the header is line 1).
        named = {r["record"]: r["code"] for r in receipt["rejections"]}
        assert named == {"line 18": "CITIZEN_ID_CHECK", "line 4243": "RECORD_MAPPING", "line 10000": "ENCODING"}
        assert "申请人名称" in next(r["text"] for r in receipt["rejections"] if r["code"] == "ENCODING")
        assert count_messages(hub, ZJJ_SYSTEM) == 9_997
        assert len(list((inbox_dir / "error").glob("*/sgxk-20261121.csv"))) == 1
        assert receipt["sha256"] and receipt["bytes"] == len(data)

        # The same file again (the department resends the whole export): nothing new.
        drop(inbox_dir, "sgxk-20261121.csv", data)
        wait_for(lambda: len(receipts(inbox_dir, "error")) == 2, 90)
        again = next(r for r in receipts(inbox_dir, "error") if r["duplicate"])
        assert (again["accepted"], again["duplicate"], again["rejected"]) == (0, 9_997, 3)
        assert count_messages(hub, ZJJ_SYSTEM) == 9_997
        moved = sorted(p.name for p in (inbox_dir / "error").glob("*/sgxk-20261121.csv*") if not p.name.endswith(".json"))
        assert moved == ["sgxk-20261121.csv", "sgxk-20261121.csv.1"]  # the first one is kept, not overwritten

        # The department fixes the three rows and drops the export once more: only they are new.
        drop(inbox_dir, "sgxk-20261121-fixed.csv", zjj_csv(10_000))
        wait_for(lambda: len(receipts(inbox_dir, "archive")) == 1, 90)
        [fixed] = receipts(inbox_dir, "archive")
        assert (fixed["accepted"], fixed["duplicate"], fixed["rejected"]) == (3, 9_997, 0)
        assert count_messages(hub, ZJJ_SYSTEM) == 10_000
        # Rejections are on the audit trail with their codes.
        with hub.engine.connect() as conn:
            codes = set(conn.scalars(select(Event.code).where(Event.kind == "REJECTED", Event.source == ZJJ_SYSTEM)))
        assert {"CITIZEN_ID_CHECK", "RECORD_MAPPING", "ENCODING"} <= codes
    finally:
        hub.stop()


def test_department_xml_in_gb18030_through_xslt(tmp_path, backend):
    inbox_dir = tmp_path / "inbox" / "bdc"
    inboxes = {"bdc": {"system": BDC_SYSTEM, "dir": str(inbox_dir), "format": "xml",
                       "xslt": "zrzyj-bdcdj-result", "complete": "marker"}}
    hub = Hub(load_settings(inbox_config(tmp_path, backend, inboxes), environ={})).start()
    try:
        drop(inbox_dir, "bjjg.xml", bdc_xml(50, bad={7}))
        time.sleep(0.6)
        assert not receipts(inbox_dir, "error") and (inbox_dir / "bjjg.xml").exists()  # no marker yet: not taken
        (inbox_dir / "bjjg.xml.done").write_bytes(b"")
        [receipt] = wait_receipts(inbox_dir, 1)
        assert (receipt["accepted"], receipt["rejected"]) == (49, 1)
        assert receipt["rejections"][0]["record"] == "record 7"
        assert receipt["rejections"][0]["code"] == "XSD_INVALID"
        assert not (inbox_dir / "bjjg.xml.done").exists()
        with hub.engine.connect() as conn:
            handler = conn.scalar(select(Message.case_number).where(Message.source == BDC_SYSTEM)
                                  .order_by(Message.seq).limit(1))
        assert handler == "320382-BDC-20261121-00001"
    finally:
        hub.stop()


def test_canonical_batch_and_checksum_sidecar(tmp_path):
    from tests.conftest import Backend
    backend = Backend("embedded", f"sqlite:///{tmp_path / 'hub.db'}", "memory://")
    inbox_dir = tmp_path / "inbox" / "scjg"
    inboxes = {"scjg": {"system": "320382.scjgj.djxt", "dir": str(inbox_dir), "settle_seconds": 0.2}}
    hub = Hub(load_settings(inbox_config(tmp_path, backend, inboxes), environ={})).start()
    try:
        envelopes = [sample(name).split(b"?>", 1)[1] for name in ("CaseAccepted-enterprise.xml", "CaseResult-approved.xml")]
        batch = b'<?xml version="1.0" encoding="UTF-8"?><hx:Batch xmlns:hx="urn:huitong:envelope:1">' \
                + b"".join(envelopes) + b"</hx:Batch>"
        (inbox_dir).mkdir(parents=True, exist_ok=True)
        (inbox_dir / "batch.xml.sha256").write_text(f"{hashlib.sha256(batch).hexdigest()}  batch.xml\n")
        drop(inbox_dir, "batch.xml", batch)
        (inbox_dir / "damaged.xml.sha256").write_text(f"{'0' * 64}  damaged.xml\n")
        drop(inbox_dir, "damaged.xml", batch)
        done = wait_receipts(inbox_dir, 2)
        by_file = {r["file"]: r for r in done}
        assert (by_file["batch.xml"]["outcome"], by_file["batch.xml"]["accepted"]) == ("archived", 2)
        assert by_file["damaged.xml"]["refused"]["code"] == "FILE_CHECKSUM"
        assert count_messages(hub, "320382.scjgj.djxt") == 2
    finally:
        hub.stop()


def test_a_file_still_being_written_is_not_taken_early(tmp_path):
    from tests.conftest import Backend
    backend = Backend("embedded", f"sqlite:///{tmp_path / 'hub.db'}", "memory://")
    inbox_dir = tmp_path / "inbox" / "zjj"
    inbox_dir.mkdir(parents=True)
    hub = Hub(load_settings(inbox_config(tmp_path, backend, {"zjj": zjj_inbox(tmp_path, settle_seconds=1.0)}),
                            environ={})).start()
    try:
        data = zjj_csv(40)
        lines = data.split(b"\r\n")
        with open(inbox_dir / "slow.csv", "wb") as out:  # straight into the inbox, a few rows at a time
            for start in range(0, len(lines), 4):
                out.write(b"\r\n".join(lines[start:start + 4]) + (b"\r\n" if start + 4 < len(lines) else b""))
                out.flush()
                time.sleep(0.4)  # 10 pauses of 0.4 s: 4 s of writing, each pause below settle_seconds
                assert not receipts(inbox_dir, "archive") and not receipts(inbox_dir, "error")
        [receipt] = wait_receipts(inbox_dir, 1)
        assert (receipt["outcome"], receipt["accepted"], receipt["bytes"]) == ("archived", 40, len(data))
    finally:
        hub.stop()


def test_hostile_files_are_refused_and_the_watcher_keeps_running(tmp_path):
    from tests.conftest import Backend
    backend = Backend("embedded", f"sqlite:///{tmp_path / 'hub.db'}", "memory://")
    inbox_dir = tmp_path / "inbox" / "zjj"
    plain_dir = tmp_path / "inbox" / "plain"
    inboxes = {"zjj": zjj_inbox(tmp_path, compressed=True, max_decompressed_bytes=2_000_000),
               "plain": zjj_inbox(tmp_path, dir=str(plain_dir))}
    hub = Hub(load_settings(inbox_config(tmp_path, backend, inboxes), environ={})).start()
    outside = tmp_path / "outside.csv"
    outside.write_bytes(zjj_csv(3))
    try:
        inbox_dir.mkdir(parents=True, exist_ok=True)
        # a gzip bomb: 200 MB of zeros in ~200 KB
        bomb = io.BytesIO()
        with gzip.GzipFile(fileobj=bomb, mode="wb") as gz:
            for _ in range(200):
                gz.write(bytes(1 << 20))
        drop(inbox_dir, "bomb.csv.gz", bomb.getvalue())
        # a zip bomb, and a zip whose member climbs out of the inbox
        zipped = io.BytesIO()
        with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("rows.csv", bytes(100 << 20))
        drop(inbox_dir, "bomb.zip", zipped.getvalue())
        climbing = io.BytesIO()
        with zipfile.ZipFile(climbing, "w") as archive:
            archive.writestr("../../etc/cron.d/evil.csv", zjj_csv(2))
        drop(inbox_dir, "climb.zip", climbing.getvalue())
        # a symlink to a file outside the inbox, and a FIFO nobody writes to
        os.symlink(outside, inbox_dir / "link.csv")
        os.mkfifo(inbox_dir / "pipe.csv")
        # compressed input where it is not enabled
        drop(plain_dir, "rows.csv.gz", gzip.compress(zjj_csv(2)))
        done = {r["file"]: r for r in wait_receipts(inbox_dir, 5) + wait_receipts(plain_dir, 1)}
        assert done["bomb.csv.gz"]["refused"]["code"] == "DECOMPRESSED_TOO_LARGE"
        assert done["bomb.zip"]["refused"]["code"] == "DECOMPRESSED_TOO_LARGE"
        assert done["climb.zip"]["refused"]["code"] == "FILE_REFUSED" and ".." in done["climb.zip"]["refused"]["text"]
        assert done["link.csv"]["refused"]["code"] == "FILE_REFUSED"
        assert "symbolic link" in done["link.csv"]["refused"]["text"]
        assert done["pipe.csv"]["refused"]["code"] == "FILE_REFUSED" and "FIFO" in done["pipe.csv"]["refused"]["text"]
        assert done["rows.csv.gz"]["refused"]["code"] == "COMPRESSED_NOT_ALLOWED"
        assert outside.read_bytes() == zjj_csv(3)  # the link's target was never touched nor moved
        assert os.path.islink(next((inbox_dir / "error").glob("*/link.csv")))  # moved as a link
        # The watcher still takes good files, compressed ones included where enabled.
        drop(inbox_dir, "good.csv.gz", gzip.compress(zjj_csv(5)))
        wait_for(lambda: any(r["file"] == "good.csv.gz" for r in receipts(inbox_dir, "archive")), 30)
        assert count_messages(hub, ZJJ_SYSTEM) == 5
        # The refusals are on the audit trail.
        with hub.engine.connect() as conn:
            codes = list(conn.scalars(select(Event.code).where(Event.kind == "REJECTED")))
        assert codes.count("FILE_REFUSED") == 3 and codes.count("DECOMPRESSED_TOO_LARGE") == 2
    finally:
        hub.stop()


def test_inbox_status_command(tmp_path):
    from click.testing import CliRunner

    from bus.cli import main
    from tests.conftest import Backend
    backend = Backend("embedded", f"sqlite:///{tmp_path / 'hub.db'}", "memory://")
    config = inbox_config(tmp_path, backend, {"zjj": zjj_inbox(tmp_path)})
    hub = Hub(load_settings(config, environ={})).start()
    try:
        inbox_dir = tmp_path / "inbox" / "zjj"
        drop(inbox_dir, "a.csv", zjj_csv(3))
        drop(inbox_dir, "b.csv", zjj_csv(3, bad={1: "case-type"}, tag="20261122"))
        wait_receipts(inbox_dir, 2)
    finally:
        hub.stop()
    drop(inbox_dir, "c.csv", zjj_csv(1))  # no hub running: it waits
    result = CliRunner().invoke(main, ["inbox", "status", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    [status] = json.loads(result.output)
    assert (status["waiting"], status["in_progress"], status["archived_today"], status["errors_today"]) == (1, 0, 1, 1)
    table = CliRunner().invoke(main, ["inbox", "status", "--config", str(config)])
    assert "zjj" in table.output and "ERRORS TODAY" in table.output
