"""deployment_fact: one row per deployment with what the KPIs are counted from, kept by the database.

commands.metrics reads a quarter of 100k deployments in under a second (issue 13). Read from the records
themselves, each of those needs its release (a look-up), the last `approved` audit event before it started
(another) and seven timestamps converted to epoch seconds; on SQLite that alone is most of a second. This
table holds those values already converted, written by triggers on deployment, release and audit_event in
the same transaction as the change, so that every write path (the bot, the pipeline API, a migration, a
hand-written UPDATE) keeps it exact. It is a copy: nothing writes it but the triggers.

The epoch values are those of `epoch()` below, the same expression commands.metrics has always compared
(on SQLite julianday rounded to the millisecond; PostgreSQL's extract), so the figures do not change by a
digit. `started_at` is kept as it is stored, for the period's bounds and the order of REL-n lists.

Migrations make the triggers with `create()` and the first rows with `backfill()` (0025). A migration that
rebuilds deployment, release or audit_event (Alembic's batch mode on SQLite copies a table and drops the old
one, and its triggers with it) must create them again, and a change to what they write is a new migration
that drops them, makes them again and refills the table.
"""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Float, Index, cast, func, literal_column
from sqlmodel import Field, SQLModel

from storage.columns import _ts

_UNIX_JULIAN = 2440587.5  # julianday of 1970-01-01T00:00Z
EPOCHS = ("started", "finished", "rollback_decided", "restored", "stabilisation_ends", "commit_time", "requested",
          "approved")
# a change to any of these refreshes the deployment's row
WATCHED = ("release_id", "started_at", "finished_at", "outcome", "rollback_decided_at", "restored_at",
           "stabilisation_ends_at", "commit_time", "package_complete")
RELEASE_WATCHED = ("environment", "service", "effective_type", "created_at")


class DeploymentFact(SQLModel, table=True):
    """A deployment as the KPIs see it; times in epoch seconds (None where not recorded)."""

    __tablename__ = "deployment_fact"
    # a period's deployments are a range of the first index, which holds every column (the table itself is
    # never visited); the emergencies that followed a deployment find it by service and finish in the second
    __table_args__ = (Index("ix_deployment_fact_period", "environment", "started_at", "release_id", "outcome",
                            "service", "type", "package_complete", *EPOCHS),
                      Index("ix_deployment_fact_service", "environment", "service", "finished", "outcome",
                            "started_at", "release_id"))

    # deployment.release_id (unique). No foreign key: the triggers add and remove the row with the deployment
    release_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    environment: str = Field(max_length=60)  # the release's
    service: str = Field(max_length=120)  # the release's
    type: str = Field(max_length=20)  # the release's effective_type
    outcome: Optional[str] = Field(default=None, max_length=20)
    package_complete: Optional[bool] = None
    started_at: datetime = _ts(nullable=False)
    started: float
    finished: Optional[float] = None
    rollback_decided: Optional[float] = None
    restored: Optional[float] = None
    stabilisation_ends: Optional[float] = None
    commit_time: Optional[float] = None
    requested: float  # the release's created_at
    approved: Optional[float] = None  # the release's last `approved` audit event at or before started_at


def epoch(column, dialect: str):
    """A timestamp as epoch seconds, the float every KPI comparison and duration is made of."""
    if dialect == "sqlite":  # to the millisecond: julianday's float carries noise below that
        return func.round((func.julianday(column) - _UNIX_JULIAN) * 86400.0, 3)
    return cast(func.extract("epoch", column), Float)


