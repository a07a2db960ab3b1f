"""inbox: acknowledged Slack deliveries whose after-ack work is not yet applied

The ack path writes the delivery here before answering Slack, so a process
killed after the ack leaves the work for the next one instead of losing it.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column("stream", sa.String(length=60), nullable=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("received_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_until", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("claim_token", sa.String(length=64), nullable=True),
        sa.Column("done_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("result", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_inbox_pending", "inbox", ["done_at", "id"])
    op.create_index("ix_inbox_stream", "inbox", ["stream"])


def downgrade() -> None:
    op.drop_index("ix_inbox_stream", table_name="inbox")
    op.drop_index("ix_inbox_pending", table_name="inbox")
    op.drop_table("inbox")
