"""GitHub deployment protection rule requests (issue 14)

Revision ID: 0019
Revises: 0023
"""
import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0019"
down_revision = "0023"
branch_labels = None
depends_on = None

TS = storage.models.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "github_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.BigInteger(), nullable=False),
        sa.Column("repo", sa.String(length=200), nullable=False),
        sa.Column("environment", sa.String(length=255), nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=False),
        sa.Column("callback_url", sa.Text(), nullable=False),
        sa.Column("run_url", sa.Text(), nullable=True),
        sa.Column("sender", sa.String(length=100), nullable=False),
        sa.Column("deployer_id", sa.String(length=40), nullable=True),
        sa.Column("unmapped", sa.Text(), nullable=True),
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("release.id"), nullable=True),
        sa.Column("service", sa.String(length=120), nullable=True),
        sa.Column("release_environment", sa.String(length=60), nullable=True),
        sa.Column("sha", sa.String(length=80), nullable=True),
        sa.Column("ref", sa.String(length=255), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("reports", sa.Integer(), nullable=False),
        sa.Column("last_report", sa.Text(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("received_at", TS(), nullable=False),
        sa.Column("answered_at", TS(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("deployment_id", "environment", name="uq_github_request_deployment"),
    )
    op.create_index("ix_github_request_release_id", "github_request", ["release_id"])
    op.create_index("ix_github_request_state", "github_request", ["state"])


def downgrade() -> None:
    op.drop_index("ix_github_request_state", table_name="github_request")
    op.drop_index("ix_github_request_release_id", table_name="github_request")
    op.drop_table("github_request")
