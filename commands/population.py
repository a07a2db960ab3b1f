"""The population an auditor samples from: every deployment in a period, one row each, and every deployment
reported without an approved release (UnmatchedDeployment). Nothing may be missing from it, so it is read
in one read-only transaction straight from the tables, not from any list a person browses.

A row says whether the release record was complete: its evidence packet (commands.evidence) has no item
marked `missing`; the items that are missing are named."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import select

from commands import evidence
from commands.evidence_chain import ChainStatus
from commands.approval import GO
from commands.errors import InputError
from commands.record import show_release
from storage.db import read
from storage.models import AuditEvent, Deployment, NonConformance, Release, UnmatchedDeployment, Vote

COLUMNS = ("kind", "release", "type", "service", "version", "environment", "approvers", "approved_at", "deployer",
           "pipeline", "started_at", "finished_at", "outcome", "nonconformances", "record_complete", "missing")
_UNCHECKED = ChainStatus(False, None, "not checked for the population")
_FORM = "releasebot evidence --from 2026-10-01 --to 2026-12-31 [--environment production] [--format csv|json]"


@dataclass(frozen=True)
class Row:
    kind: str  # deployment | unmatched (reported without an approved release)
    release: str | None
    type: str | None
    service: str | None
    version: str | None
    environment: str | None
    approvers: list[str]  # "U0RM (release_manager)"
    approved_at: str | None
    deployer: str | None
    pipeline: str | None
    started_at: str | None
    finished_at: str | None
    outcome: str | None
    nonconformances: list[str] = field(default_factory=list)
    record_complete: bool = False
    missing: list[str] = field(default_factory=list)  # the packet's items marked missing

    def as_dict(self) -> dict:
        return asdict(self)


def period(first_day: str, last_day: str) -> tuple[datetime, datetime]:
    """From the start of the `from` day to the end of the `to` day, in UTC: both dates are included."""
    try:
        a, b = date.fromisoformat(first_day), date.fromisoformat(last_day)
    except (TypeError, ValueError):
        raise InputError(f"--from and --to are dates like 2026-10-01, not {first_day!r} and {last_day!r}",
                         form=_FORM) from None
    if b < a:
        raise InputError(f"--to {last_day} is before --from {first_day}", form=_FORM)
    return (datetime.combine(a, time(), timezone.utc), datetime.combine(b + timedelta(days=1), time(), timezone.utc))


def rows(db: Engine, start: datetime, end: datetime, environment: str | None, policy: Any) -> list[Row]:
    """policy: the one in force. A row's record is complete by what it requires of the release's type,
    exactly as the release's own packet judges it (commands.evidence_package)."""
    with read(db) as session:
        q = (select(Deployment, Release).join(Release, Release.id == Deployment.release_id)
             .where(Deployment.started_at >= start, Deployment.started_at < end))
        if environment:
            q = q.where(Release.environment == environment)
        deployed = list(session.exec(q.order_by(Deployment.started_at, Deployment.id)))
        uq = select(UnmatchedDeployment).where(UnmatchedDeployment.reported_at >= start,
                                               UnmatchedDeployment.reported_at < end)
        if environment:
            uq = uq.where(UnmatchedDeployment.environment == environment)
        unmatched = list(session.exec(uq.order_by(UnmatchedDeployment.reported_at, UnmatchedDeployment.id)))
        ncs = list(session.exec(select(NonConformance).order_by(NonConformance.id)))
        out = []
        for dep, rel in deployed:
            votes = session.exec(select(Vote).where(Vote.release_id == rel.id, Vote.round == rel.round,
                                                    Vote.decision == GO).order_by(Vote.id))
            approved = session.exec(select(AuditEvent.at).where(AuditEvent.release_id == rel.id,
                                                                AuditEvent.action == "approved",
                                                                AuditEvent.at <= dep.started_at)
                                    .order_by(AuditEvent.id.desc())).first()
            refs = [n.ref for n in ncs if n.release_id == rel.id or n.deployment_id == dep.id]
            out.append(Row("deployment", rel.ref, rel.effective_type, rel.service, rel.version, rel.environment,
                           [f"{v.voter_id} ({v.role})" for v in votes], evidence.iso(approved), dep.deployer_id,
                           dep.pipeline or ("manual" if dep.manual else None), evidence.iso(dep.started_at),
                           evidence.iso(dep.finished_at), dep.outcome, refs))
        for u in unmatched:
            refs = [n.ref for n in ncs if n.unmatched_id == u.id]
            out.append(Row("unmatched", f"REL-{u.release_id}" if u.release_id else None, None, u.service,
                           u.tag or u.artifact,
                           u.environment, [], None, u.actor, u.pipeline, evidence.iso(u.reported_at), None,
                           u.status, refs, False, ["an approved release"]))
    # Completeness reads each release's whole record, as its packet would (outside the listing's transaction).
    done = []
    for row in out:
        if row.kind == "deployment":
            rec = show_release(db, int(row.release.split("-")[1]))
            built = evidence.build(rec, _UNCHECKED, end, policy)  # only its marks are read: the time is not shown
            missing = [f"{s.number}. {i.label}" for s in built.sections for i in s.items if i.mark == evidence.MISSING]
            row = Row(**{**row.as_dict(), "record_complete": not missing, "missing": missing})
        done.append(row)
    return done
