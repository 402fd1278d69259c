"""Merging an offered set of field values into a golden record, by the declared rules:
source authority per field first, then recency. Pure functions: the store reads the record,
merges, and writes what this returns.

`sources` is the record's provenance, kept compact because imports write millions of them:
{"origins": [[system, message_id, at], ...], "fields": {field: index into origins}}."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from catalog.authority import Authority


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an offered value comes from: a system, a message (or an import row) and the
    time the sender gave it (the envelope's SentAt), as ISO UTC so times compare as text."""

    system: str
    message_id: str
    at: str

    @classmethod
    def of(cls, system: str, message_id: str, at: dt.datetime) -> "Origin":
        return cls(system, message_id, at.astimezone(dt.timezone.utc).isoformat(timespec="microseconds"))


@dataclass(slots=True)
class Merged:
    values: dict[str, Any]
    sources: dict[str, Any]
    changes: dict[str, list] = field(default_factory=dict)  # field -> [old, new]
    conflicts: list[tuple[str, Any, str, Any]] = field(default_factory=list)  # field, kept, by, offered


_FRESH: dict[tuple, dict] = {}


def _fresh_sources(origin: Origin, names: tuple[str, ...]) -> dict:
    """The sources of a new record; records created alike share one (never mutated) object,
    so an import of a million rows holds and encodes a handful of them."""
    key = (origin, names)
    sources = _FRESH.get(key)
    if sources is None:
        if len(_FRESH) > 1000:
            _FRESH.clear()
        sources = _FRESH[key] = {"origins": [[origin.system, origin.message_id, origin.at]],
                                 "fields": dict.fromkeys(names, 0)}
    return sources


def origin_of(sources: dict, name: str) -> Origin | None:
    index = sources.get("fields", {}).get(name)
    return None if index is None else Origin(*sources["origins"][index])


def merge(record_type: str, values: dict[str, Any], sources: dict, offered: dict[str, Any],
          origin: Origin, authority: Authority) -> Merged:
    """values: the record's plain field values now ({} for a new record); offered: the plain
    values a message or an import row brings (None means it says nothing of that field)."""
    if not values and not sources:  # a new record: everything offered is taken (bulk imports)
        taken = {name: value for name, value in offered.items() if value is not None}
        return Merged(taken, _fresh_sources(origin, tuple(taken)) if taken else {},
                      {name: [None, value] for name, value in taken.items()})
    values = dict(values)
    fields = dict(sources.get("fields", {}))
    origins = [tuple(o) for o in sources.get("origins", [])]
    result = Merged(values, {})

    def take(name: str) -> None:
        triple = (origin.system, origin.message_id, origin.at)
        if triple not in origins:
            origins.append(triple)
        fields[name] = origins.index(triple)

    for name, value in offered.items():
        if value is None:
            continue
        current = values.get(name)
        kept_index = fields.get(name)
        if current is None or kept_index is None:
            values[name] = value
            result.changes[name] = [current, value]
            take(name)
            continue
        kept_system, _, kept_at = origins[kept_index]
        rank = authority.rank(record_type, name, origin.system)
        kept_rank = authority.rank(record_type, name, kept_system)
        if value == current:
            if rank < kept_rank:  # same value, better provenance
                take(name)
            continue
        if rank < kept_rank or (rank == kept_rank and origin.at >= kept_at):
            values[name] = value
            result.changes[name] = [current, value]
            take(name)
        elif rank > kept_rank:
            result.conflicts.append((name, current, kept_system, value))
        # else: an older message of equal authority; the newer value stands

    used = sorted(set(fields.values()))
    remap = {old: new for new, old in enumerate(used)}
    result.sources = {"origins": [list(origins[i]) for i in used],
                      "fields": {name: remap[i] for name, i in fields.items()}}
    return result
