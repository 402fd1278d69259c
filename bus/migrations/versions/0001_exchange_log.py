"""The exchange log: bodies by digest, messages, append-only events, hub state.

Revision ID: 0001
Revises: 
Create Date: 2026-11-21
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hub_state',
    sa.Column('key', sa.String(length=60), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_hub_state'))
    )
    op.create_table('message_bodies',
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('digest', name=op.f('pk_message_bodies'))
    )
    op.create_table('messages',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('receipt_id', sa.String(length=36), nullable=False),
    sa.Column('source', sa.String(length=80), nullable=False),
    sa.Column('message_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('schema_version', sa.String(length=10), nullable=False),
    sa.Column('correlation_id', sa.String(length=36), nullable=True),
    sa.Column('target', sa.String(length=80), nullable=True),
    sa.Column('routing_key', sa.String(length=160), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('case_number', sa.String(length=64), nullable=True),
    sa.Column('uscc', sa.String(length=18), nullable=True),
    sa.Column('citizen_id', sa.String(length=18), nullable=True),
    sa.Column('project_code', sa.String(length=24), nullable=True),
    sa.ForeignKeyConstraint(['digest'], ['message_bodies.digest'], name=op.f('fk_messages_digest_message_bodies')),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_messages')),
    sa.UniqueConstraint('receipt_id', name=op.f('uq_messages_receipt_id')),
    sa.UniqueConstraint('source', 'message_id', name=op.f('uq_messages_source_message_id'))
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_messages_case_number'), ['case_number'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_citizen_id'), ['citizen_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_correlation_id'), ['correlation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_project_code'), ['project_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_type'), ['type'], unique=False)
        batch_op.create_index('ix_messages_unpublished', ['seq'], unique=False, postgresql_where=sa.text('published_at IS NULL'), sqlite_where=sa.text('published_at IS NULL'))
        batch_op.create_index(batch_op.f('ix_messages_uscc'), ['uscc'], unique=False)

    op.create_table('events',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('message_seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('message_id', sa.String(length=36), nullable=True),
    sa.Column('source', sa.String(length=80), nullable=True),
    sa.Column('route', sa.String(length=80), nullable=True),
    sa.Column('code', sa.String(length=40), nullable=True),
    sa.Column('digest', sa.String(length=64), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['message_seq'], ['messages.seq'], name=op.f('fk_events_message_seq_messages')),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_events'))
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_kind_at', ['kind', 'at'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_message_seq'), ['message_seq'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_source'), ['source'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_events_source'))
        batch_op.drop_index(batch_op.f('ix_events_message_seq'))
        batch_op.drop_index(batch_op.f('ix_events_message_id'))
        batch_op.drop_index('ix_events_kind_at')

    op.drop_table('events')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_uscc'))
        batch_op.drop_index('ix_messages_unpublished', postgresql_where=sa.text('published_at IS NULL'), sqlite_where=sa.text('published_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_messages_type'))
        batch_op.drop_index(batch_op.f('ix_messages_received_at'))
        batch_op.drop_index(batch_op.f('ix_messages_project_code'))
        batch_op.drop_index(batch_op.f('ix_messages_correlation_id'))
        batch_op.drop_index(batch_op.f('ix_messages_citizen_id'))
        batch_op.drop_index(batch_op.f('ix_messages_case_number'))

    op.drop_table('messages')
    op.drop_table('message_bodies')
    op.drop_table('hub_state')
