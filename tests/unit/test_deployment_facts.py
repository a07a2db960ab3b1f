"""deployment_fact (storage/deployment_facts.py) is what the records say, after every kind of write: a
deployment started and then finished, rolled back and restored; approvals before and after it started, and
written after it; its release reclassified, moved to another environment or service; the deployment moved
to another release or deleted; and the migration's copy of deployments recorded before the table existed.
"What the records say" is the oracle's own read of them (tests/unit/metrics_oracle_data.py, the code before
the table), so the two are independent."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, literal, select, text

import metrics_oracle_data
from storage import deployment_facts
from storage.db import read, transaction
from storage.models import AuditEvent, Deployment, DeploymentFact, Release, UTCDateTime

UTC = timezone.utc
T = datetime(2026, 11, 23, 10, 0, 12, 345678, tzinfo=UTC)
COLUMNS = ("release_id", "service", "type", "outcome", "started", "finished", "rollback_decided", "restored",
           "stabilisation_ends", "commit_time", "package_complete", "requested", "approved")


def _release(s, service: str = "payments", type_: str = "minor", environment: str = "production") -> Release:
    rel = Release(service=service, version="1", environment=environment, requested_type=type_, derived_type=type_,
                  effective_type=type_, answers={}, required_roles={}, start_at=T, end_at=T + timedelta(hours=1),
                  tz="UTC", duration_minutes=60, summary="s", requester_id="U0DEV", state="approved",
                  created_at=T - timedelta(days=2, microseconds=1), updated_at=T)
    s.add(rel)
    s.flush()
    return rel


def _approved(s, release_id: int, at: datetime) -> None:
    s.add(AuditEvent(release_id=release_id, actor="U0RM", action="approved", at=at, before={}, after={}))


def _as_recorded(db) -> None:
    """Every deployment has its row, and each finished one's row holds what the records give."""
    f = DeploymentFact.__table__
    with read(db) as s:
        assert sorted(s.execute(select(f.c.release_id)).scalars()) == sorted(
            s.execute(select(Deployment.release_id)).scalars())
        for env in ("production", "staging"):
            want = metrics_oracle_data.load(s, T - timedelta(days=30), T + timedelta(days=30), env).rows
            got = s.execute(select(*(f.c[c] for c in COLUMNS)).where(f.c.environment == env, f.c.outcome.is_not(None))
                            .order_by(f.c.started_at, f.c.release_id)).all()
            assert [tuple(r) for r in got] == [tuple(r) for r in want]


def test_a_deployment_row_follows_each_step_it_is_recorded_in(db):
    with transaction(db) as s:
        rid = _release(s).id
        _approved(s, rid, T - timedelta(hours=5))
    with transaction(db) as s:
        s.add(Deployment(release_id=rid, deployer_id="U0OPS", started_at=T))
    _as_recorded(db)
    steps = ({"outcome": "success", "finished_at": T + timedelta(minutes=20, microseconds=7),
              "stabilisation_ends_at": T + timedelta(hours=2, minutes=20), "package_complete": True,
              "commit_time": T - timedelta(hours=6)},
             {"rollback_decided_at": T + timedelta(minutes=50)},
             {"outcome": "rolled_back", "restored_at": T + timedelta(minutes=58, seconds=3),
              "finished_at": T + timedelta(minutes=58, seconds=3)},
             {"package_complete": None, "commit_time": None})
    for step in steps:
        with transaction(db) as s:
            dep = s.execute(select(Deployment).where(Deployment.release_id == rid)).scalar_one()
            for name, value in step.items():
                setattr(dep, name, value)
        _as_recorded(db)
    with read(db) as s:
        row = s.get(DeploymentFact, rid)
        assert (row.outcome, row.package_complete, row.commit_time) == ("rolled_back", None, None)
        assert abs(row.restored - row.rollback_decided - 483) < 1e-3


def test_the_last_approval_at_or_before_the_start_counts_whenever_it_was_written(db):
    with transaction(db) as s:
        rid = _release(s).id
        _approved(s, rid, T - timedelta(hours=5))
        s.add(Deployment(release_id=rid, deployer_id="U0OPS", started_at=T, outcome="success", finished_at=T))
    with transaction(db) as s:  # written after the deployment: one later still before the start, one after it
        _approved(s, rid, T - timedelta(hours=1))
        _approved(s, rid, T + timedelta(minutes=1))
    _as_recorded(db)
    with read(db) as s:
        assert s.get(DeploymentFact, rid).approved == deployment_facts_epoch(db, T - timedelta(hours=1))
    with transaction(db) as s:  # started later after all: the approval after the old start now counts
        dep = s.execute(select(Deployment).where(Deployment.release_id == rid)).scalar_one()
        dep.started_at = T + timedelta(hours=1)
    _as_recorded(db)
    with read(db) as s:
        assert s.get(DeploymentFact, rid).approved == deployment_facts_epoch(db, T + timedelta(minutes=1))


def test_a_release_reclassified_or_moved_after_its_deployment_moves_its_row(db):
    with transaction(db) as s:
        rid = _release(s, type_="minor", environment="staging").id
        s.add(Deployment(release_id=rid, deployer_id="U0OPS", started_at=T, outcome="success", finished_at=T))
    _as_recorded(db)
    with transaction(db) as s:
        rel = s.get(Release, rid)
        rel.effective_type, rel.environment, rel.service = "infrastructure", "production", "ledger"
    _as_recorded(db)
    with read(db) as s:
        row = s.get(DeploymentFact, rid)
        assert (row.type, row.environment, row.service) == ("infrastructure", "production", "ledger")


def test_a_deployment_moved_to_another_release_or_deleted_takes_its_row_along(db):
    with transaction(db) as s:
        first, second = _release(s).id, _release(s, service="ledger", type_="patch").id
        _approved(s, second, T - timedelta(hours=3))
        s.add(Deployment(release_id=first, deployer_id="U0OPS", started_at=T, outcome="failed", finished_at=T))
    with transaction(db) as s:
        s.execute(select(Deployment).where(Deployment.release_id == first)).scalar_one().release_id = second
    _as_recorded(db)
    with read(db) as s:
        assert s.get(DeploymentFact, first) is None
        assert (s.get(DeploymentFact, second).service, s.get(DeploymentFact, second).approved is not None) == \
            ("ledger", True)
    with transaction(db) as s:
        s.execute(delete(Deployment).where(Deployment.release_id == second))
    _as_recorded(db)
    with read(db) as s:
        assert s.execute(select(DeploymentFact.release_id)).all() == []


def test_the_migration_copies_the_deployments_recorded_before_it(db):
    with transaction(db) as s:
        for k in range(3):
            rid = _release(s, service=f"svc-{k}").id
            _approved(s, rid, T - timedelta(hours=k + 1))
            s.add(Deployment(release_id=rid, deployer_id="U0OPS", started_at=T + timedelta(hours=k),
                             outcome="success", finished_at=T + timedelta(hours=k, minutes=9)))
    with db.begin() as conn:  # as if the table had just been made: no trigger fires on deployment_fact itself
        conn.execute(delete(DeploymentFact.__table__))
        conn.execute(text(deployment_facts.backfill(conn.dialect)))
    _as_recorded(db)
    with read(db) as s:
        assert len(s.execute(select(DeploymentFact.release_id)).all()) == 3


def deployment_facts_epoch(db, at: datetime) -> float:
    """`at` as the database's epoch seconds (storage.deployment_facts.epoch)."""
    with read(db) as s:
        dialect = s.get_bind().dialect.name
        return s.execute(select(deployment_facts.epoch(literal(at, UTCDateTime()), dialect))).scalar_one()
