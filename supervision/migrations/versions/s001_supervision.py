"""Electronic supervision: case messages read, cases with their clocks, alerts.

Revision ID: s001
Revises:
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa

revision = 's001'
down_revision = None
branch_labels = ('supervision',)
depends_on = None


def upgrade() -> None:
    op.create_table('supervision_messages',
    sa.Column('message_id', sa.String(length=36), nullable=False),
    sa.Column('source', sa.String(length=80), nullable=False),
    sa.Column('case_number', sa.String(length=64), nullable=False),
    sa.Column('facts', sa.Text(), nullable=False),
    sa.Column('arrived_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('message_id', 'source', name=op.f('pk_supervision_messages'))
    )
    op.create_index(op.f('ix_supervision_messages_case_number'), 'supervision_messages', ['case_number'])
    op.create_table('supervision_cases',
    sa.Column('case_number', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('is_open', sa.Boolean(), nullable=False),
    sa.Column('region', sa.String(length=6), nullable=True),
    sa.Column('department_code', sa.String(length=64), nullable=True),
    sa.Column('department_name', sa.String(length=200), nullable=True),
    sa.Column('service_item', sa.String(length=300), nullable=True),
    sa.Column('case_type', sa.String(length=20), nullable=True),
    sa.Column('source', sa.String(length=80), nullable=True),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('accepted_day', sa.Date(), nullable=True),
    sa.Column('limit_days', sa.Integer(), nullable=True),
    sa.Column('promised_days', sa.Integer(), nullable=True),
    sa.Column('statutory_days', sa.Integer(), nullable=True),
    sa.Column('pauses', sa.Text(), nullable=False),
    sa.Column('deadline', sa.Date(), nullable=True),
    sa.Column('yellow_on', sa.Date(), nullable=True),
    sa.Column('red_on', sa.Date(), nullable=True),
    sa.Column('colour', sa.String(length=8), nullable=True),
    sa.Column('result', sa.String(length=20), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_step', sa.String(length=300), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('case_number', name=op.f('pk_supervision_cases'))
    )
    op.create_index('ix_supervision_cases_open_case_number', 'supervision_cases', ['is_open', 'case_number'])
    op.create_index('ix_supervision_cases_open_colour_red_on', 'supervision_cases', ['is_open', 'colour', 'red_on'])
    op.create_index('ix_supervision_cases_open_colour_yellow_on', 'supervision_cases',
                    ['is_open', 'colour', 'yellow_on'])
    op.create_index('ix_supervision_cases_department_colour', 'supervision_cases', ['department_code', 'colour'])
    op.create_table('supervision_alerts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('alert_key', sa.String(length=400), nullable=False),
    sa.Column('case_number', sa.String(length=64), nullable=False),
    sa.Column('department_code', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('message_ids', sa.Text(), nullable=False),
    sa.Column('noticed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('raised_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('alert_message_id', sa.String(length=36), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('send_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_supervision_alerts')),
    sa.UniqueConstraint('alert_key', name=op.f('uq_supervision_alerts_alert_key'))
    )
    op.create_index(op.f('ix_supervision_alerts_case_number'), 'supervision_alerts', ['case_number'])
    op.create_index('ix_supervision_alerts_unsent', 'supervision_alerts', ['status', 'sent_at'])


def downgrade() -> None:
    op.drop_table('supervision_alerts')
    op.drop_table('supervision_cases')
    op.drop_table('supervision_messages')
