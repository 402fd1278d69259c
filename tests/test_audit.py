"""The sealed exchange log: every single change an insider could make to the stored log (a
body byte, an event field, a deleted or swapped event, a seal) is found by `audit verify`
and named by position; an untouched log verifies clean. SQLite and PostgreSQL alike."""
from __future__ import annotations

import datetime
import json
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, func, insert, select, update

from bus.cli import main
from bus.database import make_engine
from bus.hub import Hub
from bus.models import Event, Message, MessageBody
from bus.secret_box import SecretBox
from replay.chain import header_of
from replay.keys import SealKeys, export_keys, read_keys_file
from replay.models import Seal
from replay.sealer import ChainSealer
from replay.verify import verify_log
from tests.conftest import SAMPLES
from tests.helpers.messages import case_results, sample, with_message_id

SYSTEM = "320382.scjgj.djxt"


def _log_some_traffic(hub, count: int = 12) -> None:
    """Accepted messages (RECEIVED, then PUBLISHED), a duplicate and two refusals."""
    batch = case_results(count)
    for _, data in batch:
        assert hub.accept(data, system=SYSTEM).status == "ACCEPTED"
    hub.accept(batch[0][1], system=SYSTEM)
    hub.accept((SAMPLES / "invalid" / "applicant-uscc.USCC_CHECK.xml").read_bytes(), system=SYSTEM)
    hub.accept(with_message_id(sample("CaseAccepted-enterprise.xml"))[1], system="320382.unknown.system")
    deadline = time.monotonic() + 20
    while hub.log.unpublished_count() and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture
def sealed(backend):
    settings = backend.settings(audit__seal="false")
    with Hub(settings) as hub:
        _log_some_traffic(hub)
    engine = make_engine(settings.effective_database_url)
    keys = SealKeys(engine, SecretBox.from_settings(settings))
    sealer = ChainSealer(engine, keys, max_events=7, gap_wait_seconds=0)
    assert sealer.seal_all() > 20
    yield engine, keys, sealer, settings
    engine.dispose()


def _verify(engine, keys, **kw):
    return verify_log(engine, keys.public_keys(), **kw)


def _row(engine, table, **where):
    with engine.connect() as conn:
        return conn.execute(select(table).filter_by(**where)).mappings().one()


def _set(engine, table, where: dict, values: dict):
    with engine.begin() as conn:
        conn.execute(update(table).filter_by(**where).values(**values))


def _events(engine):
    with engine.connect() as conn:
        return conn.execute(select(Event.__table__).order_by(Event.seq)).mappings().all()


def test_an_untouched_log_verifies_and_the_unsealed_tail_is_reported(sealed, backend):
    engine, keys, sealer, _ = sealed
    report = _verify(engine, keys)
    with engine.connect() as conn:
        events = conn.scalar(select(func.count()).select_from(Event))
        seals = conn.scalar(select(func.count()).select_from(Seal))
    assert report.ok, report.findings
    assert report.events == events and report.seals == seals >= 4 and report.unsealed == 0
    assert report.bodies >= 13  # the accepted bodies and the refused one kept as evidence

    with Hub(backend.settings()) as hub:  # sealing on: what it logs gets sealed in the background
        _log_some_traffic(hub, 3)
        deadline = time.monotonic() + 15
        while _verify(engine, keys).unsealed and time.monotonic() < deadline:
            time.sleep(0.2)
    assert _verify(engine, keys).unsealed == 0
    with Hub(backend.settings(audit__seal="false")) as hub:
        _log_some_traffic(hub, 2)
    report = _verify(engine, keys)
    assert report.ok and report.unsealed >= 4  # 2 RECEIVED, 2 PUBLISHED, and refusals
    assert report.unsealed_first_seq == report.last_sealed_seq + 1
    assert sealer.seal_all() == report.unsealed and _verify(engine, keys).unsealed == 0


