"""outbox dead letters: when a row was first tried, and when and why Slack was given up on

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("first_attempt_at", storage.models.UTCDateTime(timezone=True), nullable=True))
    op.add_column("outbox", sa.Column("dead_at", storage.models.UTCDateTime(timezone=True), nullable=True))
    op.add_column("outbox", sa.Column("dead_reason", sa.Text(), nullable=True))
    # Dead letters stay unsent (sent_at NULL); the due scan skips them by index.
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.create_index("ix_outbox_pending", "outbox", ["sent_at", "dead_at", "due_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.create_index("ix_outbox_pending", "outbox", ["sent_at", "due_at"])
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("dead_reason")
        batch.drop_column("dead_at")
        batch.drop_column("first_attempt_at")
