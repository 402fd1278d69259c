"""The registry of department systems: identities X-Road style (`<region>.<department>.<system>`),
their encrypted secrets and the message types each may send (deny by default).

Registrations live in the database; the config file's `systems:` list seeds the ones the
database does not know yet. A running hub reads the registry through a short cache, so a
`huitong systems disable` reaches it within `soap.registry_cache_seconds`."""
from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bus.errors import HuitongError
from bus.models import System, UsedNonce
from bus.secret_box import SecretBox
from schemas.identifiers import check_region
from schemas.namespaces import MESSAGE_TYPES

_PART = re.compile(r"[a-z][a-z0-9_-]{0,39}")


class RegistryError(HuitongError):
    code = "SYSTEM_INVALID"


@dataclass(frozen=True, slots=True)
class SystemIdentity:
    """What the rest of the hub knows of a system. The secret stays inside the registry."""

    id: str
    name: str
    grants: frozenset[str]
    enabled: bool
    created_at: dt.datetime
    updated_at: dt.datetime

    def may_send(self, message_type: str) -> bool:
        return self.enabled and message_type in self.grants


def check_system_id(system_id: str) -> None:
    parts = system_id.split(".")
    if len(parts) != 3:
        raise RegistryError(f"system id {system_id!r} must be <region>.<department>.<system>, "
                            "e.g. 320382.scjgj.djxt")
    region, department, name = parts
    problem = check_region(region)
    if problem:
        raise RegistryError(f"system id {system_id!r}: {problem[1]}")
    for label, part in (("department", department), ("system", name)):
        if not _PART.fullmatch(part):
            raise RegistryError(f"system id {system_id!r}: the {label} part {part!r} must be lower-case "
                                "letters, digits, '-' or '_', starting with a letter")


# Not a message type: the system is another hub, which relays messages of other systems
# (their Source stays theirs); its message-type grants still apply.
FORWARD = "FORWARD"
# Reading the shared registries (catalog queries through SOAP and REST). Person data is the
# most restricted: READ_PERSON is its own grant, and ids and phones stay masked without UNMASK.
READ_GRANTS = ("READ_ENTERPRISE", "READ_PERSON", "READ_PROJECT", "READ_SERVICE_ITEM")
UNMASK = "UNMASK"
# Reading the whole exchange log (/api/v1/log): auditors' and supervisors' systems. Without it
# a system reads the log entries of its own messages only.
READ_LOG = "READ_LOG"
GRANTS = (*MESSAGE_TYPES, FORWARD, *READ_GRANTS, UNMASK, READ_LOG)


