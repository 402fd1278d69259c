"""A route as the router runs it: compiled from a checked route file (routes.loader).

Matching has two parts. `from` looks only at the message's type and source, which travel in
the broker headers, so most messages are decided without parsing. `when` evaluates XPath 1.0
predicates over the whole envelope."""
from __future__ import annotations

import fnmatch
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from lxml import etree

from routes.transforms import Transform

Predicate = Callable[[etree._Element], bool]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    first_delay: float = 2.0
    max_delay: float = 300.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): exponential,
        capped, with full jitter in its upper half so a recovering destination is not hit by
        every waiting message at once."""
        ceiling = min(self.max_delay, self.first_delay * 2 ** (attempt - 1))
        return ceiling / 2 + random.random() * ceiling / 2


@dataclass(frozen=True, slots=True)
class From:
    types: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()

    def matches(self, message_type: str, source: str) -> bool:
        if self.types and message_type not in self.types:
            return False
        if self.sources and not any(fnmatch.fnmatchcase(source, glob) for glob in self.sources):
            return False
        if self.regions and not source[:6].startswith(self.regions):
            return False
        if self.keys and not any(topic_matches(key, f"{message_type}.{source}") for key in self.keys):
            return False
        return True

    def binding_keys(self) -> list[str]:
        """Topic patterns at least as wide as this filter; the router then checks it exactly."""
        if self.keys:
            return sorted(set(self.keys))
        types = self.types or ("*",)
        sources = [_source_pattern(glob) for glob in self.sources] or ["#"]
        if self.regions and not self.sources:
            sources = [f"{region}.#" if len(region) == 6 else "#" for region in self.regions]
        return sorted({f"{t}.{s}" for t in types for s in sources})


def _source_pattern(glob: str) -> str:
    """320382.scjgj.* -> 320382.scjgj.*; a partial wildcard (3203*) widens its segment."""
    parts = glob.split(".")
    out = [p if not any(c in p for c in "*?[") else "*" for p in parts]
    return ".".join(out) if len(parts) == 3 else ".".join(out) + ".#"


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: * is one word, # is zero or more."""
    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and (p[0] == "*" or p[0] == k[0]) and match(p[1:], k[1:])
    return match(pattern.split("."), key.split("."))


@dataclass(frozen=True, slots=True)
class Target:
    """One `to` entry: a declared destination, or another route (forward)."""

    name: str  # destination name, or "route:<id>"
    transform: Transform | None = None
    forward_to: str | None = None  # route id when this forwards


@dataclass(frozen=True)
class Route:
    id: str
    description: str
    source_file: str
    from_: From
    when: Predicate | None
    transform: Transform | None
    targets: tuple[Target, ...]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    enabled: bool = True
    when_text: object = None  # as written, for `routes show`

    @property
    def needs_body(self) -> bool:
        return self.when is not None or self.transform is not None or any(t.transform for t in self.targets)

    def transform_for(self, target: Target) -> Transform | None:
        return target.transform or self.transform


def xpath_truth(value) -> bool:
    """XPath 1.0's boolean() of whatever an expression returned."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return value != 0 and not math.isnan(value)
    if isinstance(value, (list, str)):
        return len(value) > 0
    return bool(value)
