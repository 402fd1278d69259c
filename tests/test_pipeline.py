"""Acceptance -> exchange log -> relay -> exchange, on the embedded default and on real
RabbitMQ + PostgreSQL. The same test bodies run on both."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from bus.errors import BrokerUnavailable
from bus.hub import Hub
from bus.models import Event, Message
from bus.receipts import ACCEPTED, DUPLICATE, REJECTED
from bus.worker import Worker
from bus.broker import connect
from bus.topology import durable_queue
from tests.conftest import SAMPLES
from tests.helpers.capture import Capture
from tests.helpers.messages import case_results, sample, with_message_id

SYSTEM = "320382.scjgj.djxt"


def _events(hub, kind):
    with hub.engine.connect() as conn:
        return conn.execute(select(Event).where(Event.kind == kind).order_by(Event.seq)).all()


def _eventually(check, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_accepted_message_reaches_the_exchange_with_its_routing_key(backend):
    capture = Capture(backend.broker_url, "CaseResult.320382.#")
    try:
        with Hub(backend.settings()) as hub:
            message_id, data = with_message_id(sample("CaseResult-approved.xml"))
            receipt = hub.accept(data, system=SYSTEM)
            assert receipt.status == ACCEPTED and receipt.message_id == message_id
            seen = capture.collect({message_id})
        assert seen[message_id] == 1
        assert capture.routing_keys[message_id] == f"CaseResult.{SYSTEM}"
        assert b"<hx:MessageId>" + message_id.encode() in capture.bodies[message_id]
        assert len(_events(hub, "PUBLISHED")) == 1
    finally:
        capture.close()


def test_receipt_only_after_commit_and_duplicates_get_the_first_receipt(backend):
    with Hub(backend.settings()).start(relay=False) as hub:
        message_id, data = with_message_id(sample("CaseResult-approved.xml"))
        first = hub.accept(data, system=SYSTEM)
        with hub.engine.connect() as conn:  # a fresh connection sees it: it was committed
            row = conn.execute(select(Message).where(Message.message_id == message_id)).one()
        assert row.receipt_id == first.receipt_id
        again = hub.accept(data, system=SYSTEM)
        assert again.status == DUPLICATE and again.receipt_id == first.receipt_id
        assert again.accepted_at == first.accepted_at
        with hub.engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Message)) == 1
        assert len(_events(hub, "DUPLICATE")) == 1


@pytest.mark.services
def test_after_postgresql_drops_its_connections_the_next_acceptance_still_commits(postgres_url):
    """A server restart kills every pooled connection; the committer's pipelined transaction
    notices, takes a fresh pool and tries once more, so the sender is not told to retry."""
    from sqlalchemy import create_engine, text
    from tests.conftest import Backend
    with Hub(Backend("services", postgres_url, "memory://").settings()).start(relay=False) as hub:
        for _ in range(3):
            assert hub.accept(with_message_id(sample("CaseResult-approved.xml"))[1], system=SYSTEM).status == ACCEPTED
        admin = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
        with admin.connect() as conn:
            killed = conn.scalar(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                      "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        admin.dispose()
        assert killed >= 1
        receipt = hub.acceptance.accept(with_message_id(sample("CaseResult-approved.xml"))[1], system=SYSTEM,
                                        nonce=(SYSTEM, "a-fresh-nonce"))  # the SOAP path: nonces first
        assert receipt.status == ACCEPTED
        with hub.engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Message)) == 4


def test_a_replayed_nonce_logs_nothing_of_its_request_while_a_fresh_one_in_the_same_commit_is_accepted(backend):
    """Nonces are recorded in the same commit as the messages: a request whose nonce was used
    before (earlier, or earlier in the same group commit) leaves no message row and no body,
    only its REJECTED event, and a fresh request for the same message id beside it is taken."""
    import hashlib

    from bus.exchange_log import NonceReplayed
    from bus.models import MessageBody
    with Hub(backend.settings()).start(relay=False) as hub:
        _, first = with_message_id(sample("CaseResult-approved.xml"))
        assert hub.acceptance.accept(first, system=SYSTEM, nonce=(SYSTEM, "nonce-one")).status == ACCEPTED
        message_id, data = with_message_id(sample("CaseResult-approved.xml"))
        other_id, other = with_message_id(sample("CaseResult-rejected.xml"))
        envelope, other_envelope = (hub.acceptance.check(d, system=SYSTEM) for d in (data, other))
        # A backlog ahead keeps the committer busy, so the three below most likely share one
        # commit (what they must come to holds either way).
        log = hub.log
        backlog = [log.submit(hub.acceptance.check(body, system=SYSTEM)) for _, body in case_results(300)]
        replayed = log.submit(envelope, nonce=(SYSTEM, "nonce-one"))
        fresh = log.submit(envelope, nonce=(SYSTEM, "nonce-two"))
        repeated_in_batch = log.submit(other_envelope, nonce=(SYSTEM, "nonce-two"))
        assert all(f.result(timeout=30).status == ACCEPTED for f in backlog)
        for future in (replayed, repeated_in_batch):
            with pytest.raises(NonceReplayed):
                future.result(timeout=30)
        assert fresh.result(timeout=30).status == ACCEPTED
        with hub.engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Message).where(Message.message_id == message_id)) == 1
            assert conn.scalar(select(func.count()).select_from(Message).where(Message.message_id == other_id)) == 0
            assert conn.scalar(select(func.count()).select_from(MessageBody).where(
                MessageBody.digest == hashlib.sha256(other).hexdigest())) == 0
        assert [e.code for e in _events(hub, "REJECTED")] == ["WSSE_NONCE_REPLAYED"] * 2
        assert len([e for e in _events(hub, "RECEIVED") if e.message_id == message_id]) == 1


def test_reused_message_id_with_other_content_is_rejected_and_changes_nothing(backend):
    with Hub(backend.settings()).start(relay=False) as hub:
        message_id, data = with_message_id(sample("CaseResult-approved.xml"))
        assert hub.accept(data, system=SYSTEM).status == ACCEPTED
        _, other = with_message_id(sample("CaseResult-rejected.xml"), message_id)
        receipt = hub.accept(other, system=SYSTEM)
        assert receipt.status == REJECTED and receipt.errors[0].code == "MESSAGE_ID_REUSED"
        with hub.engine.connect() as conn:
            stored = conn.execute(select(Message.digest).where(Message.message_id == message_id)).scalar_one()
        import hashlib
        assert stored == hashlib.sha256(data).hexdigest()


def test_rejections_are_logged_with_their_codes(backend):
    with Hub(backend.settings()).start(relay=False) as hub:
        bad = (SAMPLES / "invalid" / "applicant-uscc.USCC_CHECK.xml").read_bytes()
        receipt = hub.accept(bad, system=SYSTEM)
        assert receipt.status == REJECTED and receipt.errors[0].code == "USCC_CHECK"
        hostile = (SAMPLES / "invalid" / "billion-laughs.XML_DOCTYPE_FORBIDDEN.xml").read_bytes()
        assert hub.accept(hostile, system=SYSTEM).errors[0].code == "XML_DOCTYPE_FORBIDDEN"
        mismatch = sample("PersonRecord-female.xml")
        assert hub.accept(mismatch, system=SYSTEM).errors[0].code == "SOURCE_MISMATCH"
        # a message id longer than a UUID: refused by the XSD, logged without breaking the commit
        # (PostgreSQL refused the whole batch's transaction once: StringDataRightTruncation)
        long_id = sample("CaseResult-approved.xml").replace(b"<hx:MessageId>", b"<hx:MessageId>x" * 1, 1)
        assert hub.accept(long_id, system=SYSTEM).errors[0].code == "XSD_INVALID"
        codes = [e.code for e in _events(hub, "REJECTED")]
        assert codes == ["USCC_CHECK", "XML_DOCTYPE_FORBIDDEN", "SOURCE_MISMATCH", "XSD_INVALID"]
        # ... and the hub still accepts good mail afterwards.
        assert hub.accept(with_message_id(sample("CaseResult-approved.xml"))[1], system=SYSTEM).ok


def test_concurrent_senders_share_commits_and_nothing_is_lost(backend):
    messages = case_results(400)
    capture = Capture(backend.broker_url)
    try:
        with Hub(backend.settings()) as hub:
            with ThreadPoolExecutor(32) as pool:
                receipts = list(pool.map(lambda m: hub.accept(m[1], system=SYSTEM), messages))
            assert {r.status for r in receipts} == {ACCEPTED}
            expected = {mid for mid, _ in messages}
            seen = capture.collect(expected, timeout=30)
        assert expected <= set(seen)
        with hub.engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Message)) == 400
            # Group commit: 400 acceptances took far fewer transactions (events share timestamps).
            assert conn.scalar(select(func.count(func.distinct(Event.at))).where(Event.kind == "RECEIVED")) < 400
    finally:
        capture.close()


def test_under_load_the_relay_sends_what_commits_during_its_linger_as_one_batch(backend):
    """relay.linger_seconds: after a batch the relay waits, so the messages of several group
    commits go out together (one claim, one commit, one confirm round) instead of one batch
    per commit; every one of them is still published, and once."""
    capture = Capture(backend.broker_url)
    try:
        with Hub(backend.settings(relay__linger_seconds=2)) as hub:
            batches: list[int] = []
            publish = hub.relay.publisher.publish_batch
            hub.relay.publisher.publish_batch = lambda pending: (batches.append(len(pending)), publish(pending))[1]
            messages = case_results(4)
            assert hub.accept(messages[0][1], system=SYSTEM).status == ACCEPTED
            assert _eventually(lambda: batches == [1])  # a quiet relay sends at once
            for _, data in messages[1:]:  # three commits while the relay lingers
                assert hub.accept(data, system=SYSTEM).status == ACCEPTED
            assert _eventually(lambda: sum(batches) == 4)
            assert batches == [1, 3]
            seen = capture.collect({mid for mid, _ in messages})
        assert all(seen[mid] == 1 for mid, _ in messages)
        assert len(_events(hub, "PUBLISHED")) == 4
    finally:
        capture.close()


def test_under_load_the_committer_lingers_so_acceptances_arriving_meanwhile_share_a_commit(backend):
    """log_store.commit_linger_seconds: after a commit of several acceptances, the next commit
    waits that long after its first one for more; a lone acceptance on a quiet hub never waits."""
    with Hub(backend.settings(log_store__commit_linger_seconds=2, relay__enabled=False)) as hub:
        commits: list[int] = []
        hub.log.on_commit.append(lambda fresh: commits.append(len(fresh)))
        first, *burst = case_results(6)
        started = time.monotonic()
        assert hub.accept(first[1], system=SYSTEM).status == ACCEPTED
        assert time.monotonic() - started < 1.5 and commits == [1]  # quiet: no linger
        # Two acceptances queue while the committer is held in a third's commit: the next takes both.
        entered, release, commit = threading.Event(), threading.Event(), hub.log._commit
        hub.log._commit = lambda batch: (entered.set(), release.wait(10), commit(batch))[2]
        held = hub.acceptance.submit(burst[0][1], system=SYSTEM)[0]
        assert entered.wait(10)
        queued = [hub.acceptance.submit(data, system=SYSTEM)[0] for _, data in burst[1:3]]
        release.set()
        assert [f.result(timeout=10).status for f in [held, *queued]] == [ACCEPTED] * 3
        hub.log._commit = commit
        assert commits == [1, 1, 2]  # the last commit held two: under load now
        spaced = []
        for _, data in burst[3:]:  # 0.2 s apart, within the linger of the first
            spaced.append(hub.acceptance.submit(data, system=SYSTEM)[0])
            time.sleep(0.2)
        assert [future.result(timeout=10).status for future in spaced] == [ACCEPTED] * 2
        assert commits == [1, 1, 2, 2]


def test_a_cancelled_async_push_is_still_committed_and_the_committer_carries_on(backend):
    """accept_async (the ASGI push) cancelled while its commit is under way, as when a server
    stops: the message is logged all the same and the committer goes on serving others."""
    import asyncio
    with Hub(backend.settings(relay__enabled=False)) as hub:
        (first_id, first), (_, second) = case_results(2)
        entered, release, commit = threading.Event(), threading.Event(), hub.log._commit
        hub.log._commit = lambda batch: (entered.set(), release.wait(10), commit(batch))[2]

        async def cancelled_push():
            task = asyncio.ensure_future(hub.acceptance.accept_async(first, system=SYSTEM))
            await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cancelled_push())
        release.set()
        assert hub.acceptance.submit(second, system=SYSTEM)[0].result(timeout=10).status == ACCEPTED  # alive
        assert hub.log.find_receipt(SYSTEM, first_id) is not None  # and logged the first


def test_crash_before_publish_loses_nothing(backend):
    """A hub that logged but never published (it died): the next hub's relay sends everything."""
    messages = case_results(50)
    dead = Hub(backend.settings(audit__seal="false")).start(relay=False)  # (no sealer left running either)
    for _, data in messages:
        assert dead.accept(data, system=SYSTEM).status == ACCEPTED
    dead.log.stop()  # no relay ran, no clean shutdown: as after kill -9
    capture = Capture(backend.broker_url)
    try:
        # Recovery at once: by default the scan leaves the last 5 s to a live accepter's relay.
        with Hub(backend.settings(relay__scan_grace_seconds=0)) as hub:
            seen = capture.collect({mid for mid, _ in messages})
            assert _eventually(lambda: hub.log.unpublished_count() == 0)
        assert {mid for mid, _ in messages} <= set(seen)
    finally:
        capture.close()


