"""QMS 4.6 / 6.2: more than two emergency deployments of one service in a rolling 30 days.

Deployments are counted, not requests: an emergency requested and cancelled,
or never deployed, changed nothing in production. The count is taken when an
emergency deployment starts (commands.deploy.start_change): the deployment
that goes over the limit is the non-conformance, and it opens a root-cause
review owned by the release managers, due at the next quarterly engineering
review ([emergency] quarterly_review, QMS 6.1).
"""
from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlmodel import Session, select

from calendars.timeparse import zone
from commands import nonconformance
from commands.deferred import RELEASE_MANAGERS, ROOT_CAUSE
from commands.policy import Policy
from storage.models import Deployment, Release, Task


def recent_deployments(session: Session, service: str, now: datetime, days: int) -> list[int]:
    """Ids of the emergency releases of this service deployed (started) in the last `days` days, oldest first."""
    rows = session.exec(select(Release.id).join(Deployment, Deployment.release_id == Release.id).where(
        Release.service == service, Release.effective_type == "emergency",
        Deployment.started_at > now - timedelta(days=days), Deployment.started_at <= now)
        .order_by(Deployment.started_at, Release.id))
    return list(rows)


def emergency_deployed(session: Session, release: Release, actor: str, now: datetime, policy: Policy) -> None:
    p = policy.emergency
    recent = recent_deployments(session, release.service, now, p.frequency_days)
    if len(recent) <= p.frequency_limit:
        return
    refs = ", ".join(f"REL-{i}" for i in recent)
    detail = (f"{len(recent)} emergency deployments of {release.service} in {p.frequency_days} days ({refs}); "
              "QMS 4.6 asks for a root-cause review at the next engineering review")
    _, recorded = nonconformance.record(session, release, kind=nonconformance.EMERGENCY_FREQUENCY,
                                        subject=release.ref, detail=detail, actor=actor, now=now,
                                        deployments=[f"REL-{i}" for i in recent])
    owed = session.exec(select(Task).where(Task.release_id == release.id, Task.kind == ROOT_CAUSE)).first()
    if recorded and owed is None:
        review = datetime.combine(p.quarterly_review, time(9, 0), tzinfo=zone(release.tz))
        session.add(Task(release_id=release.id, kind=ROOT_CAUSE, due_at=review, created_at=now,
                         owner_id=RELEASE_MANAGERS, details={"deployments": [f"REL-{i}" for i in recent]}))
        session.flush()