def test_every_kind_of_tampering_is_found_and_named(sealed):
    engine, keys, _, _ = sealed
    events = _events(engine)
    received = next(e for e in events if e["kind"] == "RECEIVED")
    rejected = next(e for e in events if e["kind"] == "REJECTED" and e["digest"])

    def found(code, *, seq=None, seal=None):
        report = _verify(engine, keys)
        assert not report.ok
        first = report.first
        assert (first.code, first.seq if seq is not None else first.seal) == (code, seq if seq is not None else seal), \
            report.findings
        return report

    # One byte of a stored body, at its start, middle and end: named by the first event naming it.
    original = _row(engine, MessageBody, digest=received["digest"])["content"]
    for position in (0, len(original) // 2, len(original) - 2):
        altered = bytearray(original)
        altered[position] ^= 0x01
        _set(engine, MessageBody, {"digest": received["digest"]}, {"content": bytes(altered)})
        found("BODY_ALTERED", seq=received["seq"])
    _set(engine, MessageBody, {"digest": received["digest"]}, {"content": original})
    assert _verify(engine, keys).ok

    # Any field of an event.
    for column, value in [("source", "320382.other.system"), ("kind", "DELIVERED"), ("code", "X"),
                          ("detail", rejected["detail"].replace("USCC_CHECK", "USCC_CHECJ")),
                          ("at", rejected["at"].replace(microsecond=(rejected["at"].microsecond + 1) % 1_000_000)),
                          ("message_id", rejected["message_id"][:-1] + ("0" if rejected["message_id"][-1] != "0" else "1"))]:
        assert value != rejected[column]
        _set(engine, Event, {"seq": rejected["seq"]}, {column: value})
        found("EVENT_ALTERED", seq=rejected["seq"])
        _set(engine, Event, {"seq": rejected["seq"]}, {column: rejected[column]})
    assert _verify(engine, keys).ok

    # A message pointed at another body (both bodies intact).
    message = _row(engine, Message, seq=received["message_seq"])
    _set(engine, Message, {"seq": message["seq"]}, {"digest": rejected["digest"]})
    found("MESSAGE_ALTERED", seq=received["seq"])
    _set(engine, Message, {"seq": message["seq"]}, {"digest": message["digest"]})

    # Two events swapped (their contents trade seqs): the first of them is named.
    a, b = events[4], events[9]
    fields = [c for c in a.keys() if c != "seq"]
    _set(engine, Event, {"seq": a["seq"]}, {c: b[c] for c in fields})
    _set(engine, Event, {"seq": b["seq"]}, {c: a[c] for c in fields})
    report = found("EVENT_ALTERED", seq=a["seq"])
    assert [f.seq for f in report.findings] == [a["seq"], b["seq"]]
    _set(engine, Event, {"seq": a["seq"]}, {c: a[c] for c in fields})
    _set(engine, Event, {"seq": b["seq"]}, {c: b[c] for c in fields})

    # A deleted event.
    victim = events[11]
    with engine.begin() as conn:
        conn.execute(delete(Event).where(Event.seq == victim["seq"]))
    found("EVENT_MISSING", seq=victim["seq"])
    with engine.begin() as conn:
        conn.execute(insert(Event).values(**victim))
    assert _verify(engine, keys).ok

    # A seal: its header, its stored event hashes, its signature; a deleted seal.
    seal = _row(engine, Seal, id=3)
    forged_signature = seal["signature"][:-2] + ("00" if seal["signature"][-2:] != "00" else "01")
    for column, value, code in [("skipped", [[seal["first_seq"], seal["first_seq"]]], "SEAL_ALTERED"),
                                ("events_hash", "0" * 64, "SEAL_ALTERED"),
                                ("leaves", bytes([seal["leaves"][0] ^ 0xFF]) + seal["leaves"][1:], "SEAL_ALTERED"),
                                ("sealed_at", seal["sealed_at"].replace(year=2025), "SEAL_ALTERED"),
                                ("signature", forged_signature, "SEAL_SIGNATURE")]:
        assert value != seal[column]  # (a leaf starting with a zero byte once made "altering" it a no-op)
        _set(engine, Seal, {"id": 3}, {column: value})
        found(code, seal=3)
        _set(engine, Seal, {"id": 3}, {column: seal[column]})
    assert _verify(engine, keys).ok
    with engine.begin() as conn:
        conn.execute(delete(Seal).where(Seal.id == 3))
    found("SEAL_MISSING", seal=4)
    with engine.begin() as conn:
        conn.execute(insert(Seal).values(**seal))
    assert _verify(engine, keys).ok


def test_a_forged_chain_fails_against_the_exported_keys(sealed, tmp_path):
    """An insider who edits an event and re-seals everything with a key of their own passes a
    check against the database's keys table (which they also edited) but not against the
    auditor's exported copy of the hub's public keys."""
    engine, keys, _, settings = sealed
    exported = read_keys_file(export_keys(keys.listing()))
    with engine.begin() as conn:
        conn.execute(update(Event).where(Event.seq == 5).values(source="320382.forged.system"))
        conn.execute(delete(Seal))
    forger = SealKeys(engine, SecretBox.from_settings(settings))
    forger.rotate()  # a key of the insider's, made the active one
    ChainSealer(engine, forger, max_events=7).seal_all()
    assert _verify(engine, forger).ok  # the database now vouches for itself
    report = verify_log(engine, exported)
    assert report.first.code == "SEAL_KEY_UNKNOWN" and report.first.seal == 1


def _unsealed_log(backend, count: int):
    """Some traffic that no sealer has touched: the settings, and an engine on its log."""
    settings = backend.settings(audit__seal="false")
    with Hub(settings) as hub:
        _log_some_traffic(hub, count)
    return settings, make_engine(settings.effective_database_url)


def test_a_rolled_back_seq_is_skipped_and_an_event_committed_into_it_later_is_found(backend):
    settings, engine = _unsealed_log(backend, 3)
    try:
        events = _events(engine)
        gap = events[2]
        with engine.begin() as conn:  # as if its transaction had rolled back
            conn.execute(delete(Event).where(Event.seq == gap["seq"]))
        keys = SealKeys(engine, SecretBox.from_settings(settings))
        waiting = ChainSealer(engine, keys, gap_wait_seconds=60)
        assert waiting.seal_all() == 2  # seals up to the gap, then waits for it
        skipping = ChainSealer(engine, keys, gap_wait_seconds=0)
        assert skipping.seal_all() == len(events) - 3
        with engine.connect() as conn:
            second = header_of(conn.execute(select(Seal).where(Seal.id == 2)).one())
        assert second.skipped == ((gap["seq"], gap["seq"]),) and not second.covers(gap["seq"])
        assert [second.position(seq) for seq in second.expected_seqs()] == list(range(second.event_count))
        assert _verify(engine, keys).ok
        with engine.begin() as conn:  # a late (or inserted) event in the skipped seq
            conn.execute(insert(Event).values(**gap))
        report = _verify(engine, keys)
        assert (report.first.code, report.first.seq) == ("EVENT_NOT_SEALED", gap["seq"])
    finally:
        engine.dispose()


def test_a_hole_longer_than_a_seal_is_skipped_and_sealing_goes_on(backend):
    """Each round reads a bounded range of seqs (max_events of them); a hole at least that long
    (a large batch rolled back) must not leave the sealer reading an empty range for ever."""
    settings, engine = _unsealed_log(backend, 8)
    try:
        events = _events(engine)
        with engine.begin() as conn:  # as if a batch of events 4..10 had rolled back
            conn.execute(delete(Event).where(Event.seq.between(events[3]["seq"], events[9]["seq"])))
        keys = SealKeys(engine, SecretBox.from_settings(settings))
        sealer = ChainSealer(engine, keys, max_events=5, gap_wait_seconds=0)
        assert sealer.seal_all() == len(events) - 7
        with engine.connect() as conn:
            assert conn.scalar(select(func.max(Seal.last_seq))) == events[-1]["seq"]
            skipped = [tuple(r) for seal in conn.execute(select(Seal)).all() for r in header_of(seal).skipped]
        assert skipped == [(events[3]["seq"], events[9]["seq"])]
        assert _verify(engine, keys).ok
    finally:
        engine.dispose()


def test_a_sealing_round_ends_with_the_events_it_found_while_more_keep_coming(backend):
    """The background sealer calls seal_all once a second. Under steady load every round finds
    a few events logged since it read; sealing those at once, round after round, never ended
    while the load lasted (70 seals a second, each a transaction of its own, measured under
    SOAP load). They wait for the next call; a backlog or a hole still takes more rounds."""
    settings, engine = _unsealed_log(backend, 4)
    try:
        logged = len(_events(engine))

        class Busy(ChainSealer):  # one more event is logged each time a round has read (up to 20)
            more = 20

            def _events(self, conn, first):
                rows = super()._events(conn, first)
                if Busy.more:
                    Busy.more -= 1
                    with engine.begin() as writer:
                        writer.execute(insert(Event).values(kind="REJECTED", source=SYSTEM, code="SCHEMA_INVALID",
                                                            at=datetime.datetime.now(datetime.timezone.utc)))
                return rows

        keys = SealKeys(engine, SecretBox.from_settings(settings))
        assert Busy(engine, keys, gap_wait_seconds=0).seal_all() == logged
        assert Busy(engine, keys, max_events=5, gap_wait_seconds=0).seal_all() == 1  # the one logged meanwhile
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Seal)) == 2
        assert _verify(engine, keys).ok
    finally:
        engine.dispose()


