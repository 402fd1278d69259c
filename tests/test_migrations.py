"""The Alembic migrations build exactly the tables the typed models declare (every branch: the
exchange log's, the catalog's, the seals'), on SQLite and PostgreSQL: a model changed without
its migration fails here, not in production."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bus.database import make_engine, migration_branches, upgrade
from bus.models import Base


def test_models_and_migrations_agree(backend):
    engine = make_engine(backend.database_url)
    upgrade(engine)
    metadatas = [Base.metadata, *(branch.METADATA for branch in migration_branches())]
    known = {name for metadata in metadatas for name in metadata.tables} | {"alembic_version"}
    with engine.connect() as conn:
        context = MigrationContext.configure(conn)
        differences = []
        for metadata in metadatas:
            for diff in compare_metadata(context, metadata):
                flat = diff[0] if isinstance(diff, list) else diff
                if flat[0] == "remove_table" and flat[1].name in known:
                    continue  # another branch's table
                if flat[0] == "remove_index" and flat[1].table.name not in metadata.tables:
                    continue
                differences.append(diff)
    engine.dispose()
    assert differences == []


def test_processes_starting_together_on_a_fresh_sqlite_file_all_come_up(tmp_path):
    """Several processes on one embedded database (a WSGI server's workers, `huitong worker`
    beside `huitong serve`) each find no schema at start; one upgrades, the others wait and
    find it current, instead of creating the same tables twice."""
    import subprocess
    import sys
    from tests.conftest import ROOT
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    code = ("import sys; from bus.database import make_engine, ensure_schema; "
            "ensure_schema(make_engine(sys.argv[1]), auto_upgrade=True)")
    procs = [subprocess.Popen([sys.executable, "-c", code, url], cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(e[-800:] for e in errors if e)
