"""Recording a non-conformance (QMS 6.2): the one place that writes a NonConformance row.

Each is about one subject (a deferred step's task, the deployment that broke the
emergency frequency rule, one pipeline report) and is recorded once per kind and
subject: seeing it again (a retried delivery, a second process, a late record
after the deadline check) finds the row already there. Recording it audits
`nonconformance` and announces it in the release's thread and in the release
channel, where the release managers are mentioned: QMS 6.2 wants a corrective
action, and they own the register.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from commands import announce
from storage import audit, outbox
from storage.models import NonConformance, Release

# kinds recorded today (issue 11 grows this into the register)
DEPLOYMENT_WITHOUT_APPROVAL = "deployment_without_approval"
EMERGENCY_FREQUENCY = "emergency_frequency"
DEFERRED_STEP_OVERDUE = "deferred_step_overdue"
UNTAGGED_BUILD = "untagged_build"  # an artefact not built from a tagged, reviewed commit via the pipeline
ROLLBACK_SLO_EXCEEDED = "rollback_slo_exceeded"  # restored - decided over [deployment] rollback_slo
MISCLASSIFICATION = "misclassification"  # found after deployment (one accepted at request time is an exception)
NOTIFIED_ROLES = ("release_manager",)


def find(session: Session, kind: str, subject: str) -> NonConformance | None:
    return session.exec(select(NonConformance).where(NonConformance.kind == kind,
                                                     NonConformance.subject == subject)).first()


def record(session: Session, release: Release | None, *, kind: str, subject: str, detail: str, actor: str,
           now: datetime, service: str | None = None, deployment_id: int | None = None,
           unmatched_id: int | None = None, **audit_after: Any) -> tuple[NonConformance, bool]:
    """The non-conformance of this kind about this subject, and whether this call recorded it.

    `release` is None for a deployment that names no release (an UnmatchedDeployment)."""
    same = find(session, kind, subject)
    if same is not None:
        return same, False
    nc = NonConformance(release_id=release.id if release else None, kind=kind, subject=subject, detail=detail,
                        reported_by=actor, at=now, service=service or (release.service if release else None),
                        deployment_id=deployment_id, unmatched_id=unmatched_id)
    try:
        with session.begin_nested():  # another process may record the same one at the same moment
            session.add(nc)
            session.flush()
    except IntegrityError:
        return find(session, kind, subject), False  # type: ignore[return-value]
    rid = release.id if release else None
    audit.record(session, actor=actor, action="nonconformance", release_id=rid, at=now,
                 after={"kind": kind, **audit_after, "nonconformance": nc.id}, reason=detail)
    if release is not None:
        announce.note(session, release, "nonconformance", now, key_suffix=str(nc.id), detail=detail)
    outbox.enqueue(session, key=f"nonconformance:{nc.id}", kind=announce.CHANNEL_NOTE, release_id=rid,
                   at=now, payload={"event": "nonconformance", "ref": release.ref if release else nc.ref,
                                    "detail": detail, "roles": list(NOTIFIED_ROLES)})
    return nc, True