def _epoch_sql(column_sql: str, dialect) -> str:
    """epoch() of a column, as SQL text for a trigger's body."""
    expression = epoch(literal_column(column_sql), dialect.name)
    return str(expression.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _approved(row: str) -> str:
    return (f"(SELECT max(a.at) FROM audit_event a WHERE a.release_id = {row}.release_id "
            f"AND a.action = 'approved' AND a.at <= {row}.started_at)")


def _columns() -> list[str]:
    return ["release_id", "environment", "service", "type", "outcome", "package_complete", "started_at", *EPOCHS]


def _values(row: str, dialect) -> list[str]:
    """Each column's value for the deployment `row` (NEW in a trigger, d in the backfill) and its release r."""
    times = ("started_at", "finished_at", "rollback_decided_at", "restored_at", "stabilisation_ends_at", "commit_time")
    return [f"{row}.release_id", "r.environment", "r.service", "r.effective_type", f"{row}.outcome",
            f"{row}.package_complete", f"{row}.started_at", *(_epoch_sql(f"{row}.{c}", dialect) for c in times),
            _epoch_sql("r.created_at", dialect), _epoch_sql(_approved(row), dialect)]


def backfill(dialect) -> str:
    """The rows of the deployments already recorded (the migration that adds the table)."""
    return (f"INSERT INTO deployment_fact ({', '.join(_columns())}) SELECT {', '.join(_values('d', dialect))} "
            "FROM deployment d JOIN release r ON r.id = d.release_id")


def _pg_function(name: str, body: str) -> str:
    return (f"CREATE OR REPLACE FUNCTION deployment_fact_{name}() RETURNS trigger AS $$ "
            f"BEGIN {body}; RETURN NULL; END; $$ LANGUAGE plpgsql")


def _pg_trigger(name: str, when: str, table: str, condition: str = "") -> str:
    return (f"CREATE TRIGGER deployment_fact_{name} AFTER {when} ON {table} FOR EACH ROW {condition}"
            f"EXECUTE FUNCTION deployment_fact_{name}()")


def create(dialect) -> list[str]:
    """The triggers that keep deployment_fact, as SQL statements for this dialect: a deployment's row is
    written again whenever the deployment is (insert, any change to what it holds, delete), and follows its
    release's fields and approvals."""
    columns, new = ", ".join(_columns()), ", ".join(_values("NEW", dialect))
    upsert = f"INTO deployment_fact ({columns}) SELECT {new} FROM release r WHERE r.id = NEW.release_id"
    moved = "DELETE FROM deployment_fact WHERE release_id = OLD.release_id"  # deleted, or moved to another release
    release = ("UPDATE deployment_fact SET environment = NEW.environment, service = NEW.service, "
               f"type = NEW.effective_type, requested = {_epoch_sql('NEW.created_at', dialect)} "
               "WHERE release_id = NEW.id")
    approval = (f"UPDATE deployment_fact SET approved = {_epoch_sql(_approved('deployment_fact'), dialect)} "
                "WHERE release_id = NEW.release_id")
    watched, release_watched = ", ".join(WATCHED), ", ".join(RELEASE_WATCHED)
    if dialect.name != "postgresql":
        return [
            f"CREATE TRIGGER deployment_fact_insert AFTER INSERT ON deployment BEGIN INSERT OR REPLACE {upsert}; END",
            f"CREATE TRIGGER deployment_fact_update AFTER UPDATE OF {watched} ON deployment BEGIN "
            f"{moved} AND OLD.release_id IS NOT NEW.release_id; INSERT OR REPLACE {upsert}; END",
            f"CREATE TRIGGER deployment_fact_delete AFTER DELETE ON deployment BEGIN {moved}; END",
            f"CREATE TRIGGER deployment_fact_release AFTER UPDATE OF {release_watched} ON release BEGIN {release}; END",
            "CREATE TRIGGER deployment_fact_approval AFTER INSERT ON audit_event WHEN NEW.action = 'approved' "
            f"BEGIN {approval}; END"]
    assignments = ", ".join(f"{c} = EXCLUDED.{c}" for c in _columns()[1:])
    return [
        _pg_function("deployment", f"IF TG_OP = 'DELETE' THEN {moved}; RETURN NULL; END IF; "
                                   f"IF TG_OP = 'UPDATE' AND OLD.release_id <> NEW.release_id THEN {moved}; END IF; "
                                   f"INSERT {upsert} ON CONFLICT (release_id) DO UPDATE SET {assignments}"),
        _pg_trigger("deployment", f"INSERT OR DELETE OR UPDATE OF {watched}", "deployment"),
        _pg_function("release", release),
        _pg_trigger("release", f"UPDATE OF {release_watched}", "release"),
        _pg_function("approval", approval),
        _pg_trigger("approval", "INSERT", "audit_event", "WHEN (NEW.action = 'approved') ")]


def drop(dialect) -> list[str]:
    if dialect.name != "postgresql":
        return [f"DROP TRIGGER IF EXISTS deployment_fact_{name}"
                for name in ("insert", "update", "delete", "release", "approval")]
    on = {"deployment": "deployment", "release": "release", "approval": "audit_event"}
    return [*(f"DROP TRIGGER IF EXISTS deployment_fact_{name} ON {table}" for name, table in on.items()),
            *(f"DROP FUNCTION IF EXISTS deployment_fact_{name}()" for name in on)]
