"""`huitong audit verify`: re-compute the chain over the database and name the first thing
wrong. One pass in log order: seals (streamed) merged with the events (streamed, each with
the body it names and, for RECEIVED, its message row's digest), so every event and body is
re-hashed and every message row checked against what was sealed. Events after the last seal
are reported as the unsealed tail.

A long chain is cut into ranges of seals checked in parallel processes (hashing is CPU; the
database streams to each its own part); where two ranges meet, the hash one ended with must be
the previous hash the next one starts from."""
from __future__ import annotations

import datetime as dt
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from sqlalchemy import Engine, func, select

from replay.chain import chain_head, events_with_evidence_from, header_of, iso_utc, latest_anchor, row_leaf
from replay.models import Seal
from replay.verifier import GENESIS, ChainChecker, Finding, Report


MIN_SEALS_PER_JOB = 4


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def verify_log(engine: Engine, public_keys: dict[str, bytes], *, since: dt.datetime | None = None,
               max_findings: int = 50, jobs: int = 1) -> Report:
    """since: start at the first seal made at or after it, trusting the stored hash of the seal
    before (a full run, without since, checks that one too). jobs: processes for a long chain."""
    with engine.connect() as conn:
        start_id, start_hash, anchor = 1, GENESIS, latest_anchor(conn)
        if anchor is not None:  # retention archived the start; the chain continues from its anchor
            start_id, start_hash = anchor.seal_id + 1, anchor.seal_hash
        if since is not None:
            first = conn.execute(select(Seal.id, Seal.prev_hash).where(Seal.sealed_at >= since)
                                 .order_by(Seal.id).limit(1)).first()
            if first is not None:
                start_id, start_hash = first.id, first.prev_hash
            else:
                start_id = (conn.scalar(select(Seal.id).order_by(Seal.id.desc()).limit(1)) or 0) + 1
        top = conn.scalar(select(func.max(Seal.id))) or 0
    span = top - start_id + 1
    jobs = max(1, min(jobs, span // MIN_SEALS_PER_JOB))
    anchored = {"seal_id": anchor.seal_id, "seal_hash": anchor.seal_hash, "last_seq": anchor.last_seq,
                "archive": anchor.archive, "archive_sha256": anchor.archive_sha256} if anchor else None
    if jobs == 1:
        report = _verify_range(engine, public_keys, start_id, None, start_hash, max_findings)
        report.anchor = anchored
        return report
    bounds = [start_id + span * i // jobs for i in range(jobs)] + [top + 1]
    url = engine.url.render_as_string(hide_password=False)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(_verify_part, [(url, public_keys, bounds[i], bounds[i + 1] if i + 1 < jobs else None,
                                              start_hash if i == 0 else None, max_findings) for i in range(jobs)]))
    report = Report()
    for i, (part, end_hash, next_id, entry_hash) in enumerate(parts):
        if i:  # where two ranges meet
            _, previous_end, previous_next, _ = parts[i - 1]
            if previous_next != bounds[i]:
                report.findings.append(Finding("SEAL_MISSING", f"seals {previous_next}–{bounds[i] - 1} are missing",
                                               seal=previous_next))
            elif entry_hash is not None and previous_end != entry_hash[1] and entry_hash[0] == bounds[i]:
                # (when the range's first seal is itself missing, the range reports SEAL_MISSING)
                report.findings.append(Finding("CHAIN_BROKEN", f"seal {bounds[i]} does not follow the seal "
                                               "before it", seal=bounds[i]))
        report.findings += part.findings
        report.seals += part.seals
        report.events += part.events
        report.bodies += part.bodies
        report.first_seq = report.first_seq if report.first_seq is not None else part.first_seq
        report.last_sealed_seq = part.last_sealed_seq or report.last_sealed_seq
        report.unsealed, report.unsealed_first_seq, report.unsealed_first_at = (
            part.unsealed, part.unsealed_first_seq, part.unsealed_first_at)
    report.findings = report.findings[:max_findings]
    report.anchor = anchored
    return report


def _verify_part(args) -> tuple[Report, str, int, tuple[int, str] | None]:
    """One range of seals, in a worker process: its report, the hash it ended with, the seal id
    it expected next, and its first seal's id and the previous hash it names (for the stitch)."""
    url, public_keys, start_id, end_id, start_hash, max_findings = args
    from bus.database import make_engine
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            entry = conn.execute(select(Seal.id, Seal.prev_hash).where(Seal.id >= start_id).order_by(Seal.id)
                                 .limit(1)).first()
        checker = _verify_range(engine, public_keys, start_id, end_id,
                                start_hash if start_hash is not None else entry.prev_hash if entry else GENESIS,
                                max_findings, checker_out=True)
        return checker.report, checker.prev_hash, checker.next_id, tuple(entry) if entry else None
    finally:
        engine.dispose()


def _verify_range(engine: Engine, public_keys: dict[str, bytes], start_id: int, end_id: int | None,
                  start_hash: str, max_findings: int, *, checker_out: bool = False):
    """Seals start_id..end_id-1 (to the last when end_id is None, with the unsealed tail)."""
    with engine.connect() as seals_conn, engine.connect() as events_conn, engine.connect() as conn:
        checker = ChainChecker(public_keys, start_hash=start_hash, start_seal=start_id, max_findings=max_findings)
        first_seq = conn.scalar(select(Seal.first_seq).where(Seal.id >= start_id).order_by(Seal.id).limit(1))
        if first_seq is None:  # nothing sealed in the window: all of it is the unsealed tail
            first_seq = chain_head(conn).next_seq
        query = select(Seal).where(Seal.id >= start_id).order_by(Seal.id)
        until = None
        if end_id is not None:
            query = query.where(Seal.id < end_id)
            until = conn.scalar(select(func.max(Seal.last_seq)).where(Seal.id >= start_id, Seal.id < end_id))
        seals = seals_conn.execution_options(stream_results=True, yield_per=50).execute(query)
        events = iter(events_conn.execution_options(stream_results=True, yield_per=5000).execute(
            events_with_evidence_from(first_seq, until)))
        checked_bodies: set[str] = set()
        row = next(events, None)
        for seal in seals:
            header = header_of(seal)
            checker.check_seal(header, seal.seal_hash, bytes.fromhex(seal.signature))
            covered = []
            first, last = header.first_seq, header.last_seq
            while row is not None and row[0] <= last:
                seq, kind, digest = row[0], row[1], row[8]
                if seq < first:
                    checker.add(Finding("EVENT_NOT_SEALED", f"event #{seq} lies between seals", seq=seq))
                else:
                    covered.append((seq, row_leaf(row), kind))
                    if digest and digest not in checked_bodies:
                        checked_bodies.add(digest)
                        checker.check_body(digest, row.body, seq=seq)
                    if kind == "RECEIVED" and row.message_seq and row.message_digest != digest:
                        checker.add(Finding("MESSAGE_ALTERED", f"message {row.message_id} no longer points at "
                                            "the body its RECEIVED event sealed", seq=seq))
                row = next(events, None)
            checker.check_events(header, covered, leaves=seal.leaves)
            if len(checked_bodies) > 200_000:  # bounded memory; a repeat later is just re-hashed
                checked_bodies.clear()
            if checker.full:
                break
        report = checker.report
        while end_id is None and row is not None and not checker.full:
            if report.unsealed == 0:
                report.unsealed_first_seq, report.unsealed_first_at = row.seq, iso_utc(row.at)
            report.unsealed += 1
            row = next(events, None)
    return checker if checker_out else report
