"""The sealed chain's own Alembic branch ("replay"), found through the `huitong.migrations`
entry point."""
from pathlib import Path

from replay.models import Base

VERSIONS = Path(__file__).parent / "versions"
METADATA = Base.metadata
