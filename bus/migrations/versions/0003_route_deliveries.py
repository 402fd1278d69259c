"""Route deliveries: the idempotency key, retry schedule and dead-letter list of routes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""
from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

SeqType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WAITING = "status IN ('RETRY', 'RETRYING')"


def upgrade() -> None:
    op.create_table(
        'route_deliveries',
        sa.Column('id', SeqType, autoincrement=True, nullable=False),
        sa.Column('message_seq', SeqType, nullable=False),
        sa.Column('message_id', sa.String(length=36), nullable=False),
        sa.Column('route', sa.String(length=80), nullable=False),
        sa.Column('destination', sa.String(length=120), nullable=False),
        sa.Column('status', sa.String(length=12), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('error_code', sa.String(length=40), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['message_seq'], ['messages.seq'],
                                name=op.f('fk_route_deliveries_message_seq_messages')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_route_deliveries')),
        sa.UniqueConstraint('message_seq', 'route', 'destination',
                            name=op.f('uq_route_deliveries_message_seq_route_destination')),
    )
    op.create_index('ix_route_deliveries_due', 'route_deliveries', ['due_at'], unique=False,
                    postgresql_where=sa.text(WAITING), sqlite_where=sa.text(WAITING))
    op.create_index('ix_route_deliveries_route_status', 'route_deliveries', ['route', 'status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_route_deliveries_route_status', table_name='route_deliveries')
    op.drop_index('ix_route_deliveries_due', table_name='route_deliveries')
    op.drop_table('route_deliveries')
