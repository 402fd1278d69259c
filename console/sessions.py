"""Sign-in sessions: a random token in an HttpOnly, SameSite=Strict cookie; the database keeps
its SHA-256, the user, a CSRF token and when it was last used. A session ends when it has been
idle too long, when it is too old, when its user signs out, or when the user is disabled."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update

from console.models import ConsoleSession, ConsoleUser
from console.users import User

COOKIE = "huitong_session"
TOUCH_EVERY = dt.timedelta(seconds=30)  # last_seen_at is written at most this often


@dataclass(frozen=True)
class Session:
    token_hash: str
    user: User
    csrf_token: str
    created_at: dt.datetime

    def csrf_ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given, self.csrf_token)


class SessionStore:
    def __init__(self, engine: Engine, *, idle: dt.timedelta, max_age: dt.timedelta):
        self.engine = engine
        self.idle = idle
        self.max_age = max_age

    def open(self, user: User) -> tuple[str, Session]:
        """A new session; returns the cookie's token (shown once, never stored) and the session."""
        token = secrets.token_urlsafe(32)
        now = _now()
        session = Session(_hash(token), user, secrets.token_urlsafe(32), now)
        with self.engine.begin() as conn:
            # Expired sessions of anyone go when someone signs in: the table stays small.
            conn.execute(delete(ConsoleSession).where(ConsoleSession.last_seen_at < now - self.idle))
            conn.execute(insert(ConsoleSession).values(token_hash=session.token_hash, username=user.username,
                                                       csrf_token=session.csrf_token, created_at=now,
                                                       last_seen_at=now))
        return token, session

    def find(self, token: str | None) -> Session | None:
        """The live session of this cookie token, or None (unknown, expired, user disabled)."""
        if not token:
            return None
        now = _now()
        with self.engine.connect() as conn:
            row = conn.execute(select(ConsoleSession.token_hash, ConsoleSession.csrf_token, ConsoleSession.created_at,
                                      ConsoleSession.last_seen_at, ConsoleUser.username, ConsoleUser.role,
                                      ConsoleUser.enabled)
                               .join(ConsoleUser, ConsoleUser.username == ConsoleSession.username)
                               .where(ConsoleSession.token_hash == _hash(token))).first()
        if row is None:
            return None
        if not row.enabled or now - row.last_seen_at > self.idle or now - row.created_at > self.max_age:
            self.close(token)
            return None
        if now - row.last_seen_at > TOUCH_EVERY:
            with self.engine.begin() as conn:
                conn.execute(update(ConsoleSession).where(ConsoleSession.token_hash == row.token_hash)
                             .values(last_seen_at=now))
        return Session(row.token_hash, User(row.username, row.role, row.enabled), row.csrf_token, row.created_at)

    def close(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == _hash(token)))

    def close_all(self, username: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(ConsoleSession).where(ConsoleSession.username == username))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
