"""A hand-built release history for the metrics tests: releases, their deployments, approvals and incidents
written as rows with exact times, so each KPI's definition can be pinned to the minute."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from storage.db import transaction
from storage.models import AuditEvent, Deployment, Incident, Release

UTC = timezone.utc


def deployed(db, *, service: str = "payments", type_: str = "minor", started: datetime, minutes: int = 20,
             outcome: str = "success", requested: datetime | None = None, approved: datetime | None = None,
             stabilisation: timedelta = timedelta(hours=2), rollback_after: timedelta | None = None,
             restored_after: timedelta | None = None, commit_before: timedelta | None = None,
             package_complete: bool | None = None, environment: str = "production") -> int:
    """A release deployed at `started` for `minutes`. outcome=success opens a stabilisation window;
    rollback_after (from the finish) decides a rollback in it; restored_after (from the rollback) ends it
    rolled back. Returns the release id."""
    finished = started + timedelta(minutes=minutes)
    requested = requested or started - timedelta(days=3)
    with transaction(db) as s:
        rel = Release(service=service, version="1.0", environment=environment, requested_type=type_,
                      derived_type=type_, effective_type=type_, answers={}, required_roles={},
                      start_at=started, end_at=started + timedelta(hours=1), tz="UTC", duration_minutes=60,
                      summary="s", requester_id="U0DEV", state="closed", created_at=requested, updated_at=started)
        s.add(rel)
        s.flush()
        dep = Deployment(release_id=rel.id, deployer_id="U0OPS", started_at=started, finished_at=finished,
                         outcome=outcome, package_complete=package_complete,
                         commit_time=started - commit_before if commit_before else None)
        if outcome == "success":
            dep.stabilisation_ends_at = finished + stabilisation
        if outcome == "rolled_back":
            dep.rollback_decided_at, dep.restored_at = finished, finished
        if rollback_after is not None:
            dep.rollback_decided_at = finished + rollback_after
            if restored_after is not None:
                dep.outcome = "rolled_back"
                dep.restored_at = dep.finished_at = dep.rollback_decided_at + restored_after
        s.add(dep)
        s.add(AuditEvent(release_id=rel.id, actor="U0RM", action="approved",
                         at=approved or requested + timedelta(hours=2), before={}, after={}))
        return rel.id


def emergency_requested(db, *, service: str = "payments", at: datetime) -> int:
    """An emergency release of `service` opened at `at` (its window starts then), not deployed."""
    with transaction(db) as s:
        rel = Release(service=service, version="1.0.1", environment="production", requested_type="emergency",
                      derived_type="emergency", effective_type="emergency", answers={}, required_roles={},
                      start_at=at, end_at=at + timedelta(hours=4), tz="UTC", duration_minutes=240, summary="fix",
                      requester_id="U0DEV", state="pending", created_at=at, updated_at=at)
        s.add(rel)
        s.flush()
        return rel.id


def incident(db, key: str, *, release_id: int | None, opened: datetime, resolved: datetime | None = None,
             service: str = "payments") -> None:
    with transaction(db) as s:
        s.add(Incident(key=key, service=service, opened_at=opened, resolved_at=resolved, severity="P2",
                       caused_by_release_id=release_id, reported_by="pipeline:pd", recorded_at=opened,
                       updated_at=opened))
