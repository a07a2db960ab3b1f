"""The KPIs counted in SQL (commands.metrics_sql) are the KPIs the per-deployment Python classification gave
(tests/unit/metrics_oracle.py, the code before issue 13's performance work), figure for figure and week for
week, on hundreds of small random histories with fixed seeds: rollbacks inside and outside the window,
several incidents per deployment (resolved or not, before or after the window), emergencies of the same
service within the hour, within the window and just after the period, failed deployments, missing
commit_time, approvals after the start, times to the microsecond, and a review zone with a DST change."""
from __future__ import annotations

import random
from dataclasses import asdict
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

import metrics_oracle
from commands.metrics import compute
from commands.policy import Policy
from conftest import ROLES
from storage.db import transaction
from storage.models import AuditEvent, Deployment, Incident, Release

UTC = timezone.utc
T0 = datetime(2026, 10, 19, tzinfo=UTC)  # a Monday; Europe/Berlin leaves summer time on 2026-10-25
HISTORIES = 200


def _t(rng: random.Random, base: datetime, hours: float, exact: bool) -> datetime:
    """A random time; `exact` histories keep whole minutes so that ties (a rollback decided the second the
    window ends, an emergency exactly an hour after the finish) really happen."""
    if exact:
        return base + timedelta(minutes=rng.randrange(int(hours * 60)))
    return base + timedelta(seconds=rng.uniform(0, hours * 3600), microseconds=rng.randrange(1_000_000))


def _after(rng: random.Random, t: datetime, low: float, high: float, exact: bool, *ties: float) -> datetime:
    if ties and rng.random() < 0.4:
        return t + timedelta(minutes=rng.choice(ties))
    return _t(rng, t + timedelta(minutes=low), (high - low) / 60, exact)


_FIELDS = ("started_at", "outcome", "finished_at", "package_complete", "commit_time", "stabilisation_ends_at",
           "rollback_decided_at", "restored_at")


def _history(s, rng: random.Random, service: str, stage: random.Random) -> None:
    """A dozen releases or so of one service over three weeks around the measured fortnight. `stage` only
    changes how the records are written, never what they end as: approvals after the deployment, a
    deployment started and then finished (or first recorded with another start), a release reclassified or
    moved to another environment or service after it was deployed. deployment_fact follows each of those
    writes (storage/deployment_facts.py), and the oracle reads the records themselves."""
    exact = rng.random() < 0.5
    for _ in range(rng.randint(0, 14)):
        kind = rng.choice(("minor", "patch", "major", "infrastructure", "emergency"))
        started = _t(rng, T0 - timedelta(days=3), 21 * 24, exact)
        requested = started - timedelta(hours=rng.uniform(0, 100))
        state = rng.choice(("closed", "closed", "cancelled")) if kind == "emergency" else "closed"
        env = "production" if rng.random() < 0.9 else "staging"
        # a release's own window may start after its deployment finished: it is not its own emergency fix
        window = started + timedelta(minutes=rng.choice((0, 0, 0, 1, 30, 60, 61, 200)))
        moved = stage.random() < 0.2  # written first as another type, environment and service
        rel = Release(service=f"{service}-before" if moved else service, version="1",
                      environment=("staging" if env == "production" else "production") if moved else env,
                      requested_type=kind, derived_type=kind, effective_type="patch" if moved else kind, answers={},
                      required_roles={}, start_at=window, end_at=window + timedelta(hours=1), tz="UTC",
                      duration_minutes=60, summary="s", requester_id="U0DEV", state=state, created_at=requested,
                      updated_at=started)
        s.add(rel)
        s.flush()
        approvals = [AuditEvent(release_id=rel.id, actor="U0RM", action="approved", before={}, after={},
                                at=started if rng.random() < 0.2 else requested + timedelta(hours=rng.uniform(0, 120)))
                     for _ in range(rng.choice((0, 1, 1, 2)))]
        late = stage.random() < 0.4  # the approvals are written after the deployment
        if not late:
            s.add_all(approvals)
        if rng.random() < 0.25:
            s.add_all(approvals if late else [])
            if moved:
                rel.service, rel.environment, rel.effective_type = service, env, kind
            continue  # requested (an emergency that only opened its window), never deployed
        finished = _after(rng, started, 0, 120, exact, 0)
        outcome = rng.choice(("success",) * 6 + ("rolled_back", "failed", None))
        dep = Deployment(release_id=rel.id, deployer_id="U0OPS", started_at=started, outcome=outcome,
                         finished_at=None if outcome is None or rng.random() < 0.05 else finished,
                         package_complete=rng.choice((True, True, False, None)),
                         commit_time=None if rng.random() < 0.3 else started - timedelta(hours=rng.uniform(0, 50)))
        window = rng.choice((30, 60, 120, 600))
        if outcome == "success" and rng.random() < 0.9:
            dep.stabilisation_ends_at = finished + timedelta(minutes=window)
        if outcome == "rolled_back" or (outcome == "success" and rng.random() < 0.2):
            dep.rollback_decided_at = _after(rng, finished, -10, 300, exact, 0, window)
            if rng.random() < 0.8:
                dep.restored_at = _after(rng, dep.rollback_decided_at, 0, 40, exact, 0)
        if stage.random() < 0.5:  # recorded as it happens: started (perhaps at another time), then the rest
            first = Deployment(release_id=rel.id, deployer_id="U0OPS",
                               started_at=started + timedelta(hours=stage.choice((0, 0, 3, -3))))
            s.add(first)
            s.flush()
            for name in _FIELDS:
                setattr(first, name, getattr(dep, name))
        else:
            s.add(dep)
        s.flush()
        s.add_all(approvals if late else [])
        if moved:
            rel.service, rel.environment, rel.effective_type = service, env, kind
        for k in range(rng.choice((0, 0, 0, 1, 2, 3))):
            opened = _after(rng, finished, -30, 400, exact, 0, window)
            s.add(Incident(key=f"INC-{rel.id}-{k}", service=service, opened_at=opened, severity="P2",
                           resolved_at=None if rng.random() < 0.3 else _after(rng, opened, 1, 500, exact),
                           caused_by_release_id=rel.id, reported_by="pipeline:pd", recorded_at=opened,
                           updated_at=opened))
        if rng.random() < 0.3:  # an emergency fix of the same service soon after (or a bit before)
            at = finished + timedelta(minutes=rng.choice((-5, 0, 1, 30, 59, 60, 61, 90, 120, 121, 600, 700)))
            em = Release(service=service, version="2", environment="production", requested_type="emergency",
                         derived_type="emergency", effective_type="emergency", answers={}, required_roles={},
                         start_at=at, end_at=at + timedelta(hours=1), tz="UTC", duration_minutes=60, summary="fix",
                         requester_id="U0DEV", state=rng.choice(("pending", "approved", "cancelled")),
                         created_at=at, updated_at=at)
            s.add(em)


