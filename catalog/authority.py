"""Which system is authoritative for which registry field: the shipped catalog/authority.yaml
with the configuration's catalog.authority laid over it. A rank is the index of the first
pattern a system matches (0 is the most authoritative); a system matching none ranks last."""
from __future__ import annotations

import fnmatch
from pathlib import Path

import yaml

from bus.errors import ConfigError
from catalog.registries import RECORD_TYPES

SHIPPED = Path(__file__).with_name("authority.yaml")
UNLISTED = 1_000  # the rank of a system no pattern names


class Authority:
    def __init__(self, rules: dict[str, dict[str, list[str]]]):
        for record_type, fields in rules.items():
            if record_type not in RECORD_TYPES:
                raise ConfigError(f"catalog.authority: no registry {record_type!r}; "
                                  f"known: {', '.join(RECORD_TYPES)}")
            known = {f.name for f in RECORD_TYPES[record_type].fields}
            for field, patterns in fields.items():
                if field != "*" and field not in known:
                    raise ConfigError(f"catalog.authority.{record_type}: no field {field!r}; "
                                      f"known: {', '.join(sorted(known))}")
                if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                    raise ConfigError(f"catalog.authority.{record_type}.{field}: a list of system patterns")
        self.rules = rules
        self._ranks: dict[tuple[str, str, str], int] = {}

    @classmethod
    def from_settings(cls, settings) -> "Authority":
        rules = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
        for record_type, fields in settings.catalog.authority.items():
            rules.setdefault(record_type, {}).update(fields)
        return cls(rules)

    def patterns(self, record_type: str, field: str) -> list[str]:
        fields = self.rules.get(record_type, {})
        return fields.get(field, fields.get("*", []))

    def rank(self, record_type: str, field: str, system: str) -> int:
        key = (record_type, field, system)
        rank = self._ranks.get(key)
        if rank is None:
            patterns = self.patterns(record_type, field)
            rank = next((i for i, p in enumerate(patterns) if fnmatch.fnmatchcase(system, p)), UNLISTED)
            if len(self._ranks) > 100_000:
                self._ranks.clear()
            self._ranks[key] = rank
        return rank
