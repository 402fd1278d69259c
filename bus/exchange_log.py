"""The exchange log: the source of truth. Accepted messages and their RECEIVED events are
committed here before any sender is answered; the relay reads what is still unpublished.

Writes go through one committer thread that folds every acceptance waiting at that moment
into a single transaction (group commit; on PostgreSQL a batch of acceptances alone is a
single statement): the sender still waits for *its* commit, but a thousand senders share one
fsync instead of paying for a thousand."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import queue
import re
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass

from sqlalchemy import Engine, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from bus.envelope import Envelope
from bus.errors import FieldError, HuitongError, RejectedMessage, StoreUnavailable
from bus.log_writers import Nonce, event_row, writer_for
from bus.logs import get_logger
from bus.models import Event, HubState, Message, MessageBody
from bus.receipts import ACCEPTED, DUPLICATE, REJECTED, Receipt

log = get_logger("huitong.exchange_log")
VOLATILE_DRAINED = "volatile_broker_drained_seq"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class NonceReplayed(HuitongError):
    """The request's nonce was recorded before: a replay. Nothing of it was logged but that."""

    code = "WSSE_NONCE_REPLAYED"


@dataclass(slots=True)
class _Acceptance:
    envelope: Envelope
    future: Future
    nonce: Nonce | None = None


@dataclass(slots=True)
class _Rejection:
    rejection: RejectedMessage
    source: str | None
    body: bytes | None
    future: Future
    nonce: Nonce | None = None
    digest: str | None = None  # of the kept body


@dataclass(slots=True)
class _Published:
    """Messages the relay put on the wire, to be marked in the next group commit."""
    pending: list
    future: Future
    sent_at: dt.datetime  # when the relay began handing them to the broker
    nonce: None = None  # shares the queue with acceptances; carries no request nonce


@dataclass(frozen=True, slots=True)
class Pending:
    """A logged message the relay still has to put on the wire."""

    seq: int
    message_id: str
    source: str
    type: str
    routing_key: str
    correlation_id: str | None
    body: bytes


