"""QMS 4.6 / 6.2: more than two emergency deployments of one service in a rolling 30 days.

Deployments are counted, not requests: an emergency requested and cancelled,
or never deployed, changed nothing in production. The count is taken when an
emergency deployment starts (commands.deploy.start_change): the deployment
that goes over the limit is the non-conformance, and it opens a root-cause
review owned by the release managers, due at the next quarterly engineering
review ([emergency] quarterly_review, QMS 6.1): the configured date, or the end of
the calendar quarter when none is set or the configured one has passed (a task
born overdue would be a non-conformance nobody could avoid).
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta

from sqlmodel import Session, select

from calendars.timeparse import zone
from commands import nonconformance
from commands.deferred import RELEASE_MANAGERS, ROOT_CAUSE
from commands.policy import Policy
from commands.text import when
from storage.models import Deployment, Release, Task


def recent_deployments(session: Session, service: str, now: datetime, days: int) -> list[int]:
    """Ids of the emergency releases of this service deployed (started) in the last `days` days, oldest first."""
    rows = session.exec(select(Release.id).join(Deployment, Deployment.release_id == Release.id).where(
        Release.service == service, Release.effective_type == "emergency",
        Deployment.started_at > now - timedelta(days=days), Deployment.started_at <= now)
        .order_by(Deployment.started_at, Release.id))
    # Emergencies are counted, not deployment rows: deployment.release_id is unique today, and a release
    # deployed again (should that ever be allowed) stays one emergency.
    return list(dict.fromkeys(rows))


REVIEW_AT = time(9, 0)  # the review's morning, in the release's zone


def quarter_end(day: date) -> date:
    """The last day of the calendar quarter `day` is in."""
    last_month = (day.month - 1) // 3 * 3 + 3
    first_of_next = date(day.year + 1, 1, 1) if last_month == 12 else date(day.year, last_month + 1, 1)
    return first_of_next - timedelta(days=1)


def review_due(configured: date | None, now: datetime, tz: str) -> tuple[datetime, str | None]:
    """When the root-cause review is due, and why, when it is not the configured date."""
    local = now.astimezone(zone(tz))
    if configured is not None:
        due = datetime.combine(configured, REVIEW_AT, tzinfo=zone(tz))
        if due > now:
            return due, None
    end = quarter_end(local.date())
    due = datetime.combine(end, REVIEW_AT, tzinfo=zone(tz))
    if due <= now:  # the quarter's last morning has gone: the next quarter's end
        due = datetime.combine(quarter_end(end + timedelta(days=1)), REVIEW_AT, tzinfo=zone(tz))
    if configured is None:
        return due, None
    policy_value = configured.isoformat()  # as policy.toml spells it, so the operator finds the line
    return due, (f"[emergency] quarterly_review {policy_value} has passed; due at the end of the "
                 f"quarter ({when(due, tz, show='d')}) instead, until the policy names the next review")


def emergency_deployed(session: Session, release: Release, actor: str, now: datetime, policy: Policy) -> None:
    p = policy.emergency
    recent = recent_deployments(session, release.service, now, p.frequency_days)
    if len(recent) <= p.frequency_limit:
        return
    refs = ", ".join(f"REL-{i}" for i in recent)
    detail = (f"{len(recent)} emergency deployments of {release.service} in {p.frequency_days} days ({refs}); "
              "QMS 4.6 asks for a root-cause review at the next engineering review")
    _, recorded = nonconformance.record(session, release, kind=nonconformance.EMERGENCY_FREQUENCY,
                                        subject=release.ref, detail=detail, actor=actor, now=now, policy=policy,
                                        deployments=[f"REL-{i}" for i in recent])
    owed = session.exec(select(Task).where(Task.release_id == release.id, Task.kind == ROOT_CAUSE)).first()
    if recorded and owed is None:
        review, why = review_due(p.quarterly_review, now, release.tz)
        details = {"deployments": [f"REL-{i}" for i in recent]} | ({"due_note": why} if why else {})
        session.add(Task(release_id=release.id, kind=ROOT_CAUSE, due_at=review, created_at=now,
                         owner_id=RELEASE_MANAGERS, details=details))
        session.flush()
