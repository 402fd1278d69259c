"""The relay's work list becomes a table (outbox) instead of a partial index on
messages.published_at, and messages pages keep room for their one update: on PostgreSQL,
recording PUBLISHED was a non-HOT update rewriting all twelve index entries of the message.
Messages waiting for the relay at upgrade time are copied into the outbox, so none is lost.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

SeqType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UNPUBLISHED = sa.text('published_at IS NULL')


def upgrade() -> None:
    op.create_table('outbox',
        sa.Column('seq', SeqType, autoincrement=False, nullable=False),
        sa.ForeignKeyConstraint(['seq'], ['messages.seq'], name=op.f('fk_outbox_seq_messages')),
        sa.PrimaryKeyConstraint('seq', name=op.f('pk_outbox')),
    )
    op.execute("INSERT INTO outbox (seq) SELECT seq FROM messages WHERE published_at IS NULL")
    op.drop_index('ix_messages_unpublished', table_name='messages',
                  postgresql_where=UNPUBLISHED, sqlite_where=UNPUBLISHED)
    if op.get_bind().dialect.name == 'postgresql':
        # Applies to pages written from now on; existing ones keep their fill until rewritten.
        op.execute("ALTER TABLE messages SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE messages RESET (fillfactor)")
    op.create_index('ix_messages_unpublished', 'messages', ['seq'], unique=False,
                    postgresql_where=UNPUBLISHED, sqlite_where=UNPUBLISHED)
    # What the outbox still lists is unpublished, whatever published_at says.
    op.execute("UPDATE messages SET published_at = NULL WHERE seq IN (SELECT seq FROM outbox)")
    op.drop_table('outbox')
