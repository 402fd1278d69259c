"""Who may use the console and what each role may do. Passwords are hashed with Argon2id
(argon2-cffi: the password-hashing competition's winner, with its parameters and salt kept in
the hash), never stored or logged as given. Every change is an event in the exchange log."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, func, insert, select, update

from bus.errors import HuitongError
from bus.exchange_log import event_row
from bus.models import Event
from console.models import ConsoleUser

# What each role may do; every signed-in user may view (masked) pages.
VIEW, ACT, AUDIT, ADMIN = "view", "act", "audit", "admin"
ROLES: dict[str, frozenset[str]] = {
    "operator": frozenset({VIEW, ACT}),            # retry, discard, pause and resume
    "auditor": frozenset({VIEW, AUDIT}),           # read-only: log search, verify, export, replay
    "admin": frozenset({VIEW, ACT, AUDIT, ADMIN}),  # and systems and users
}
MIN_PASSWORD = 10
_USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,59}$")
_hasher = PasswordHasher()
# Checked when the user does not exist, so a wrong name costs the same time as a wrong password.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class UserError(HuitongError):
    code = "VALUE_INVALID"


@dataclass(frozen=True)
class User:
    username: str
    role: str
    enabled: bool

    def may(self, permission: str) -> bool:
        return self.enabled and permission in ROLES.get(self.role, frozenset())


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password needs at least {MIN_PASSWORD} characters")


class UserStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def add(self, username: str, role: str, password: str, *, by: str) -> User:
        if not _USERNAME.match(username):
            raise UserError(f"user name {username!r}: lower-case letters, digits and . _ -, starting with a letter")
        self._check_role(role)
        check_password(password)
        now = _now()
        with self.engine.begin() as conn:
            if conn.scalar(select(ConsoleUser.username).where(ConsoleUser.username == username)):
                raise UserError(f"user {username} exists already", code="ALREADY_EXISTS")
            conn.execute(insert(ConsoleUser).values(username=username, role=role, password_hash=_hasher.hash(password),
                                                    enabled=True, created_at=now, updated_at=now))
            _record(conn, now, by, {"action": "add", "user": username, "role": role})
        return User(username, role, True)

    def list(self) -> list[User]:
        with self.engine.connect() as conn:
            return [User(r.username, r.role, r.enabled)
                    for r in conn.execute(select(ConsoleUser).order_by(ConsoleUser.username))]

    def get(self, username: str) -> User | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(ConsoleUser).where(ConsoleUser.username == username)).first()
        return User(r.username, r.role, r.enabled) if r else None

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(ConsoleUser)) or 0

    def set_role(self, username: str, role: str, *, by: str) -> None:
        self._check_role(role)
        self._change(username, by, {"role": role}, {"action": "role", "role": role})

    def set_enabled(self, username: str, enabled: bool, *, by: str) -> None:
        self._change(username, by, {"enabled": enabled}, {"action": "enable" if enabled else "disable"})

    def set_password(self, username: str, password: str, *, by: str) -> None:
        check_password(password)
        self._change(username, by, {"password_hash": _hasher.hash(password)}, {"action": "password"})

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password is right and the user enabled; None otherwise (one answer
        for every wrong case, so the sign-in page tells an attacker nothing)."""
        with self.engine.connect() as conn:
            r = conn.execute(select(ConsoleUser).where(ConsoleUser.username == username)).first()
        try:
            _hasher.verify(r.password_hash if r else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        if r is None or not r.enabled:
            return None
        if _hasher.check_needs_rehash(r.password_hash):  # parameters raised since it was set
            with self.engine.begin() as conn:
                conn.execute(update(ConsoleUser).where(ConsoleUser.username == username)
                             .values(password_hash=_hasher.hash(password)))
        return User(r.username, r.role, r.enabled)

    def _change(self, username: str, by: str, values: dict, detail: dict) -> None:
        now = _now()
        with self.engine.begin() as conn:
            changed = conn.execute(update(ConsoleUser).where(ConsoleUser.username == username)
                                   .values(**values, updated_at=now)).rowcount
            if not changed:
                raise UserError(f"no user {username}", code="NOT_FOUND")
            _record(conn, now, by, {**detail, "user": username})

    @staticmethod
    def _check_role(role: str) -> None:
        if role not in ROLES:
            raise UserError(f"role {role!r} is not one of {', '.join(ROLES)}")


def _record(conn, now: dt.datetime, by: str, detail: dict) -> None:
    conn.execute(insert(Event.__table__).values(event_row("USER_CHANGED", now, source=by, detail=detail)))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