@pytest.mark.services
def test_two_hubs_never_both_publish_a_message_when_one_relay_is_late(postgres_url):
    """Gunicorn's workers are hubs on one database. The accepting hub's relay publishes from
    memory; the other's scan takes what is older than its grace. When the first is slower than
    that grace (a loaded machine, a slow confirm), each message still goes out once."""
    from tests.conftest import AMQP_URL, Backend
    backend = Backend("services", postgres_url, AMQP_URL)
    messages = case_results(40)
    capture = Capture(backend.broker_url, f"CaseResult.{SYSTEM}")
    try:
        with Hub(backend.settings(relay__scan_grace_seconds=0.2)) as other, \
                Hub(backend.settings()) as accepter:
            publish = accepter.relay.publisher.publish_batch

            def late_publish(batch):
                time.sleep(1.0)  # five times the other hub's grace
                publish(batch)

            accepter.relay.publisher.publish_batch = late_publish
            for _, data in messages:
                assert accepter.accept(data, system=SYSTEM).status == ACCEPTED
            assert _eventually(lambda: accepter.log.unpublished_count() == 0, timeout=30)
            time.sleep(1.5)  # a second copy would be on its way by now
            seen = capture.collect({mid for mid, _ in messages})
        assert {mid: seen[mid] for mid, _ in messages} == {mid: 1 for mid, _ in messages}
        assert other.relay.published_total + accepter.relay.published_total == len(messages)
    finally:
        capture.close()


