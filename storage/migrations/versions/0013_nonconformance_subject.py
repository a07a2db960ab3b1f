"""non-conformances name what they are about, so each is recorded once

`subject` (a deferred step's task, a release whose deployment broke the
frequency rule, one pipeline report) is unique per kind: two processes, or a
retried delivery, recording the same non-conformance hit the constraint.

Revision ID: 0013
Revises: 0012
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nonconformance") as batch:
        batch.add_column(sa.Column("subject", sa.String(length=200), nullable=True))
        batch.create_unique_constraint("uq_nonconformance_subject", ["kind", "subject"])


def downgrade() -> None:
    with op.batch_alter_table("nonconformance") as batch:
        batch.drop_constraint("uq_nonconformance_subject", type_="unique")
        batch.drop_column("subject")
