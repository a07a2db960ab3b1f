"""room for "<user> via pipeline:<name>" in the audit log; whole occurrences on blackout pieces

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("blackout_occurrence") as batch:
        batch.add_column(sa.Column("occurrence_start", storage.models.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("occurrence_end", storage.models.UTCDateTime(timezone=True), nullable=True))
    # SQLite does not enforce VARCHAR lengths, and rebuilding audit_event there
    # would drop its append-only triggers; only PostgreSQL needs the change.
    if op.get_bind().dialect.name != "postgresql":
        return
    with op.batch_alter_table("audit_event") as batch:
        batch.alter_column("actor", type_=sa.String(200), existing_nullable=False)
    with op.batch_alter_table("nonconformance") as batch:
        batch.alter_column("reported_by", type_=sa.String(200), existing_nullable=False)
    with op.batch_alter_table("deployment") as batch:
        batch.alter_column("deployer_id", type_=sa.String(200), existing_nullable=False)


def downgrade() -> None:
    pass