@pytest.mark.services
def test_the_sealer_reads_only_the_new_events_on_a_table_never_analysed(postgres_url):
    """`seq >= next ... LIMIT n` was planned as a scan of the whole events table (PostgreSQL,
    with no statistics, takes `seq >= $1` for a third of it), every round of every sealer."""
    from sqlalchemy import text

    from tests.conftest import AMQP_URL, Backend
    settings = Backend("services", postgres_url, AMQP_URL).settings(audit__seal="false")
    with Hub(settings).start(relay=False) as hub:
        for _ in range(6):
            hub.acceptance.accept_many([data for _, data in case_results(500)], system=SYSTEM)
    engine = make_engine(settings.effective_database_url)
    try:
        sealer = ChainSealer(engine, SealKeys(engine, SecretBox.from_settings(settings)), max_events=10_000)
        with engine.connect() as conn:
            pages = conn.scalar(text("SELECT pg_relation_size('events') / 8192"))
            top = conn.scalar(select(func.max(Event.seq)))
            for _ in range(7):  # past psycopg's prepare threshold: the generic plan too
                before = conn.scalar(text("SELECT pg_stat_get_xact_blocks_fetched('events'::regclass)"))
                rows = sealer._events(conn, top - 9)
                read = conn.scalar(text("SELECT pg_stat_get_xact_blocks_fetched('events'::regclass)")) - before
                assert [row[0] for row in rows] == list(range(top - 9, top + 1))
                assert pages > 50 and read <= 5, f"{read} of the {pages} event pages read for 10 new events"
    finally:
        engine.dispose()


