"""Routes an operator paused (the console's pause and resume; workers read it).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('route_pauses',
    sa.Column('route', sa.String(length=80), nullable=False),
    sa.Column('paused_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('paused_by', sa.String(length=80), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('route', name=op.f('pk_route_pauses'))
    )


def downgrade() -> None:
    op.drop_table('route_pauses')
