"""covering indexes for the KPIs counted in SQL (issue 13: a quarter of 100k deployments under 1 s)

commands.metrics_sql reads a period's deployments by started_at and needs only their times, outcome and
package flag: with those in the index (replacing ix_deployment_started, its prefix) SQLite never visits
the deployment table. Each deployment's release is read for its environment, service, type and request
time only (ix_release_metrics, by id), and the emergency releases of its service that followed it by
service, type and window start (ix_release_emergency).

Revision ID: 0024
Revises: 0015
"""
from alembic import op

revision = "0024"
down_revision = "0015"
branch_labels = None
depends_on = None

DEPLOYMENT = ["started_at", "outcome", "release_id", "finished_at", "rollback_decided_at", "restored_at",
              "stabilisation_ends_at", "commit_time", "package_complete"]
RELEASE = ["id", "environment", "service", "effective_type", "created_at"]
EMERGENCY = ["service", "effective_type", "start_at", "environment", "state", "id"]


def upgrade() -> None:
    with op.batch_alter_table("deployment") as batch:
        batch.drop_index("ix_deployment_started")
        batch.create_index("ix_deployment_metrics", DEPLOYMENT)
    with op.batch_alter_table("release") as batch:
        batch.create_index("ix_release_metrics", RELEASE)
        batch.create_index("ix_release_emergency", EMERGENCY)


def downgrade() -> None:
    with op.batch_alter_table("release") as batch:
        batch.drop_index("ix_release_emergency")
        batch.drop_index("ix_release_metrics")
    with op.batch_alter_table("deployment") as batch:
        batch.drop_index("ix_deployment_metrics")
        batch.create_index("ix_deployment_started", ["started_at"])