class ExchangeLog:
    def __init__(self, engine: Engine, *, max_batch: int = 500, keep_rejected_bodies_up_to: int = 1 << 20,
                 nonce_keep_seconds: float = 600.0, commit_linger: float = 0.0):
        self.engine = engine
        self.max_batch = max_batch
        self.commit_linger = commit_linger
        self.keep_rejected_bodies_up_to = keep_rejected_bodies_up_to
        self.nonce_keep_seconds = nonce_keep_seconds
        self._nonces_purged_at = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopping = False
        dialect = sqlite if engine.dialect.name == "sqlite" else postgresql
        self._insert = dialect.insert
        self._writer = writer_for(engine.dialect.name)
        # Told the newly committed messages (list[Pending]) after each commit: the relay's
        # fast path, which publishes them without reading them back from the database.
        self.on_commit = []

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> "ExchangeLog":
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="exchange-log-committer", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._stopping = True
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    # -- acceptance (any thread) ---------------------------------------------------------
    def submit(self, envelope: Envelope, *, nonce: Nonce | None = None) -> Future:
        """Queue an acceptance; the future resolves to its Receipt once committed. A request
        nonce is recorded in the same transaction, so replay protection costs no extra
        commit; a nonce seen before fails the future with NonceReplayed."""
        future: Future = Future()
        self._put(_Acceptance(envelope, future, nonce))
        return future

    def reject(self, rejection: RejectedMessage, *, source: str | None, body: bytes | None,
               nonce: Nonce | None = None) -> Receipt:
        """Log a refused message (REJECTED event) and return its receipt."""
        return self.submit_reject(rejection, source=source, body=body, nonce=nonce).result()

    def submit_reject(self, rejection: RejectedMessage, *, source: str | None, body: bytes | None,
                      nonce: Nonce | None = None) -> Future:
        """Queue a refusal; the future resolves to its Receipt once committed."""
        future: Future = Future()
        self._put(_Rejection(rejection, source, body, future, nonce))
        return future

    def _put(self, item) -> None:
        if self._thread is None:
            raise StoreUnavailable("the exchange log is not started")
        self._queue.put(item)

    # -- committer thread ----------------------------------------------------------------
    def _run(self) -> None:
        busy = False  # the last commit held more than one entry: the hub is under load
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = self._gather(item, self.commit_linger if busy else 0.0)
            busy = len(batch) > 1
            if not batch:
                continue
            try:
                try:
                    results, fresh = self._commit(batch)
                except DBAPIError as exc:
                    if not exc.connection_invalidated:
                        raise
                    results, fresh = self._commit(batch)  # the server dropped a pooled connection: once more
            except Exception as exc:  # the database is down or refused: nobody is told ACCEPTED
                log.error("log.commit_failed", error=str(exc), batch=len(batch))
                failure = StoreUnavailable(f"the exchange log could not commit: {exc.__class__.__name__}")
                for entry in batch:
                    entry.future.set_exception(failure)
                continue
            for entry, outcome in zip(batch, results):
                if isinstance(outcome, Exception):
                    entry.future.set_exception(outcome)
                else:
                    entry.future.set_result(outcome)
            if fresh:
                for callback in self.on_commit:
                    callback(fresh)

    def _gather(self, first, linger: float) -> list:
        """The first entry and whatever else is queued, up to max_batch; with a linger, also
        what arrives that long after the first. A stop (None) ends the batch and stays queued.
        An entry whose caller cancelled its future is left out; the others can no longer be
        cancelled (concurrent.futures' protocol), so answering them cannot fail."""
        batch = [first] if first.future.set_running_or_notify_cancel() else []
        deadline = time.monotonic() + linger
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            if item.future.set_running_or_notify_cancel():
                batch.append(item)
        return batch

    def _commit(self, batch: list) -> tuple[list, list[Pending]]:
        """Write the whole batch (nonces, bodies, new message rows, events) before anyone is
        answered: in one transaction, or for acceptances alone in one statement and then their
        duplicates' and replays' events. Returns each entry's Receipt (or exception) and the
        newly accepted messages."""
        now = utcnow()
        receipt_ids = dict(zip(map(id, batch), _random_uuids(len(batch))))
        results: dict[int, Receipt | Exception] = {}
        events: list[dict] = []
        purge = self.nonce_keep_seconds and now - self._nonces_purged_at > dt.timedelta(seconds=60)
        # Acceptances alone write with `store`, then at most the events of duplicates and
        # replays: each one atomic statement, committed as it runs (statements). A refusal's
        # evidence, a published mark or the nonce purge travel with them in one transaction.
        alone = not purge and all(isinstance(entry, _Acceptance) for entry in batch)
        with self._writer.statements(self.engine) if alone else self._writer.transaction(self.engine) as conn:
            for entry in batch:  # first: it needs no answer, so it travels with the rest
                if isinstance(entry, _Published):
                    self._mark_published(conn, entry.pending, entry.sent_at)
                    results[id(entry)] = None
            if purge:  # once a minute, forget nonces older than the window kept for replay checks
                self._writer.purge_nonces(conn, now - dt.timedelta(seconds=self.nonce_keep_seconds))
                self._nonces_purged_at = now
            requests = [e for e in batch if id(e) not in results]
            firsts, replays = _first_nonces(requests)
            repeated = set(map(id, replays))
            candidates = [e for e in requests if id(e) not in repeated]
            new_nonces, inserted = self._writer.store(
                conn, now, list(firsts), self._kept_bodies(candidates),
                [(_message_row(e.envelope, receipt_ids[id(e)], now), e.nonce)
                 for e in candidates if isinstance(e, _Acceptance)])
            replays += [entry for nonce, entry in firsts.items() if nonce not in new_nonces]
            for entry in replays:
                results[id(entry)] = NonceReplayed("this nonce was used before: a replayed request")
                events.append(event_row("REJECTED", now, source=entry.nonce[0], code=NonceReplayed.code,
                                     message_id=_message_id(entry), detail={"receipt_id": receipt_ids[id(entry)]}))
            admitted = [e for e in candidates if id(e) not in results]
            stored = self._stored(conn, admitted, inserted)
            resent = self._resent(conn, admitted, stored, receipt_ids)
            fresh: list[Pending] = []
            for entry in admitted:
                receipt_id = receipt_ids[id(entry)]
                if isinstance(entry, _Rejection):
                    results[id(entry)], event = _rejected(entry, receipt_id, now)
                else:
                    env = entry.envelope
                    row = stored[(env.source, env.message_id)]
                    results[id(entry)], event = _outcome(env, row, receipt_id, now, resent)
                    if event is None:  # newly logged: the writer wrote its RECEIVED event with the row
                        fresh.append(Pending(row.seq, env.message_id, env.source, env.type,
                                             env.routing_key, env.correlation_id, env.xml))
                        continue
                events.append(event)
            self._writer.append_events(conn, events)
        return [results[id(e)] for e in batch], fresh

    def _kept_bodies(self, entries: list) -> list:
        """((digest, content), nonce) of every body the batch keeps: each message's, and a
        refused one's as evidence (up to a size; hostile floods dedupe by digest)."""
        bodies = []
        for entry in entries:
            if isinstance(entry, _Acceptance):
                bodies.append(((entry.envelope.digest, entry.envelope.xml), entry.nonce))
            elif entry.body is not None and len(entry.body) <= self.keep_rejected_bodies_up_to:
                entry.digest = hashlib.sha256(entry.body).hexdigest()
                bodies.append(((entry.digest, entry.body), entry.nonce))
        return bodies

    def _stored(self, conn, admitted: list, inserted: list) -> dict:
        """The logged row of every admitted (source, message_id): RETURNING names the rows
        this batch inserted; only one that was already there needs a second look (a retry,
        or a reused id)."""
        stored = {(r.source, r.message_id): r for r in inserted}
        earlier = {(e.envelope.source, e.envelope.message_id) for e in admitted
                   if isinstance(e, _Acceptance)} - stored.keys()
        if earlier:
            stored.update(((r.source, r.message_id), r) for r in self._writer.find_messages(conn, list(earlier)))
        return stored

    def _resent(self, conn, batch: list, stored: dict, receipt_ids: dict) -> set[str]:
        """Digests of repeats that differ from the logged message only in SentAt: a sender
        (or the hub, for a typed push) stamps the time again on a retry; that is the same
        message, not a reused id. Looked at only when a repeat's bytes differ."""
        suspects = []
        for entry in batch:
            if isinstance(entry, _Acceptance):
                row = stored[(entry.envelope.source, entry.envelope.message_id)]
                if row.receipt_id != receipt_ids[id(entry)] and row.digest != entry.envelope.digest:
                    suspects.append((entry.envelope, row.digest))
        if not suspects:
            return set()
        logged = self._writer.bodies(conn, {d for _, d in suspects})
        return {env.digest for env, digest in suspects
                if digest in logged and _without_sent_at(logged[digest]) == _without_sent_at(env.xml)}

    # -- the relay's side ----------------------------------------------------------------
    def publish_pending(self, publish, limit: int, *, older_than: float = 0.0) -> int:
        """Hand up to `limit` unpublished messages, oldest first, to publish(list[Pending]);
        when it returns (the broker confirmed them all), record PUBLISHED. older_than leaves
        alone what was received in the last seconds (its own process's relay has it in memory).

        On PostgreSQL the rows stay locked (SKIP LOCKED) while publishing, so several relays
        share the work without publishing a message twice. SQLite has one writer and one relay,
        so it reads, publishes and records in separate short transactions; a crash between
        publish and record re-publishes, which consumers tolerate (same message id)."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.begin() as conn:
                pending = unpublished(conn, limit, older_than=older_than, lock=True)
                if pending:
                    sent_at = utcnow()
                    publish(pending)
                    self._mark_published(conn, pending, sent_at)
            return len(pending)
        with self.engine.connect() as conn:
            pending = unpublished(conn, limit, older_than=older_than)
        if pending:
            sent_at = utcnow()
            publish(pending)
            with self.engine.begin() as conn:
                self._mark_published(conn, pending, sent_at)
        return len(pending)

    def publish_fresh(self, pending: list[Pending], publish) -> tuple[int, Future | None]:
        """The relay's fast path: publish(list[Pending]) messages this process just committed,
        and record PUBLISHED. Returns how many went out and, where the record is still to be
        committed, its future.

        On PostgreSQL several processes share the log, and another one's scan may take a
        message whose fast path is late (a slow confirm, a loaded machine). So the rows still
        unpublished are first marked, with their PUBLISHED events in the same statement, which
        locks them until the transaction ends (a scan skips them; a scan already holding one
        makes the mark wait for it, then find it published), only those are published, and
        the transaction commits once the broker confirmed them: two relays never both publish
        a message, however late either is. Should the publish fail, the rollback takes back
        the marks and the events. SQLite has one relay, so the record rides in the next group
        commit instead of a transaction of its own."""
        if self.engine.dialect.name == "postgresql":
            with self._writer.transaction(self.engine) as conn:
                sent_at = utcnow()
                marked = self._writer.claim_unpublished(conn, [p.seq for p in pending], sent_at)
                claimed = [p for p in pending if p.seq in marked]
                if claimed:
                    publish(claimed)  # a failure rolls back the marks and their events
            return len(claimed), None
        sent_at = utcnow()
        publish(pending)
        return len(pending), self.mark_published(pending, sent_at)

    def mark_published(self, pending: list[Pending], sent_at: dt.datetime) -> Future:
        """Record PUBLISHED for messages the relay put on the wire from memory, in the next
        group commit (no transaction of its own). Should that commit fail, they stay
        unpublished in the log and the relay's scan sends them again."""
        future: Future = Future()
        self._put(_Published(pending, future, sent_at))
        return future

    def _mark_published(self, conn, pending: list[Pending], now: dt.datetime) -> None:
        """PUBLISHED at the moment the relay began to send, not when the broker confirmed: a
        route worker may deliver before the confirm arrives, and a lineage's hops must read
        in time order."""
        self._writer.mark_published(conn, [p.seq for p in pending], now)
        self._writer.append_events(conn, _published_events(pending, now))

    def unpublished_count(self) -> int:
        with self.engine.connect() as conn:
            return count_unpublished(conn)

    def oldest_unpublished_age(self) -> float:
        """Seconds the first unpublished message has waited (0 when none): the relay lag."""
        with self.engine.connect() as conn:
            first = first_unpublished_at(conn)
        return max(0.0, (utcnow() - first).total_seconds()) if first else 0.0

    # -- the embedded broker forgets on exit ----------------------------------------------
    def mark_volatile_drained(self) -> None:
        """After a clean stop, everything published so far has been consumed."""
        with self.engine.begin() as conn:
            top = conn.scalar(select(func.max(Message.seq)).where(Message.published_at.is_not(None))) or 0
            conn.execute(self._insert(HubState).values(key=VOLATILE_DRAINED, value=str(top))
                         .on_conflict_do_update(index_elements=["key"], set_={"value": str(top)}))

    def requeue_volatile(self) -> int:
        """On start with the in-memory broker: what was published after the last clean stop
        died with the old process, so it goes back to the relay's list."""
        with self.engine.begin() as conn:
            drained = int(conn.scalar(select(HubState.value).where(HubState.key == VOLATILE_DRAINED)) or 0)
            result = conn.execute(update(Message).where(Message.seq > drained,
                                                        Message.published_at.is_not(None))
                                  .values(published_at=None))
            return result.rowcount

    # -- reads ---------------------------------------------------------------------------
    def find_receipt(self, source: str, message_id: str) -> Receipt | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(Message.receipt_id, Message.message_id, Message.received_at)
                               .where(Message.source == source, Message.message_id == message_id.lower())).first()
        return Receipt(row.receipt_id, row.message_id, ACCEPTED, row.received_at) if row else None

    def find_rejection(self, source: str, message_id: str) -> Receipt | None:
        """The latest refusal of a message id from this source (when it never got in)."""
        with Session(self.engine) as session:
            event = session.scalars(select(Event).where(
                Event.kind == "REJECTED", Event.source == source, Event.message_id == message_id.lower())
                .order_by(Event.seq.desc()).limit(1)).first()
        if event is None:
            return None
        detail = json.loads(event.detail or "{}")
        errors = tuple(FieldError(e["path"], e["code"], e["text"]) for e in detail.get("errors", ()))
        return Receipt(detail.get("receipt_id", ""), event.message_id, REJECTED, None, errors)

    def case_messages(self, case_number: str) -> list:
        """Every accepted message of a case, in log order (message_id, type, source,
        received_at, published_at)."""
        with self.engine.connect() as conn:
            return list(conn.execute(
                select(Message.message_id, Message.type, Message.source, Message.received_at,
                       Message.published_at)
                .where(Message.case_number == case_number).order_by(Message.seq)))

    def tail(self, limit: int = 20, after_seq: int = 0) -> list[Event]:
        """The newest `limit` events, or with after_seq the next ones after it, in log order."""
        with Session(self.engine) as session:
            if after_seq:
                return list(session.scalars(select(Event).where(Event.seq > after_seq)
                                            .order_by(Event.seq).limit(limit)))
            return list(reversed(session.scalars(select(Event).order_by(Event.seq.desc()).limit(limit)).all()))


