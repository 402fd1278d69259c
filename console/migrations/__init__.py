"""The console's own Alembic branch ("console"), found through the `huitong.migrations`
entry point."""
from pathlib import Path

from console.models import Base

VERSIONS = Path(__file__).parent / "versions"
METADATA = Base.metadata
