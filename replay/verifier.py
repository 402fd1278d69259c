"""The exchange log's hash chain, as an auditor checks it: how an event and a seal are hashed,
and the checks on a run of seals and the events they cover.

Self-contained on purpose (the standard library and `cryptography` only): the hub seals with
it, `huitong audit verify` checks the database with it, and `huitong audit verify-bundle`
checks an exported archive with it on a machine that has nothing else of the hub.

    event   leaf = sha256(0x00 ‖ JSON array of the event's fields in EVENT_FIELDS order; `at` as
                   whole microseconds since 1970-01-01T00:00:00Z)
    seal    events_hash = sha256(0x01 ‖ leaf ‖ leaf ‖ …), the seal's events in log order
            seal_hash   = sha256(0x02 ‖ canonical JSON of the seal's header), the header
                          holding events_hash and the previous seal's hash (the chain)
            signature   = Ed25519(seal_hash) with the key named in the header
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Iterator

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

GENESIS = "0" * 64  # the previous hash of the first seal
FORMAT = 1
EVENT_FIELDS = ("seq", "kind", "at", "message_seq", "message_id", "source", "route", "code", "digest", "detail")


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode
_encode_string = json.encoder.encode_basestring  # what _encode writes a str as (C, when built)


def _canonical(value) -> bytes:
    return _encode(value).encode("utf-8")


def leaf(values: list) -> bytes:
    """The 32-byte hash of one event given as its EVENT_FIELDS values, in order."""
    return hashlib.sha256(b"\x00" + _encode_fields(values).encode("utf-8")).digest()


def _encode_fields(values: list) -> str:
    """_encode(values) for a list of ints, strings and None, the fields of every event,
    written out directly: a third of the cost of sealing an event was the encoder's set-up."""
    parts = []
    for value in values:
        kind = type(value)
        if kind is str:
            parts.append(_encode_string(value))
        elif kind is int:
            parts.append(int.__repr__(value))
        elif value is None:
            parts.append("null")
        else:  # anything else (never stored today) takes the general encoder
            return _encode(values)
    return "[" + ",".join(parts) + "]"


def event_leaf(event: dict) -> bytes:
    """The 32-byte hash of one event given as a dict; `at` in microseconds since the epoch."""
    return leaf([event[name] for name in EVENT_FIELDS])


def events_hash(leaves: bytes) -> str:
    return hashlib.sha256(b"\x01" + leaves).hexdigest()


@dataclass(frozen=True)
class SealHeader:
    """What a seal asserts: these events (seq first..last, without the skipped seqs, which no
    committed event held when it was made), after that previous seal, by that key."""

    id: int
    first_seq: int
    last_seq: int
    event_count: int
    skipped: tuple[tuple[int, int], ...]  # inclusive seq ranges
    events_hash: str
    prev_hash: str
    key_id: str
    sealed_at: str

    def as_dict(self) -> dict:
        """The header as JSON holds it (in a bundle's seals.jsonl, and hashed with the format)."""
        return {"id": self.id, "first_seq": self.first_seq, "last_seq": self.last_seq,
                "event_count": self.event_count, "skipped": [list(r) for r in self.skipped],
                "events_hash": self.events_hash, "prev_hash": self.prev_hash, "key_id": self.key_id,
                "sealed_at": self.sealed_at}

    @classmethod
    def from_dict(cls, data: dict) -> "SealHeader":
        return cls(id=data["id"], first_seq=data["first_seq"], last_seq=data["last_seq"],
                   event_count=data["event_count"], skipped=tuple(tuple(r) for r in data["skipped"]),
                   events_hash=data["events_hash"], prev_hash=data["prev_hash"], key_id=data["key_id"],
                   sealed_at=data["sealed_at"])

    def canonical(self) -> bytes:
        return _canonical({"format": FORMAT, **self.as_dict()})

    def hash(self) -> str:
        return hashlib.sha256(b"\x02" + self.canonical()).hexdigest()

    def covers(self, seq: int) -> bool:
        return self.first_seq <= seq <= self.last_seq and not any(a <= seq <= b for a, b in self.skipped)

    def position(self, seq: int) -> int:
        """Where a covered event's hash sits among the seal's leaves."""
        return seq - self.first_seq - sum(min(b, seq - 1) - a + 1 for a, b in self.skipped if a < seq)

    def expected_seqs(self) -> Iterator[int]:
        skipped = iter(self.skipped)
        gap = next(skipped, None)
        seq = self.first_seq
        while seq <= self.last_seq:
            if gap and gap[0] <= seq <= gap[1]:
                seq = gap[1] + 1
                gap = next(skipped, None)
                continue
            yield seq
            seq += 1