def read_unpublished_by_index(conn) -> None:
    """On PostgreSQL, have this transaction read the unpublished rows in a plain scan of their
    partial index. Every published mark leaves a dead entry there until VACUUM (the update
    takes the row out of the index's predicate), and a bitmap scan, which the planner likes
    for this index, visits each of them in the heap on every read: measured at 72,000 logged
    messages with autovacuum off, the relay's scan took 22 ms and 4,500 pages, four times a
    second. A plain index scan marks the entries it finds dead, so later scans step over them
    without the heap (0.9 ms) and the index sheds them as it fills."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")


def unpublished(conn, limit: int, *, older_than: float = 0.0, lock: bool = False) -> list[Pending]:
    """Up to `limit` unpublished messages in log order, those received in the last `older_than`
    seconds left out; with lock (PostgreSQL), locked for this transaction, skipping rows
    another relay holds."""
    query = (select(Message.seq, Message.message_id, Message.source, Message.type,
                    Message.routing_key, Message.correlation_id, MessageBody.content)
             .join(MessageBody, MessageBody.digest == Message.digest)
             .where(Message.published_at.is_(None)).order_by(Message.seq).limit(limit))
    if older_than:
        query = query.where(Message.received_at < utcnow() - dt.timedelta(seconds=older_than))
    if lock:
        query = query.with_for_update(of=Message, skip_locked=True, key_share=True)
    read_unpublished_by_index(conn)
    return [Pending(*row) for row in conn.execute(query)]


def relay_backlog(conn) -> tuple[int, dt.datetime | None]:
    """How many messages wait for the relay, and when the first of them (in log order) was
    received: the health checks' relay lag. Both read the unpublished rows' own index, never
    the whole log (min(received_at) alone is planned as a walk of received_at's index through
    every published message, 47 ms at 72,000 messages and growing with the log)."""
    count = count_unpublished(conn)
    return count, first_unpublished_at(conn) if count else None


def count_unpublished(conn) -> int:
    read_unpublished_by_index(conn)
    return conn.scalar(select(func.count()).select_from(Message).where(Message.published_at.is_(None)))


def first_unpublished_at(conn) -> dt.datetime | None:
    read_unpublished_by_index(conn)
    return conn.scalar(select(Message.received_at).where(Message.published_at.is_(None))
                       .order_by(Message.seq).limit(1))


def _published_events(pending: list[Pending], at: dt.datetime) -> list[dict]:
    return [event_row("PUBLISHED", at, message_seq=p.seq, message_id=p.message_id, source=p.source)
            for p in pending]


def _first_nonces(entries: list) -> tuple[dict, list]:
    """The first entry of each request nonce, and the later ones: a nonce twice in one
    batch is a replay before the database is asked."""
    firsts: dict[Nonce, object] = {}
    replays = []
    for entry in entries:
        if entry.nonce is not None:
            if entry.nonce in firsts:
                replays.append(entry)
            else:
                firsts[entry.nonce] = entry
    return firsts, replays


def _random_uuids(count: int) -> list[str]:
    """Version-4 UUIDs from one read of the system's random source: uuid.uuid4() makes a
    getrandom call each, which cost ~7 % of a bulk file's ingestion on the VM."""
    pool = os.urandom(16 * count)
    return [str(uuid.UUID(bytes=pool[i:i + 16], version=4)) for i in range(0, 16 * count, 16)]


