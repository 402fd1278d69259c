"""Chain anchors: where the sealed chain continues after retention removed its start.

Revision ID: r002
Revises: r001
Create Date: 2026-11-21
"""
from alembic import op
import sqlalchemy as sa


revision = 'r002'
down_revision = 'r001'
branch_labels = None
depends_on = None

Seq = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('chain_anchors',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('seal_id', Seq, nullable=False),
    sa.Column('seal_hash', sa.String(length=64), nullable=False),
    sa.Column('last_seq', Seq, nullable=False),
    sa.Column('archive', sa.String(length=200), nullable=False),
    sa.Column('archive_sha256', sa.String(length=64), nullable=False),
    sa.Column('events_removed', sa.Integer(), nullable=False),
    sa.Column('cut_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('by', sa.String(length=120), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_anchors'))
    )


def downgrade() -> None:
    op.drop_table('chain_anchors')
