"""Engines and schema versions. SQLite runs in WAL mode; the hub upgrades an embedded
database itself and refuses to start on an older schema it was told not to touch."""
from __future__ import annotations

import contextlib
import fcntl
from importlib.metadata import entry_points
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from bus.errors import SchemaOutdated

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str, *, synchronous: str = "FULL") -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    # No pre-ping: it costs a round trip per transaction. A connection PostgreSQL dropped fails
    # its first statement, SQLAlchemy invalidates the pool, and the exchange log retries once.
    return create_engine(parsed, pool_size=10, max_overflow=10, pool_recycle=1800)


def version_locations() -> list[str]:
    """The exchange log's migrations, then each plug-in package's own branch (e.g. the
    catalog's registries), found through the `huitong.migrations` entry points."""
    return [str(MIGRATIONS / "versions"), *(str(branch.VERSIONS) for branch in migration_branches())]


def migration_branches() -> list:
    """Modules with VERSIONS (a folder of Alembic scripts) and METADATA (their tables)."""
    return [ep.load() for ep in sorted(entry_points(group="huitong.migrations"), key=lambda ep: ep.name)]


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("version_locations", " ".join(version_locations()))
    config.set_main_option("path_separator", "space")
    config.attributes["engine"] = engine
    return config


def head_revisions() -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revisions(engine: Engine) -> frozenset[str]:
    with engine.connect() as conn:
        return frozenset(MigrationContext.configure(conn).get_current_heads())


def upgrade(engine: Engine) -> None:
    command.upgrade(alembic_config(engine), "heads")


_MIGRATION_LOCK = 0x4875_6974  # pg advisory lock key ("Huit"): one upgrader at a time


@contextlib.contextmanager
def _upgrade_lock(engine: Engine):
    """One upgrader at a time when several processes start on a fresh database: the others
    wait, then find the schema current. PostgreSQL: an advisory lock. SQLite runs DDL outside
    the transaction its write lock guards, so a file lock beside the database (nothing to hold
    for an in-memory one, which only its own process sees)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK})
                conn.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.upgrade-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_schema(engine: Engine, *, auto_upgrade: bool) -> None:
    current, head = current_revisions(engine), head_revisions()
    if current == head:
        return
    if auto_upgrade:
        with _upgrade_lock(engine):
            if current_revisions(engine) != head:
                upgrade(engine)
        return
    raise SchemaOutdated(
        f"database schema is at {', '.join(sorted(current)) or 'nothing'}, this release needs "
        f"{', '.join(sorted(head))}: "
        "run `huitong db upgrade`")
