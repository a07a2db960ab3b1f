"""indexes for the metrics: deployments by their start, a release's approvals

commands.metrics reads a period's deployments by started_at (a range scan instead of the whole table),
and for each one the last `approved` event of its release before it started (one index seek instead of
reading every audit event of the release).

Revision ID: 0022
Revises: 0019
"""
from alembic import op

revision = "0022"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deployment_started", "deployment", ["started_at"])
    op.create_index("ix_audit_event_release_action", "audit_event", ["release_id", "action", "at"])


def downgrade() -> None:
    op.drop_index("ix_audit_event_release_action", "audit_event")
    op.drop_index("ix_deployment_started", "deployment")