def key_id_of(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def read_public_keys(text: str) -> dict[str, bytes]:
    """key_id -> raw public key from an exported keys file (`audit keys export`, a bundle's
    keys.json); a key whose id does not match its bytes is refused rather than trusted."""
    try:
        keys = {k["key_id"]: bytes.fromhex(k["public_key"]) for k in json.loads(text)["keys"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a Huitong public keys file: {exc}") from None
    for key_id, raw in keys.items():
        if key_id_of(raw) != key_id:
            raise ValueError(f"key {key_id} in the keys file does not match its public key")
    return keys


@dataclass(frozen=True)
class Finding:
    """One thing wrong, named by where it is: an event's seq, a seal's id, a body's digest."""

    code: str
    text: str
    seq: int | None = None
    seal: int | None = None

    def __str__(self) -> str:
        where = f"event #{self.seq}" if self.seq is not None else f"seal {self.seal}" if self.seal is not None else "log"
        return f"{self.code} at {where}: {self.text}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    seals: int = 0
    events: int = 0
    bodies: int = 0
    first_seq: int | None = None
    last_sealed_seq: int | None = None
    unsealed: int = 0  # events after the last seal
    unsealed_first_seq: int | None = None
    unsealed_first_at: str | None = None
    anchor: dict | None = None  # where the chain starts after retention

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first(self) -> Finding | None:
        return self.findings[0] if self.findings else None


class ChainChecker:
    """Checks seals in order, each against the previous one and its signer's public key,
    and each seal's events (given as dicts with the EVENT_FIELDS, in seq order) against it.

    `check_seal` then `check_events` per seal; events the seal does not cover, and covered
    events that are missing, are findings with their seq. max_findings stops the noise of
    one early break (a deleted seal makes every later one look wrong)."""

    def __init__(self, public_keys: dict[str, bytes], *, start_hash: str = GENESIS, start_seal: int = 1,
                 max_findings: int = 50):
        self.keys = {key_id: Ed25519PublicKey.from_public_bytes(raw) for key_id, raw in public_keys.items()}
        self.prev_hash = start_hash
        self.next_id = start_seal
        self.report = Report()
        self.max_findings = max_findings

    @property
    def full(self) -> bool:
        return len(self.report.findings) >= self.max_findings

    def add(self, finding: Finding) -> None:
        if not self.full:
            self.report.findings.append(finding)

    def check_seal(self, header: SealHeader, seal_hash: str, signature: bytes) -> None:
        self.report.seals += 1
        if header.id != self.next_id:
            self.add(Finding("SEAL_MISSING", f"expected seal {self.next_id} next, found seal {header.id}: "
                             "seals were deleted or reordered", seal=header.id))
        if header.prev_hash != self.prev_hash:
            self.add(Finding("CHAIN_BROKEN", f"seal {header.id} follows {header.prev_hash[:16]}…, "
                             f"but the seal before it hashes to {self.prev_hash[:16]}…", seal=header.id))
        computed = header.hash()
        if computed != seal_hash:
            self.add(Finding("SEAL_ALTERED", f"seal {header.id}'s header hashes to {computed[:16]}…, "
                             f"not the stored {seal_hash[:16]}…", seal=header.id))
        key = self.keys.get(header.key_id)
        if key is None:
            self.add(Finding("SEAL_KEY_UNKNOWN", f"seal {header.id} names key {header.key_id}, which is not "
                             "among the hub's public keys", seal=header.id))
        else:
            try:
                key.verify(signature, bytes.fromhex(computed))
            except (InvalidSignature, ValueError):
                self.add(Finding("SEAL_SIGNATURE", f"seal {header.id}'s signature does not verify with key "
                                 f"{header.key_id}: a forged or altered seal", seal=header.id))
        self.prev_hash = computed
        self.next_id = header.id + 1
        self.report.last_sealed_seq = header.last_seq
        if self.report.first_seq is None:
            self.report.first_seq = header.first_seq

    def check_events(self, header: SealHeader, events: list[tuple[int, bytes, str]], *,
                     leaves: bytes | None = None) -> None:
        """events: (seq, leaf, kind) of the stored events with first_seq <= seq <= last_seq, in
        seq order. With the seal's stored leaves the altered event is named exactly; without
        them (or when they were changed), only that the seal's events differ."""
        self.report.events += len(events)
        if leaves is not None and (len(leaves) != 32 * header.event_count
                                   or events_hash(leaves) != header.events_hash):
            self.add(Finding("SEAL_ALTERED", f"seal {header.id}'s stored event hashes were changed",
                             seal=header.id))
            leaves = None  # compare the events as a whole instead
        expected = list(header.expected_seqs())
        if len(expected) != header.event_count:
            self.add(Finding("SEAL_ALTERED", f"seal {header.id} says {header.event_count} events, its range and "
                             f"skipped seqs hold {len(expected)}", seal=header.id))
        computed = b"".join(e[1] for e in events)
        if [e[0] for e in events] == expected:  # the usual case: all there, none inserted
            if events_hash(computed) == header.events_hash:
                return
            if leaves is None:
                self.add(Finding("EVENT_ALTERED", f"the events of seal {header.id} are not the ones it sealed",
                                 seal=header.id))
                return
        position_of = {seq: i for i, seq in enumerate(expected)}
        present, found = set(), []
        for seq, event_leaf_, kind in events:
            position = position_of.get(seq)
            if position is None:
                found.append(Finding("EVENT_NOT_SEALED", f"event #{seq} lies inside seal {header.id}'s range but "
                                     "the seal did not cover it: inserted after sealing", seq=seq, seal=header.id))
                continue
            present.add(seq)
            if leaves is not None and leaves[position * 32:(position + 1) * 32] != event_leaf_:
                found.append(Finding("EVENT_ALTERED", f"event #{seq} ({kind}) is not the event seal {header.id} "
                                     "sealed: a field was changed or events were swapped", seq=seq, seal=header.id))
        found += [Finding("EVENT_MISSING", f"event #{seq}, sealed by seal {header.id}, is not in the log",
                          seq=seq, seal=header.id) for seq in expected if seq not in present]
        for finding in sorted(found, key=lambda f: f.seq):  # in log order: the first named is the first
            self.add(finding)

    def check_body(self, digest: str, content: bytes | None, *, seq: int | None = None) -> None:
        """A body stored under its sha256: any changed byte changes the digest."""
        self.report.bodies += 1
        if content is None:
            self.add(Finding("BODY_MISSING", f"the body {digest[:16]}… an event names is not in the log", seq=seq))
        elif hashlib.sha256(content).hexdigest() != digest:
            self.add(Finding("BODY_ALTERED", f"the body stored as {digest[:16]}… no longer hashes to it", seq=seq))