@pytest.mark.services
def test_the_relay_and_the_lag_checks_read_the_unpublished_messages_not_the_whole_log(postgres_url):
    """Each published mark leaves a dead entry in the index of unpublished rows until VACUUM
    (this machine runs PostgreSQL with autovacuum off; a busy one gets there late). The relay's
    scan, four times a second in every process, and the relay lag of /readyz and the console
    must not visit every logged message each time, or the hub slows as its log grows."""
    from sqlalchemy import text

    from bus.database import make_engine
    from bus.exchange_log import first_unpublished_at, relay_backlog, unpublished
    from tests.conftest import AMQP_URL, Backend
    settings = Backend("services", postgres_url, AMQP_URL).settings()
    with Hub(settings) as hub:
        for start in range(0, 3000, 500):
            receipts = hub.acceptance.accept_many([data for _, data in case_results(500)], system=SYSTEM)
            assert {r.status for r in receipts} == {ACCEPTED}
        assert _eventually(lambda: hub.log.unpublished_count() == 0, timeout=30)
    # Read once the hub has stopped: a snapshot its own threads (pulse, sealer) still hold, on
    # a busy machine, would keep the entries from counting as dead to the first read.
    engine = make_engine(settings.effective_database_url)
    try:
        with engine.connect() as conn:
            pages = conn.scalar(text("SELECT pg_relation_size('messages') / 8192"))
            unpublished(conn, 500)  # whoever reads first learns that the entries are dead

            def heap_pages_read():
                return conn.scalar(text("SELECT pg_stat_get_xact_blocks_fetched('messages'::regclass)"))
            before = heap_pages_read()
            assert unpublished(conn, 500) == []
            assert relay_backlog(conn) == (0, None)
            assert first_unpublished_at(conn) is None
            read = heap_pages_read() - before
    finally:
        engine.dispose()
    assert pages > 100
    assert read < pages / 10, f"{read} of the log's {pages} pages read to find nothing unpublished"