POLICIES = {
    "default": {},
    "berlin": {"review_tz": "Europe/Berlin", "min_sample": 1, "success_window": "30m"},
    "sparse": {"review_tz": "America/New_York", "min_sample": 2, "success_window": "2h"},
}


@pytest.fixture
def histories(db):
    with transaction(db) as s:
        for seed in range(HISTORIES):
            _history(s, random.Random(seed), f"svc-{seed}", random.Random(f"stage-{seed}"))
    with db.begin() as conn:  # the planner's statistics, as a live database has them (autovacuum)
        conn.execute(text("ANALYZE"))
    return db


def _figures(report) -> list[dict]:
    return [{k: v for k, v in asdict(f).items() if k != "releases"} for f in report.figures]


def _same(db, start, end, service, policy, explain: bool = True) -> None:
    fast = compute(db, start, end, service=service, policy=policy)
    oracle = metrics_oracle.compute(db, start, end, service=service, policy=policy)
    assert fast.as_dict() == oracle.as_dict()
    if not explain:
        return
    explained = compute(db, start, end, service=service, policy=policy, explain=True)
    wanted = metrics_oracle.compute(db, start, end, service=service, policy=policy, explain=True)
    assert [(f.key, f.releases) for f in explained.figures] == [(f.key, f.releases) for f in wanted.figures]
    assert _figures(explained) == _figures(fast)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_each_history_counts_as_the_python_classification_did(histories, name):
    policy = Policy.from_mapping({"roles": ROLES, "metrics": POLICIES[name]}, source="test policy")
    rng = random.Random(name)
    for seed in range(HISTORIES):
        length = rng.choice((timedelta(days=1), timedelta(days=7), timedelta(days=14), timedelta(days=10, hours=5)))
        start = T0 + timedelta(hours=rng.choice((0, 0, 7, 30, 100)))
        _same(histories, start, start + length, f"svc-{seed}", policy, explain=seed % 10 == 0)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_all_services_together_count_as_the_python_classification_did(histories, name):
    policy = Policy.from_mapping({"roles": ROLES, "metrics": POLICIES[name]}, source="test policy")
    _same(histories, T0, T0 + timedelta(days=14), None, policy)
    _same(histories, T0 - timedelta(days=5), T0 + timedelta(days=30), None, policy)
    _same(histories, T0 + timedelta(days=6, hours=3), T0 + timedelta(days=6, hours=9), None, policy)
