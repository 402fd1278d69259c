"""Supervision's own Alembic branch ("supervision"), found through the `huitong.migrations`
entry point."""
from pathlib import Path

from supervision.models import Base

VERSIONS = Path(__file__).parent / "versions"
METADATA = Base.metadata
