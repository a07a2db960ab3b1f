"""emergency bridge records, their decision log, and owners of tasks

QMS 4.6: an emergency release gets a bridge (channel or thread), an assessment,
a decision log nobody can edit, and deferred steps with owners and deadlines.

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TS = storage.models.UTCDateTime
MESSAGE = "decision_log is append-only"


def upgrade() -> None:
    with op.batch_alter_table("task") as batch:
        batch.add_column(sa.Column("owner_id", sa.String(length=200), nullable=True))
    op.create_table(
        "emergency",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("release.id"), nullable=False, unique=True),
        sa.Column("incident", sa.String(length=500), nullable=False),
        sa.Column("security", sa.Boolean(), nullable=False),
        sa.Column("opened_at", TS(timezone=True), nullable=False),
        sa.Column("opened_by", sa.String(length=200), nullable=False),
        sa.Column("bridge_key", sa.String(length=120), nullable=False, unique=True),
        sa.Column("bridge_kind", sa.String(length=10), nullable=True),
        sa.Column("bridge_channel", sa.String(length=40), nullable=True),
        sa.Column("bridge_thread_ts", sa.String(length=40), nullable=True),
        sa.Column("bridge_fallback_reason", sa.Text(), nullable=True),
        sa.Column("card_ts", sa.String(length=40), nullable=True),
        sa.Column("bridge_opened_at", TS(timezone=True), nullable=True),
        sa.Column("blast_radius", sa.Text(), nullable=True),
        sa.Column("blast_radius_by", sa.String(length=200), nullable=True),
        sa.Column("rollback_option", sa.Text(), nullable=True),
        sa.Column("rollback_option_by", sa.String(length=200), nullable=True),
        sa.Column("scope_confirmed_by", sa.String(length=200), nullable=True),
        sa.Column("scope_confirmed_at", TS(timezone=True), nullable=True),
        sa.Column("ci_passed_by", sa.String(length=200), nullable=True),
        sa.Column("ci_passed_at", TS(timezone=True), nullable=True),
        sa.Column("assessed_at", TS(timezone=True), nullable=True),
        sa.Column("approved_at", TS(timezone=True), nullable=True),
        sa.Column("approver_set", sa.String(length=200), nullable=True),
        sa.Column("validated_by", sa.String(length=200), nullable=True),
        sa.Column("validated_at", TS(timezone=True), nullable=True),
        sa.Column("validation_note", sa.Text(), nullable=True),
        sa.Column("closed_by", sa.String(length=200), nullable=True),
        sa.Column("closed_at", TS(timezone=True), nullable=True),
        sa.Column("close_summary", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "decision_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("release.id"), nullable=False),
        sa.Column("at", TS(timezone=True), nullable=False),
        sa.Column("recorded_at", TS(timezone=True), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("recorded_by", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("source_key", sa.String(length=200), nullable=False, unique=True),
        sa.Column("corrects_id", sa.Integer(), sa.ForeignKey("decision_log.id"), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_decision_log_release_id", "decision_log", ["release_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION decision_log_append_only() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION '{MESSAGE}'; END; $$ LANGUAGE plpgsql""")
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER decision_log_no_{verb.lower()} BEFORE {verb} ON decision_log "
                       "FOR EACH ROW EXECUTE FUNCTION decision_log_append_only()")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER decision_log_no_{verb.lower()} BEFORE {verb} ON decision_log "
                       f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END")


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    for verb in ("update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS decision_log_no_{verb}" + (" ON decision_log" if pg else ""))
    if pg:
        op.execute("DROP FUNCTION IF EXISTS decision_log_append_only()")
    op.drop_index("ix_decision_log_release_id", table_name="decision_log")
    op.drop_table("decision_log")
    op.drop_table("emergency")
    with op.batch_alter_table("task") as batch:
        batch.drop_column("owner_id")
