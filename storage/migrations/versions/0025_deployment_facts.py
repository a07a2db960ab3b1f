"""deployment_fact: each deployment with its release's fields, last approval and times in epoch seconds,
kept by triggers (issue 13: a quarter of 100k deployments' KPIs in under 1 s)

commands.metrics_sql read each deployment's release, its last approval and seven julianday/extract
conversions per row for every report: 2.2 s (SQLite) and 3.5 s (PostgreSQL) for the quarter. The values are
now computed once, when the deployment, its release or an approval is written, by triggers in the same
transaction (storage/deployment_facts.py), and the existing deployments are copied here. ix_release_metrics
(0024) served only those per-row look-ups; ix_release_emergency now holds the emergency releases alone, by
window start, so that a period's are a range of it.

Revision ID: 0025
Revises: 0024
"""
import sqlalchemy as sa
from alembic import op

import storage.models
from storage import deployment_facts

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

TS = storage.models.UTCDateTime
EMERGENCY = ["environment", "start_at", "state", "service", "id"]
IS_EMERGENCY = "effective_type = 'emergency'"


def upgrade() -> None:
    op.create_table(
        "deployment_fact",
        sa.Column("release_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("environment", sa.String(length=60), nullable=False),
        sa.Column("service", sa.String(length=120), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("package_complete", sa.Boolean(), nullable=True),
        sa.Column("started_at", TS(timezone=True), nullable=False),
        sa.Column("started", sa.Float(), nullable=False),
        *(sa.Column(name, sa.Float(), nullable=name != "requested") for name in deployment_facts.EPOCHS[1:]),
        sa.PrimaryKeyConstraint("release_id"),
    )
    op.create_index("ix_deployment_fact_period", "deployment_fact",
                    ["environment", "started_at", "release_id", "outcome", "service", "type", "package_complete",
                     *deployment_facts.EPOCHS])
    op.create_index("ix_deployment_fact_service", "deployment_fact",
                    ["environment", "service", "finished", "outcome", "started_at", "release_id"])
    op.drop_index("ix_release_metrics", table_name="release")
    # the emergencies of a period, without a service: 0024's index started with the service
    op.drop_index("ix_release_emergency", table_name="release")
    op.create_index("ix_release_emergency", "release", EMERGENCY, sqlite_where=sa.text(IS_EMERGENCY),
                    postgresql_where=sa.text(IS_EMERGENCY))
    dialect = op.get_bind().dialect
    # the triggers first: on PostgreSQL making them locks the three tables against writers until this
    # commits, so the copy below misses no deployment written meanwhile
    for statement in deployment_facts.create(dialect):
        op.execute(statement)
    op.execute(deployment_facts.backfill(dialect))


def downgrade() -> None:
    for statement in deployment_facts.drop(op.get_bind().dialect):
        op.execute(statement)
    op.drop_table("deployment_fact")
    op.drop_index("ix_release_emergency", table_name="release")
    op.create_index("ix_release_emergency", "release",
                    ["service", "effective_type", "start_at", "environment", "state", "id"])
    op.create_index("ix_release_metrics", "release", ["id", "environment", "service", "effective_type", "created_at"])
