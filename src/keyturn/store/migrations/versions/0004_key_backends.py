"""Key backends: a tenant's backend kind and token URI; a key's token object id and label.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing tenants keep their sealed software keys.
    op.add_column(
        "tenants",
        sa.Column("key_backend", sa.String(16), nullable=False, server_default="software"),
    )
    op.add_column("tenants", sa.Column("key_backend_uri", sa.String(1024), nullable=True))
    op.add_column("keys", sa.Column("token_object_id", sa.String(64), nullable=True))
    op.add_column("keys", sa.Column("token_label", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        batch.drop_column("token_label")
        batch.drop_column("token_object_id")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("key_backend_uri")
        batch.drop_column("key_backend")
