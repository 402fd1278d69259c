"""Enterprise search indexes in the search's own order: (name, uscc), so a page of a common
prefix is read straight off the index instead of sorting every match; and (region_code,
name, uscc), so a search within a region does not walk a prefix's matches elsewhere.

Revision ID: c002
Revises: c001
Create Date: 2026-11-21
"""
from alembic import op


revision = 'c002'
down_revision = 'c001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('catalog_enterprises', schema=None) as batch_op:
        batch_op.drop_index('ix_catalog_enterprises_name')
        batch_op.create_index('ix_catalog_enterprises_name_uscc', ['name', 'uscc'], unique=False)
        batch_op.create_index('ix_catalog_enterprises_region_name', ['region_code', 'name', 'uscc'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('catalog_enterprises', schema=None) as batch_op:
        batch_op.drop_index('ix_catalog_enterprises_region_name')
        batch_op.drop_index('ix_catalog_enterprises_name_uscc')
        batch_op.create_index('ix_catalog_enterprises_name', ['name'], unique=False)
