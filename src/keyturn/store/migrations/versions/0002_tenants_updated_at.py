"""Index tenants.updated_at: pollers ask for tenants changed since their last pass.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tenants_updated_at", "tenants", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_tenants_updated_at", table_name="tenants")
