"""Catalog registries: enterprise, person, project and service-item golden records with
provenance, registrations, the case index and links, history, conflicts, applied messages.

Revision ID: c001
Revises:
Create Date: 2026-11-21
"""
from alembic import op
import sqlalchemy as sa


revision = 'c001'
down_revision = None
branch_labels = ('catalog',)
depends_on = None


def upgrade() -> None:
    op.create_table('catalog_applied_messages',
    sa.Column('source', sa.String(length=80), nullable=False),
    sa.Column('message_id', sa.String(length=80), nullable=False),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('source', 'message_id', name=op.f('pk_catalog_applied_messages'))
    )
    op.create_table('catalog_case_links',
    sa.Column('record_type', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=140), nullable=False),
    sa.Column('case_number', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=24), nullable=False),
    sa.Column('linked_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('record_type', 'key', 'case_number', 'role', name=op.f('pk_catalog_case_links'))
    )
    with op.batch_alter_table('catalog_case_links', schema=None) as batch_op:
        batch_op.create_index('ix_catalog_case_links_case_number', ['case_number'], unique=False)

    op.create_table('catalog_cases',
    sa.Column('case_number', sa.String(length=64), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=True),
    sa.Column('department_code', sa.String(length=64), nullable=True),
    sa.Column('department_name', sa.String(length=200), nullable=True),
    sa.Column('item_code', sa.String(length=64), nullable=True),
    sa.Column('item_version', sa.String(length=64), nullable=True),
    sa.Column('item_name', sa.String(length=200), nullable=True),
    sa.Column('case_type', sa.String(length=12), nullable=True),
    sa.Column('applicant_kind', sa.String(length=12), nullable=True),
    sa.Column('applicant_name', sa.String(length=200), nullable=True),
    sa.Column('applicant_id_type', sa.String(length=20), nullable=True),
    sa.Column('applicant_id', sa.String(length=64), nullable=True),
    sa.Column('registration_number', sa.String(length=64), nullable=True),
    sa.Column('project_code', sa.String(length=24), nullable=True),
    sa.Column('channel', sa.String(length=10), nullable=True),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('result', sa.String(length=12), nullable=True),
    sa.Column('last_step', sa.String(length=200), nullable=True),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('promised_date', sa.Date(), nullable=True),
    sa.Column('last_step_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('certificate_number', sa.String(length=64), nullable=True),
    sa.Column('source', sa.String(length=80), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('case_number', name=op.f('pk_catalog_cases'))
    )
    with op.batch_alter_table('catalog_cases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_catalog_cases_item_code'), ['item_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_catalog_cases_registration_number'), ['registration_number'], unique=False)

    op.create_table('catalog_changes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('record_type', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=140), nullable=False),
    sa.Column('action', sa.String(length=8), nullable=False),
    sa.Column('system', sa.String(length=80), nullable=False),
    sa.Column('message_id', sa.String(length=80), nullable=False),
    sa.Column('message_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('changes', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_catalog_changes'))
    )
    with op.batch_alter_table('catalog_changes', schema=None) as batch_op:
        batch_op.create_index('ix_catalog_changes_record', ['record_type', 'key', 'id'], unique=False)

    op.create_table('catalog_conflicts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('record_type', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=140), nullable=False),
    sa.Column('field', sa.String(length=40), nullable=False),
    sa.Column('kept', sa.JSON(), nullable=False),
    sa.Column('kept_system', sa.String(length=80), nullable=False),
    sa.Column('offered', sa.JSON(), nullable=False),
    sa.Column('offered_system', sa.String(length=80), nullable=False),
    sa.Column('offered_message_id', sa.String(length=80), nullable=False),
    sa.Column('offered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_catalog_conflicts'))
    )
    with op.batch_alter_table('catalog_conflicts', schema=None) as batch_op:
        batch_op.create_index('ix_catalog_conflicts_record', ['record_type', 'key', 'id'], unique=False)

    op.create_table('catalog_enterprises',
    sa.Column('uscc', sa.String(length=18), nullable=False),
    sa.Column('name', sa.String(length=200).with_variant(sa.String(length=200, collation='C'), 'postgresql'), nullable=True),
    sa.Column('legal_representative', sa.String(length=100), nullable=True),
    sa.Column('legal_representative_id', sa.String(length=64), nullable=True),
    sa.Column('registered_at', sa.Date(), nullable=True),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('region_code', sa.String(length=6), nullable=True),
    sa.Column('status', sa.String(length=12), nullable=True),
    sa.Column('qualifications', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('credit_records', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('sources', sa.JSON(), nullable=False),
    sa.Column('history_written', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('uscc', name=op.f('pk_catalog_enterprises'))
    )
    with op.batch_alter_table('catalog_enterprises', schema=None) as batch_op:
        batch_op.create_index('ix_catalog_enterprises_name', ['name'], unique=False)

    op.create_table('catalog_persons',
    sa.Column('citizen_id', sa.String(length=18), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=True),
    sa.Column('gender', sa.String(length=6), nullable=True),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('sources', sa.JSON(), nullable=False),
    sa.Column('history_written', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('citizen_id', name=op.f('pk_catalog_persons'))
    )
    op.create_table('catalog_projects',
    sa.Column('project_code', sa.String(length=24), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('owner_uscc', sa.String(length=18), nullable=True),
    sa.Column('region_code', sa.String(length=6), nullable=True),
    sa.Column('total_investment', sa.Numeric(precision=18, scale=4), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=True),
    sa.Column('sources', sa.JSON(), nullable=False),
    sa.Column('history_written', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('project_code', name=op.f('pk_catalog_projects'))
    )
    with op.batch_alter_table('catalog_projects', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_catalog_projects_owner_uscc'), ['owner_uscc'], unique=False)

    op.create_table('catalog_registrations',
    sa.Column('registration_number', sa.String(length=64), nullable=False),
    sa.Column('applicant_kind', sa.String(length=12), nullable=False),
    sa.Column('applicant_name', sa.String(length=200), nullable=False),
    sa.Column('applicant_id_type', sa.String(length=20), nullable=True),
    sa.Column('applicant_id', sa.String(length=64), nullable=True),
    sa.Column('first_case_number', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=80), nullable=False),
    sa.Column('message_id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('registration_number', name=op.f('pk_catalog_registrations'))
    )
    with op.batch_alter_table('catalog_registrations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_catalog_registrations_applicant_id'), ['applicant_id'], unique=False)

    op.create_table('catalog_service_items',
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('department_code', sa.String(length=64), nullable=True),
    sa.Column('department_name', sa.String(length=200), nullable=True),
    sa.Column('region_code', sa.String(length=6), nullable=True),
    sa.Column('statutory_days', sa.Integer(), nullable=True),
    sa.Column('promised_days', sa.Integer(), nullable=True),
    sa.Column('case_type', sa.String(length=12), nullable=True),
    sa.Column('fees', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('materials', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('sources', sa.JSON(), nullable=False),
    sa.Column('history_written', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('code', 'version', name=op.f('pk_catalog_service_items'))
    )


def downgrade() -> None:
    op.drop_table('catalog_service_items')
    with op.batch_alter_table('catalog_registrations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_catalog_registrations_applicant_id'))

    op.drop_table('catalog_registrations')
    with op.batch_alter_table('catalog_projects', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_catalog_projects_owner_uscc'))

    op.drop_table('catalog_projects')
    op.drop_table('catalog_persons')
    with op.batch_alter_table('catalog_enterprises', schema=None) as batch_op:
        batch_op.drop_index('ix_catalog_enterprises_name')

    op.drop_table('catalog_enterprises')
    with op.batch_alter_table('catalog_conflicts', schema=None) as batch_op:
        batch_op.drop_index('ix_catalog_conflicts_record')

    op.drop_table('catalog_conflicts')
    with op.batch_alter_table('catalog_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_catalog_changes_record')

    op.drop_table('catalog_changes')
    with op.batch_alter_table('catalog_cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_catalog_cases_registration_number'))
        batch_op.drop_index(batch_op.f('ix_catalog_cases_item_code'))

    op.drop_table('catalog_cases')
    with op.batch_alter_table('catalog_case_links', schema=None) as batch_op:
        batch_op.drop_index('ix_catalog_case_links_case_number')

    op.drop_table('catalog_case_links')
    op.drop_table('catalog_applied_messages')