def check_grants(grants) -> frozenset[str]:
    unknown = sorted(set(grants) - set(GRANTS))
    if unknown:
        raise RegistryError(f"unknown grant(s) {', '.join(unknown)}; known: {', '.join(MESSAGE_TYPES)}, "
                            f"{FORWARD} (for another hub), {', '.join(READ_GRANTS)} and {UNMASK} (registries), "
                            f"{READ_LOG} (the whole exchange log)")
    return frozenset(grants)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class SystemRegistry:
    def __init__(self, engine: Engine, box: SecretBox, *, cache_seconds: float = 5.0):
        self.engine = engine
        self.box = box
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, SystemIdentity | None, str | None]] = {}
        # Each system's decrypted secret with the stored token it came from: decrypting (Fernet)
        # on every request was ~3 % of a SOAP push's CPU. A rotated secret is a new token and
        # replaces the old one here at its next request.
        self._secrets: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    # -- administration (the `huitong systems` commands) ----------------------------------
    def add(self, system_id: str, *, name: str, secret: str, grants) -> SystemIdentity:
        check_system_id(system_id)
        grants = check_grants(grants)
        _check_secret(secret)
        now = utcnow()
        row = System(id=system_id, name=name, secret_encrypted=self.box.encrypt(secret),
                     grants=json.dumps(sorted(grants)), enabled=True, created_at=now, updated_at=now)
        try:
            with Session(self.engine) as session, session.begin():
                session.add(row)
        except IntegrityError:
            raise RegistryError(f"system {system_id} is already registered") from None
        return self.get(system_id, fresh=True)

    def list(self) -> list[SystemIdentity]:
        with Session(self.engine) as session:
            return [_identity(row) for row in session.scalars(select(System).order_by(System.id))]

    def get(self, system_id: str, *, fresh: bool = False) -> SystemIdentity | None:
        return self._lookup(system_id, fresh=fresh)[0]

    def set_enabled(self, system_id: str, enabled: bool) -> SystemIdentity:
        return self._update(system_id, enabled=enabled)

    def grant(self, system_id: str, grants) -> SystemIdentity:
        return self._update(system_id, grants=json.dumps(sorted(check_grants(grants))))

    def rotate_secret(self, system_id: str, secret: str | None = None) -> str:
        """Replace the secret; returns the new one (generated when none is given)."""
        secret = secret or secrets.token_urlsafe(24)
        _check_secret(secret)
        self._update(system_id, secret_encrypted=self.box.encrypt(secret))
        return secret

    def _update(self, system_id: str, **values) -> SystemIdentity:
        with Session(self.engine) as session, session.begin():
            row = session.get(System, system_id)
            if row is None:
                raise RegistryError(f"no system {system_id} is registered")
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
        with self._lock:
            self._cache.pop(system_id, None)
        return self.get(system_id, fresh=True)

    def seed(self, seeds, environ) -> list[str]:
        """Register the config file's systems the database does not know; returns their ids."""
        added = []
        for seed in seeds:
            if self.get(seed.id, fresh=True) is not None:
                continue
            secret = environ.get(seed.secret_env) if seed.secret_env else seed.secret
            if not secret:
                raise RegistryError(f"systems: {seed.id} has no secret (set secret, or secret_env "
                                    "to the name of a variable that holds it)")
            try:
                self.add(seed.id, name=seed.name, secret=secret, grants=seed.grants)
            except RegistryError as exc:
                if "already registered" not in str(exc):  # another worker seeded it first
                    raise
            # The look-up above cached "unknown"; kept, it would refuse this system's requests
            # and files for cache_seconds when another worker won the race to seed it.
            with self._lock:
                self._cache.pop(seed.id, None)
            added.append(seed.id)
        return added

    # -- authentication (the adapters) ----------------------------------------------------
    def credentials(self, system_id: str) -> tuple[SystemIdentity | None, str | None]:
        """The identity and its secret, for checking a request's credentials."""
        identity, token = self._lookup(system_id)
        if not token:
            return identity, None
        known = self._secrets.get(system_id)
        if known is not None and known[0] == token:
            return identity, known[1]
        secret = self.box.decrypt(token)
        with self._lock:
            self._secrets[system_id] = (token, secret)  # only registered systems have a token
        return identity, secret

    def _lookup(self, system_id: str, *, fresh: bool = False):
        now = time.monotonic()
        if not fresh:
            cached = self._cache.get(system_id)
            if cached and now - cached[0] < self.cache_seconds:
                return cached[1], cached[2]
        with Session(self.engine) as session:
            row = session.get(System, system_id)
            identity, token = (_identity(row), row.secret_encrypted) if row else (None, None)
        with self._lock:
            if len(self._cache) > 10_000:  # unknown ids from a scan must not grow it forever
                self._cache.clear()
            self._cache[system_id] = (now, identity, token)
        return identity, token

    # -- replay protection ----------------------------------------------------------------
    def use_nonce(self, system_id: str, nonce: str) -> bool:
        """Record a nonce; False if it was seen before (a replay). Pushes record theirs in
        the exchange log's group commit instead; the log also forgets old ones."""
        try:
            with self.engine.begin() as conn:
                conn.execute(UsedNonce.__table__.insert().values(system_id=system_id, nonce=nonce, seen_at=utcnow()))
        except IntegrityError:
            return False
        return True


def _check_secret(secret: str) -> None:
    if len(secret) < 12:
        raise RegistryError("a system secret must be at least 12 characters")


def _identity(row: System) -> SystemIdentity:
    return SystemIdentity(row.id, row.name, frozenset(json.loads(row.grants)), row.enabled,
                          row.created_at, row.updated_at)