def _message_row(env: Envelope, receipt_id: str, now: dt.datetime) -> dict:
    keys = env.keys
    return {"receipt_id": receipt_id, "source": env.source, "message_id": env.message_id,
            "type": env.type, "schema_version": env.schema_version, "correlation_id": env.correlation_id,
            "target": env.target, "routing_key": env.routing_key, "digest": env.digest,
            "sent_at": env.sent_at, "received_at": now, "published_at": None,
            "case_number": keys.case_number, "uscc": keys.uscc, "citizen_id": keys.citizen_id,
            "project_code": keys.project_code}


_SENT_AT = re.compile(rb"<(\w+:)?SentAt>[^<]*</(\w+:)?SentAt>")


def _without_sent_at(xml: bytes) -> bytes:
    return _SENT_AT.sub(b"", xml, count=1)


def _message_id(entry) -> str | None:
    return entry.envelope.message_id if isinstance(entry, _Acceptance) else _storable(entry.rejection.message_id)


def _storable(message_id: str | None) -> str | None:
    """A refused message's id as far as the log can index it: an id longer than a UUID is not
    one (the refusal says so) and would break the commit of the whole batch on PostgreSQL."""
    return message_id if message_id is None or len(message_id) <= 36 else None


def _rejected(entry: _Rejection, receipt_id: str, now: dt.datetime):
    rejection = entry.rejection
    receipt = Receipt(receipt_id, rejection.message_id, REJECTED, None, rejection.errors)
    event = event_row("REJECTED", now, message_id=_storable(rejection.message_id), source=entry.source,
                   code=rejection.code, digest=entry.digest, detail={
                       "receipt_id": receipt_id,
                       **({"given_message_id": rejection.message_id[:100]}
                          if rejection.message_id and len(rejection.message_id) > 36 else {}),
                       "errors": [{"path": e.path, "code": e.code, "text": e.text} for e in rejection.errors]})
    return receipt, event


def _outcome(env: Envelope, row, receipt_id: str, now, resent: set):
    """The receipt and the event to append; no event for a newly logged message, whose
    RECEIVED event the writer stores with its row."""
    if row.receipt_id == receipt_id:
        return Receipt(receipt_id, env.message_id, ACCEPTED, now), None
    if row.digest == env.digest or env.digest in resent:
        # The sender retried: same answer as the first time, and nothing new to route.
        return (Receipt(row.receipt_id, env.message_id, DUPLICATE, row.received_at),
                event_row("DUPLICATE", now, message_seq=row.seq, message_id=env.message_id,
                       source=env.source, code="DUPLICATE", digest=env.digest,
                       detail={"receipt_id": row.receipt_id}))
    error = FieldError("/Envelope/Header/MessageId", "MESSAGE_ID_REUSED",
                       f"message id {env.message_id} was accepted earlier with different content")
    return (Receipt(receipt_id, env.message_id, REJECTED, None, (error,)),
            event_row("REJECTED", now, message_id=env.message_id, source=env.source, code=error.code,
                   digest=env.digest, detail={"receipt_id": receipt_id, "errors": [
                       {"path": error.path, "code": error.code, "text": error.text}]}))