def test_cli_seal_verify_and_keys(backend, tmp_path):
    settings = backend.settings(audit__seal="false")
    with Hub(settings) as hub:
        _log_some_traffic(hub, 2)
    runner = CliRunner()
    env = backend.env()
    keys_file = tmp_path / "hub-keys.json"
    assert runner.invoke(main, ["audit", "keys", "export", "--out", str(keys_file)], env=env).exit_code == 0
    sealed = runner.invoke(main, ["audit", "seal"], env=env)
    assert sealed.exit_code == 0 and sealed.output.startswith("sealed ")
    ok = runner.invoke(main, ["audit", "verify", "--keys", str(keys_file)], env=env)
    assert ok.exit_code == 0 and ok.output.startswith("OK: 1 seals"), ok.output

    engine = make_engine(settings.effective_database_url)
    with engine.begin() as conn:
        conn.execute(update(Event).where(Event.seq == 3).values(code="EDITED"))
    engine.dispose()
    bad = runner.invoke(main, ["audit", "verify", "--keys", str(keys_file), "--json"], env=env)
    assert bad.exit_code == 1
    report = json.loads(bad.stdout)
    assert report["findings"][0]["code"] == "EVENT_ALTERED" and report["findings"][0]["seq"] == 3

    rotated = runner.invoke(main, ["audit", "keys", "rotate"], env=env)
    assert rotated.exit_code == 0
    listing = runner.invoke(main, ["audit", "keys", "list"], env=env).output.splitlines()
    assert len(listing) == 2 and "retired" in listing[0] and listing[1].endswith("active")
    assert runner.invoke(main, ["audit", "verify", "--since", "not-a-date"], env=env).exit_code == 2


def test_a_long_chain_is_verified_in_parallel_ranges_that_must_join(backend):
    settings = backend.settings(audit__seal="false")
    with Hub(settings) as hub:
        _log_some_traffic(hub, 10)
    engine = make_engine(settings.effective_database_url)
    try:
        keys = SealKeys(engine, SecretBox.from_settings(settings))
        ChainSealer(engine, keys, max_events=2).seal_all()
        with engine.connect() as conn:
            seals = conn.scalar(select(func.count()).select_from(Seal))
        assert seals >= 12
        whole, parallel = _verify(engine, keys), _verify(engine, keys, jobs=2)
        assert parallel.ok and (parallel.seals, parallel.events) == (whole.seals, whole.events)
        assert parallel.bodies >= whole.bodies  # a body named in both ranges is re-hashed in each
        late = _events(engine)[-3]
        _set(engine, Event, {"seq": late["seq"]}, {"route": "edited"})
        report = _verify(engine, keys, jobs=2)
        assert (report.first.code, report.first.seq) == ("EVENT_ALTERED", late["seq"])
        _set(engine, Event, {"seq": late["seq"]}, {"route": late["route"]})
        boundary = 1 + seals // 2  # where the second range starts
        for missing in (boundary - 1, boundary):
            seal = _row(engine, Seal, id=missing)
            with engine.begin() as conn:
                conn.execute(delete(Seal).where(Seal.id == missing))
            report = _verify(engine, keys, jobs=2)
            assert report.first.code == "SEAL_MISSING" and report.first.seal in (missing, missing + 1), report.findings
            with engine.begin() as conn:
                conn.execute(insert(Seal).values(**seal))
        assert _verify(engine, keys, jobs=2).ok
    finally:
        engine.dispose()


