"""The sealed chain at size: a log of N accepted messages (each with its body and three events,
RECEIVED, PUBLISHED and DELIVERED, as a routed message leaves them) written through the hub's
own log writers, then sealed from scratch (`audit seal`, the background sealer's work) and
verified whole (`audit verify`: every event re-hashed, every body re-hashed, every seal's
signature checked). Same run, for the ratio: reading the same events and bodies alone."""
from __future__ import annotations

import datetime as dt
import hashlib
import tempfile
import time
import uuid

from bench.publish import _dropped_after, _env, _fresh_pg

SYSTEM = "320382.scjgj.djxt"


def bench_audit(messages: int = 300_000) -> dict:
    from bus.database import make_engine, upgrade
    from bus.secret_box import SecretBox, new_key
    from replay.keys import SealKeys
    from replay.sealer import ChainSealer
    from replay.verify import default_jobs, verify_log

    database = _env("DATABASE_URL")
    url = _fresh_pg(database) if database else f"sqlite:///{tempfile.mkdtemp(prefix='huitong-audit-')}/log.db"
    out: dict = {"backend": "PostgreSQL" if database else "SQLite", "messages": messages}
    with _dropped_after(database, url):
        engine = make_engine(url)
        upgrade(engine)
        start = time.perf_counter()
        events = _fill(engine, messages)
        out["events"] = events
        out["fill_seconds"] = round(time.perf_counter() - start, 1)

        keys = SealKeys(engine, SecretBox(new_key()))
        sealer = ChainSealer(engine, keys)
        start = time.perf_counter()
        sealed = sealer.seal_all()
        seconds = time.perf_counter() - start
        assert sealed == events, (sealed, events)
        out["seal_events_per_s"] = round(events / seconds)

        start = time.perf_counter()
        report = verify_log(engine, keys.public_keys(), jobs=1)
        seconds = time.perf_counter() - start
        assert report.ok and report.events == events and report.unsealed == 0, report.findings[:3]
        out["verify_one_process_events_per_s"] = round(events / seconds)
        start = time.perf_counter()
        report = verify_log(engine, keys.public_keys(), jobs=default_jobs())
        seconds = time.perf_counter() - start
        assert report.ok and report.events == events and report.unsealed == 0, report.findings[:3]
        out["verify_jobs"] = default_jobs()
        out["verify_events_per_s"] = round(events / seconds)
        out["verify_bodies"] = report.bodies

        start = time.perf_counter()
        _read_only(engine)
        out["read_only_events_per_s"] = round(events / (time.perf_counter() - start))
        out["verify_one_process_over_read_ratio"] = round(
            out["verify_one_process_events_per_s"] / out["read_only_events_per_s"], 2)
        engine.dispose()
    return out


def _fill(engine, messages: int, chunk: int = 2000) -> int:
    """Messages in chunks, through the same writers as the exchange log's group commit."""
    from bus.log_writers import writer_for
    from bus.exchange_log import event_row
    from tests.helpers.messages import sample

    writer = writer_for(engine.dialect.name)
    template = sample("CaseResult-approved.xml")
    at = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    events = 0
    for first in range(0, messages, chunk):
        bodies, rows = {}, []
        for i in range(first, min(first + chunk, messages)):
            message_id = str(uuid.UUID(int=i + 1, version=4))
            body = template.replace(b"<hx:MessageId>", f"<hx:MessageId>{message_id}".encode(), 1)
            digest = hashlib.sha256(body).hexdigest()
            bodies[digest] = body
            moment = at + dt.timedelta(milliseconds=i)
            rows.append({"receipt_id": str(uuid.uuid4()), "source": SYSTEM, "message_id": message_id,
                         "type": "CaseResult", "schema_version": "1.0", "correlation_id": None, "target": None,
                         "routing_key": f"CaseResult.{SYSTEM}", "digest": digest, "sent_at": moment,
                         "received_at": moment, "published_at": moment,
                         "case_number": f"320382-{i // 4:010d}", "uscc": None, "citizen_id": None,
                         "project_code": None})
        with engine.begin() as conn:
            writer.insert_bodies(conn, bodies)
            stored = writer.insert_messages(conn, rows)
            batch = []
            for row, message in zip(stored, rows):
                moment = message["received_at"]
                batch += [
                    event_row("RECEIVED", moment, message_seq=row.seq, message_id=row.message_id, source=SYSTEM,
                              digest=row.digest, detail={"receipt_id": row.receipt_id}),
                    event_row("PUBLISHED", moment + dt.timedelta(milliseconds=3), message_seq=row.seq,
                              message_id=row.message_id, source=SYSTEM),
                    event_row("DELIVERED", moment + dt.timedelta(milliseconds=40), message_seq=row.seq,
                              message_id=row.message_id, source=SYSTEM, route="results-to-portal",
                              detail={"destination": "portal", "attempts": 1})]
            writer.append_events(conn, batch)
            events += len(batch)
    return events


def _read_only(engine) -> None:
    """The floor under verification: stream every event and read every body, no hashing."""
    from sqlalchemy import select

    from bus.models import MessageBody
    from replay.chain import events_from
    with engine.connect() as conn:
        for _ in conn.execution_options(stream_results=True, yield_per=2000).execute(events_from(1)):
            pass
        for _ in conn.execution_options(stream_results=True, yield_per=2000).execute(
                select(MessageBody.digest, MessageBody.content)):
            pass


def bench_seal_cost(messages: int = 20_000, rounds: int = 3) -> dict:
    """Acceptance with the background sealer on and off, alternating, same bodies: does sealing
    slow acceptance? (4 batched senders, accept -> published, each round a fresh database.)"""
    from concurrent.futures import ThreadPoolExecutor

    from bus.config import load_settings
    from bus.hub import Hub
    from tests.helpers.messages import case_results

    database, amqp = _env("DATABASE_URL"), _env("AMQP_URL")
    tmp = tempfile.mkdtemp(prefix="huitong-sealcost-")
    rates: dict[str, list[int]] = {"off": [], "on": []}
    for _ in range(rounds):
        for label, seal in (("off", "false"), ("on", "true")):
            url = _fresh_pg(database) if database else f"sqlite:///{tmp}/{label}-{len(rates[label])}.db"
            batch = case_results(messages)
            with _dropped_after(database, url):
                settings = load_settings(environ={"HUITONG_DATABASE_URL": url, "HUITONG_BROKER_URL": amqp or "memory://",
                                                  "HUITONG_AUDIT__SEAL": seal, "HUITONG_STATE_DIR": tmp})
                with Hub(settings).start() as hub:
                    chunks = [[body for _, body in batch[i:i + 250]] for i in range(0, len(batch), 250)]
                    start = time.perf_counter()
                    with ThreadPoolExecutor(4) as pool:
                        list(pool.map(lambda c: hub.acceptance.accept_many(c, system=SYSTEM), chunks))
                    while hub.log.unpublished_count():
                        time.sleep(0.01)
                    rates[label].append(round(messages / (time.perf_counter() - start)))
    median = {label: sorted(values)[len(values) // 2] for label, values in rates.items()}
    return {"messages": messages, "accept_to_published_msg_s_sealing_off": rates["off"],
            "accept_to_published_msg_s_sealing_on": rates["on"],
            "median_on_over_off": round(median["on"] / median["off"], 2)}
