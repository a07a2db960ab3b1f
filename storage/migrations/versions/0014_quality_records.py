"""the quality records: test evidence, waivers, the non-conformance register, unmatched deployments,
incidents and metric snapshots; the release package's documents; provenance on deployments

QMS 4.3 (test results are a mandatory release package component), 4.4 (documentation
before deployment), 6.2 (non-conformances with a corrective action, owner and due date),
4.2/6.1 (KPIs from the toolchain, frozen monthly reports). Votes keep who held the role
then and the policy in force, for the evidence packet.

Revision ID: 0014
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TS = storage.models.UTCDateTime
NEW_TABLES = ("metric_snapshot", "incident", "waiver", "test_result")


def upgrade() -> None:
    op.create_table(
        "unmatched_deployment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=200), unique=True, nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("release.id"), nullable=True),
        sa.Column("service", sa.String(length=120), nullable=True),
        sa.Column("environment", sa.String(length=60), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("artifact", sa.Text(), nullable=True),
        sa.Column("commit", sa.String(length=80), nullable=True),
        sa.Column("tag", sa.String(length=200), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("pipeline", sa.String(length=80), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("reported_at", TS(timezone=True), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_unmatched_deployment_reported_at", "unmatched_deployment", ['reported_at'])
    op.create_index("ix_unmatched_deployment_release_id", "unmatched_deployment", ['release_id'])
    op.create_table(
        "test_result",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("release.id"), nullable=False),
        sa.Column("phase", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("artifact", sa.String(length=300), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("reported_by", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("at", TS(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_test_result_phase", "test_result", ['release_id', 'phase', 'id'])
    op.create_table(
        "waiver",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("release.id"), nullable=False),
        sa.Column("item", sa.String(length=60), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("by", sa.String(length=40), nullable=False),
        sa.Column("at", TS(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_waiver_release", "waiver", ['release_id', 'item'])
    op.create_table(
        "incident",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), unique=True, nullable=False),
        sa.Column("service", sa.String(length=120), nullable=False),
        sa.Column("opened_at", TS(timezone=True), nullable=False),
        sa.Column("resolved_at", TS(timezone=True), nullable=True),
        sa.Column("severity", sa.String(length=20), nullable=True),
        sa.Column("caused_by_release_id", sa.Integer(), sa.ForeignKey("release.id"), nullable=True),
        sa.Column("reported_by", sa.String(length=200), nullable=False),
        sa.Column("recorded_at", TS(timezone=True), nullable=False),
        sa.Column("updated_at", TS(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_incident_service_opened", "incident", ['service', 'opened_at'])
    op.create_index("ix_incident_caused_by_release_id", "incident", ['caused_by_release_id'])
    op.create_table(
        "metric_snapshot",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("period", sa.String(length=20), nullable=False),
        sa.Column("from_at", TS(timezone=True), nullable=False),
        sa.Column("to_at", TS(timezone=True), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", TS(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint('kind', 'period', name="uq_metric_snapshot_period"),
    )
    with op.batch_alter_table("release") as batch:
        batch.add_column(sa.Column("release_notes", sa.Text(), nullable=True))
        batch.add_column(sa.Column("runbook", sa.Text(), nullable=True))
    with op.batch_alter_table("vote") as batch:
        batch.add_column(sa.Column("role_holders", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("policy_hash", sa.String(length=64), nullable=True))
    with op.batch_alter_table("deployment") as batch:
        batch.add_column(sa.Column("manual", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("justification", sa.Text(), nullable=True))
        batch.add_column(sa.Column("tag", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("forced", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("package_complete", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("commit_time", TS(timezone=True), nullable=True))
        batch.add_column(sa.Column("policy_hash", sa.String(length=64), nullable=True))
    with op.batch_alter_table("nonconformance") as batch:
        batch.add_column(sa.Column("deployment_id", sa.Integer(), sa.ForeignKey("deployment.id", name="fk_nonconformance_deployment"), nullable=True))
        batch.add_column(sa.Column("unmatched_id", sa.Integer(), sa.ForeignKey("unmatched_deployment.id", name="fk_nonconformance_unmatched"), nullable=True))
        batch.add_column(sa.Column("service", sa.String(length=120), nullable=True))
        batch.add_column(sa.Column("state", sa.String(length=20), server_default="open", nullable=False))
        batch.add_column(sa.Column("due_at", TS(timezone=True), nullable=True))
        batch.add_column(sa.Column("owner_id", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("action", sa.Text(), nullable=True))
        batch.add_column(sa.Column("planned_by", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("planned_at", TS(timezone=True), nullable=True))
        batch.add_column(sa.Column("evidence", sa.Text(), nullable=True))
        batch.add_column(sa.Column("actioned_by", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("actioned_at", TS(timezone=True), nullable=True))
        batch.add_column(sa.Column("verified_by", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("verified_at", TS(timezone=True), nullable=True))
        batch.add_column(sa.Column("closed_by", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("closed_at", TS(timezone=True), nullable=True))
        batch.add_column(sa.Column("repeat", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("repeat_of", sa.Integer(), sa.ForeignKey("nonconformance.id", name="fk_nonconformance_repeat_of"), nullable=True))
        batch.add_column(sa.Column("root_cause", sa.Text(), nullable=True))
        batch.add_column(sa.Column("escalated_at", TS(timezone=True), nullable=True))
        batch.create_index("ix_nonconformance_repeat", ["service", "kind", "at"])
        batch.create_index("ix_nonconformance_due", ["state", "due_at"])


def downgrade() -> None:
    with op.batch_alter_table("nonconformance") as batch:
        batch.drop_index("ix_nonconformance_due")
        batch.drop_index("ix_nonconformance_repeat")
        for name in ("escalated_at", "root_cause", "repeat_of", "repeat", "closed_at", "closed_by", "verified_at",
                     "verified_by", "actioned_at", "actioned_by", "evidence", "planned_at", "planned_by", "action",
                     "owner_id", "due_at", "state", "service", "unmatched_id", "deployment_id"):
            batch.drop_column(name)
    with op.batch_alter_table("deployment") as batch:
        for name in ("policy_hash", "commit_time", "package_complete", "forced", "tag", "justification", "manual"):
            batch.drop_column(name)
    with op.batch_alter_table("vote") as batch:
        batch.drop_column("policy_hash")
        batch.drop_column("role_holders")
    with op.batch_alter_table("release") as batch:
        batch.drop_column("runbook")
        batch.drop_column("release_notes")
    for name in NEW_TABLES:
        op.drop_table(name)
    op.drop_table("unmatched_deployment")
