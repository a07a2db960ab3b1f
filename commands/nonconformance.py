"""Recording a non-conformance (QMS 6.2): the one place that writes a NonConformance row.

Each is about one subject (a deferred step's task, the deployment that broke the
emergency frequency rule, one pipeline report) and is recorded once per kind and
subject: seeing it again (a retried delivery, a second process, a late record
after the deadline check) finds the row already there. Recording it audits
`nonconformance` and announces it in the release's thread and in the release
channel, where the release managers are mentioned: QMS 6.2 wants a corrective
action, and they own the register.

A new one enters the register (commands.nonconformance_register) open, with its
corrective action due `[nonconformance] action_due_business_days` business days
after detection, counted in the release's zone (UTC for one with no release: a
deployment that names none has no zone of its own). A second of the same kind
for the same service within `repeat_days` is a repeat of the latest earlier one
(QMS 6.2: "repeat non-conformances on the same item trigger a formal corrective
action"): its root cause must be written before it can be closed. Its reminders
are written with it and judged when due, so planning or finishing it early
needs no cancelling.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from calendars.business import add_business_days
from commands import announce
from commands.nonconformance_policy import NonconformancePolicy
from commands.text import when
from storage import audit, outbox
from storage.models import NonConformance, Release

if TYPE_CHECKING:
    from commands.policy import Policy

# kinds recorded today (issue 11 grows this into the register)
DEPLOYMENT_WITHOUT_APPROVAL = "deployment_without_approval"
EMERGENCY_FREQUENCY = "emergency_frequency"
DEFERRED_STEP_OVERDUE = "deferred_step_overdue"
UNTAGGED_BUILD = "untagged_build"  # an artefact not built from a tagged, reviewed commit via the pipeline
ROLLBACK_SLO_EXCEEDED = "rollback_slo_exceeded"  # restored - decided over [deployment] rollback_slo
MISCLASSIFICATION = "misclassification"  # found after deployment (one accepted at request time is an exception)
NOTIFIED_ROLES = ("release_manager",)
# An outbox row of its own kind (not announce.REMINDER): an NC may name no release, whose thread it would need.
NC_REMINDER = "nc_reminder"
REMINDERS = ("nc_soon", "nc_due", "nc_escalation")


def find(session: Session, kind: str, subject: str) -> NonConformance | None:
    return session.exec(select(NonConformance).where(NonConformance.kind == kind,
                                                     NonConformance.subject == subject)).first()


def zone_of(release: Release | None) -> str:
    """Where its business days are counted: the release's zone, else UTC."""
    return release.tz if release is not None and release.tz else "UTC"


def earlier_of_kind(session: Session, kind: str, service: str | None, now: datetime,
                    days: int) -> NonConformance | None:
    """The latest non-conformance of this kind for this service detected within `days` before now."""
    if not service:
        return None  # no service, no "same item": nothing to repeat
    return session.exec(select(NonConformance)
                        .where(NonConformance.kind == kind, NonConformance.service == service,
                               NonConformance.at >= now - timedelta(days=days), NonConformance.at <= now)
                        .order_by(NonConformance.at.desc(), NonConformance.id.desc())).first()


def record(session: Session, release: Release | None, *, kind: str, subject: str, detail: str, actor: str,
           now: datetime, service: str | None = None, deployment_id: int | None = None,
           unmatched_id: int | None = None, policy: "Policy",
           **audit_after: Any) -> tuple[NonConformance, bool]:
    """The non-conformance of this kind about this subject, and whether this call recorded it.

    `release` is None for a deployment that names no release (an UnmatchedDeployment). `policy` gives the
    due date's business days, the repeat window and the reminders: required, so that no recorder can
    fall back to the QMS defaults where a team's policy says otherwise."""
    same = find(session, kind, subject)
    if same is not None:
        return same, False
    p = policy.nonconformance
    service = service or (release.service if release else None)
    tz = zone_of(release)
    earlier = earlier_of_kind(session, kind, service, now, p.repeat_days)
    nc = NonConformance(release_id=release.id if release else None, kind=kind, subject=subject, detail=detail,
                        reported_by=actor, at=now, service=service, deployment_id=deployment_id,
                        unmatched_id=unmatched_id, state="open",
                        due_at=add_business_days(now, p.action_due_business_days, tz),
                        repeat=earlier is not None, repeat_of=earlier.id if earlier else None)
    try:
        with session.begin_nested():  # another process may record the same one at the same moment
            session.add(nc)
            session.flush()
    except IntegrityError:
        return find(session, kind, subject), False  # type: ignore[return-value]
    rid = release.id if release else None
    register = {"nonconformance": nc.id, "due_at": nc.due_at, "tz": tz, "repeat_of": nc.repeat_of}
    audit.record(session, actor=actor, action="nonconformance", release_id=rid, at=now,
                 after={"kind": kind, **audit_after, **register}, reason=detail)
    said = {"nc": nc.ref, "kind": kind, "due": when(nc.due_at, tz), "repeat_of": f"NC-{earlier.id}" if earlier else None}
    if release is not None:
        announce.note(session, release, "nonconformance", now, key_suffix=str(nc.id), detail=detail, **said)
    outbox.enqueue(session, key=f"nonconformance:{nc.id}", kind=announce.CHANNEL_NOTE, release_id=rid,
                   at=now, payload={"event": "nonconformance", "ref": release.ref if release else nc.ref,
                                    "detail": detail, "roles": list(NOTIFIED_ROLES), **said})
    _schedule_reminders(session, nc, p, now)
    return nc, True


def _schedule_reminders(session: Session, nc: NonConformance, p: NonconformancePolicy, now: datetime) -> None:
    """Before the due date and at it (the owner, or the release managers while it has none), and once
    after it (the release managers). Stable keys: a second process recording the same NC adds none."""
    assert nc.due_at is not None
    for what, due in (("nc_soon", nc.due_at - p.remind_before), ("nc_due", nc.due_at),
                      ("nc_escalation", nc.due_at + p.escalate_after)):
        outbox.enqueue(session, key=f"nc-reminder:{nc.id}:{what}", kind=NC_REMINDER, release_id=nc.release_id,
                       at=now, due_at=max(due, now), payload={"nc": nc.id, "reminder": what})
