"""The sealed chain: the hub's Ed25519 keys and the seals over the exchange log's events.

Revision ID: r001
Revises:
Create Date: 2026-11-21
"""
from alembic import op
import sqlalchemy as sa


revision = 'r001'
down_revision = None
branch_labels = ('replay',)
depends_on = None

Seq = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('seal_keys',
    sa.Column('key_id', sa.String(length=16), nullable=False),
    sa.Column('public_key', sa.String(length=64), nullable=False),
    sa.Column('private_encrypted', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('key_id', name=op.f('pk_seal_keys'))
    )
    op.create_table('seals',
    sa.Column('id', Seq, autoincrement=False, nullable=False),
    sa.Column('first_seq', Seq, nullable=False),
    sa.Column('last_seq', Seq, nullable=False),
    sa.Column('event_count', sa.Integer(), nullable=False),
    sa.Column('skipped', sa.JSON(), nullable=False),
    sa.Column('events_hash', sa.String(length=64), nullable=False),
    sa.Column('leaves', sa.LargeBinary(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('seal_hash', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=16), nullable=False),
    sa.Column('signature', sa.String(length=128), nullable=False),
    sa.Column('sealed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_seals')),
    sa.UniqueConstraint('last_seq', name=op.f('uq_seals_last_seq'))
    )
    with op.batch_alter_table('seals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_seals_first_seq'), ['first_seq'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('seals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_seals_first_seq'))
    op.drop_table('seals')
    op.drop_table('seal_keys')
