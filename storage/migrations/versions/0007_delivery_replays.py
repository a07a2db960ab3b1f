"""seen_delivery: the identity of each Slack delivery inside the replay window

A replayed signed request (or Slack's retry) is the same delivery again; the
primary key on its identity makes the second one fail to insert.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seen_delivery",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("seen_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_seen_delivery_seen_at", "seen_delivery", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_seen_delivery_seen_at", table_name="seen_delivery")
    op.drop_table("seen_delivery")
