"""alternative approver sets on a release; an emergency's assessment and approval targets

QMS 3.7: an emergency is approved by the Emergency CAB, or by a release manager and
an engineering lead. A release keeps the alternative sets it was requested under
(null: one set, its required_roles), as it keeps its required roles. An emergency
keeps the targets it was opened under (QMS 4.6: assessed within 15 minutes; 4.2:
approved within 30), so its measured times are judged against the policy of its day.

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("release") as batch:
        batch.add_column(sa.Column("approver_sets", sa.JSON(), nullable=True))
    with op.batch_alter_table("emergency") as batch:
        batch.add_column(sa.Column("assessment_target_minutes", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("approval_target_minutes", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("emergency") as batch:
        batch.drop_column("approval_target_minutes")
        batch.drop_column("assessment_target_minutes")
    with op.batch_alter_table("release") as batch:
        batch.drop_column("approver_sets")