def test_broker_outage_delays_but_does_not_lose(backend):
    """With the broker unreachable the relay keeps messages in the log and says so;
    once the broker is back they go out."""
    settings = backend.settings()
    messages = case_results(20)
    with Hub(settings).start(relay=False) as hub:
        for _, data in messages:
            hub.accept(data, system=SYSTEM)
        if backend.name == "services":
            from bus.broker import Publisher
            broken = Publisher("amqp://guest:guest@127.0.0.1:1//", confirm_timeout=2)
            with pytest.raises(BrokerUnavailable):
                hub.log.publish_pending(broken.publish_batch, 100)
            assert hub.log.unpublished_count() == 20
        capture = Capture(backend.broker_url)
        try:
            assert hub.relay.drain() == 20
            assert {m for m, _ in messages} <= set(capture.collect({m for m, _ in messages}))
            assert hub.log.unpublished_count() == 0
        finally:
            capture.close()


def test_worker_acks_only_after_the_handler_committed(backend, tmp_path):
    """A failing handler gets the same messages again; a good one sees each once."""
    quorum = backend.name == "services"
    name = f"test.worker.{tmp_path.name[-20:]}".replace("_", "-")
    queue = durable_queue(name, "CaseResult.#", quorum=quorum)
    conn = connect(backend.broker_url)
    queue(conn.channel()).declare()
    messages = case_results(30)
    attempts = {"n": 0}
    handled: list[str] = []
    done = threading.Event()

    def handler(batch):
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise RuntimeError("database down for the first batch")
        handled.extend(d.message_id for d in batch)
        if {m for m, _ in messages} <= set(handled):
            done.set()

    worker = Worker(connect(backend.broker_url), [queue], handler, prefetch=50, batch_size=10)
    try:
        with Hub(backend.settings()) as hub:
            worker.start()
            for _, data in messages:
                hub.accept(data, system=SYSTEM)
            assert done.wait(30), f"handled {len(set(handled))} of 30"
        assert {m for m, _ in messages} <= set(handled)
        assert attempts["n"] >= 2
    finally:
        worker.stop()
        queue(conn.channel()).delete()
        conn.release()