def test_verify_since_a_time_and_across_a_key_rotation(sealed):
    engine, keys, sealer, settings = sealed
    with engine.connect() as conn:
        first_seals = conn.scalar(select(func.count()).select_from(Seal))
    time.sleep(0.01)
    rotated_at = datetime.datetime.now(datetime.timezone.utc)
    keys.rotate()  # the seals made from now on are signed by the new key
    with Hub(settings) as hub:
        _log_some_traffic(hub, 4)
    assert sealer.seal_all() > 0
    exported = read_keys_file(export_keys(keys.listing()))
    assert len(exported) == 2
    whole = verify_log(engine, exported)
    assert whole.ok and whole.seals > first_seals
    recent = verify_log(engine, exported, since=rotated_at)
    assert recent.ok and recent.seals == whole.seals - first_seals
    # An edit in an old seal's events is outside a check since the rotation, and inside a whole one.
    original = _row(engine, Event, seq=2)["code"]
    with engine.begin() as conn:
        conn.execute(update(Event).where(Event.seq == 2).values(code="EDITED"))
    assert verify_log(engine, exported, since=rotated_at).ok
    assert verify_log(engine, exported).first.seq == 2
    # The old key alone no longer vouches for the new seals.
    old_only = {k: v for k, v in exported.items() if k != keys.signer().key_id}
    with engine.begin() as conn:
        conn.execute(update(Event).where(Event.seq == 2).values(code=original))
    assert verify_log(engine, old_only).first.code == "SEAL_KEY_UNKNOWN"


@pytest.mark.services
def test_on_postgresql_background_sealers_take_turns_instead_of_racing(postgres_url, tmp_path):
    """Every hub process and worker runs a sealer; on PostgreSQL one seals while the others
    skip their round, and another takes over once the lock is let go."""
    import types

    from sqlalchemy import text

    from replay.sealer import SEALING_LOCK, Sealer
    from tests.conftest import Backend

    settings = Backend("services", postgres_url, "memory://").settings(audit__seal="false",
                                                                       state_dir=str(tmp_path / "var"))
    with Hub(settings) as hub:
        _log_some_traffic(hub, 6)
        first, second = Sealer(hub), Sealer(types.SimpleNamespace(settings=settings, engine=hub.engine))
        holder = make_engine(settings.effective_database_url)
        try:
            with holder.connect() as conn:  # another process's sealer is in its turn
                assert conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": SEALING_LOCK})
                assert first.run_once() == 0 and second.run_once() == 0
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SEALING_LOCK})
            sealed = first.run_once()
            assert sealed > 10 and second.run_once() == 0  # nothing left for the second
            _log_some_traffic(hub, 2)
            assert second.run_once() > 0  # the lock was let go after the first's turn
            with hub.engine.connect() as conn:
                # (pg_locks is the server's: tests running beside this one hold their own)
                assert not conn.scalar(text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                    "WHERE l.locktype = 'advisory' AND d.datname = current_database() AND l.objid = :k"),
                    {"k": SEALING_LOCK})
            assert _verify(hub.engine, SealKeys(hub.engine, SecretBox.from_settings(settings))).ok
        finally:
            holder.dispose()


def test_an_event_leaf_is_the_hash_of_its_fields_as_compact_json_whatever_they_hold():
    """The leaf format auditors re-implement (replay/verifier.py): sha256(0x00 ‖ the JSON array
    of the fields, compact, non-ASCII as is). Fields that need escaping must hash the same."""
    import hashlib
    from replay.verifier import leaf
    awkward = ['', 'plain', '办件 受理', 'quote " and backslash \\', 'control \x00\x1f\x7f', 'line\u2028sep',
               'emoji 😀', '</script>', None, 0, -1, 2 ** 64 + 7]
    for i in range(len(awkward)):
        values = [i + 1] + [awkward[(i + k) % len(awkward)] for k in range(9)]
        expected = hashlib.sha256(b"\x00" + json.dumps(values, ensure_ascii=False, separators=(",", ":"))
                                  .encode("utf-8")).digest()
        assert leaf(values) == expected, values
