"""The catalog's own Alembic branch ("catalog"), found by the hub through the
`huitong.migrations` entry point: its version scripts and the metadata they describe."""
from pathlib import Path

from catalog.models import Base

VERSIONS = Path(__file__).parent / "versions"
METADATA = Base.metadata
