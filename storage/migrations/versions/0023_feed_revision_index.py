"""a covering index for the feed's revision

A calendar client's poll that ends in a 304 runs one query of aggregates over
the releases in the feed's horizon (commands.agenda.feed_revision): their count,
newest change, revisions and approval-message stamps. With those columns in an
index on the window, SQLite answers it from the index alone (measured on 10,000
releases in the horizon, the machine loaded by other work: p50 109 ms without,
49 ms with).

Revision ID: 0023
Revises: 0014
"""
from alembic import op

revision = "0023"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("release") as batch:
        batch.create_index("ix_release_feed", ["start_at", "end_at", "updated_at", "revision", "message_ts", "id"])


def downgrade() -> None:
    with op.batch_alter_table("release") as batch:
        batch.drop_index("ix_release_feed")
