"""tenants.auto_rotate: automatic rotation can be turned off per tenant (manual rotation).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing tenants keep rotating on their schedule.
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(
            sa.Column("auto_rotate", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("auto_rotate")
