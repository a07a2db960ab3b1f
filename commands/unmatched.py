"""Deployments reported without an approved release to go with them (QMS 6.2).

A pipeline (POST /api/v1/deployments) or GitHub (an out-of-band deployment)
tells us a deployment happened that names no release, or names one that
was never approved. It happened: it is kept (UnmatchedDeployment), so the
population an auditor samples lists it too, and in a production environment
it is the non-conformance "production deployment without an approved release
record". A build reported as not from a tag (`"tag": null`) is the second
§6.2 item as well.

Even when an approved release of that service and version exists, the
deployment still counts as unmatched: it did not go through that release's
gate (no checklist, no separation-of-duties check, no window). The answer
names the release, so the pipeline can be fixed to report through it.

Each delivery has an identity (`external_id`, chosen by the caller: an
Idempotency-Key, a GitHub deployment id): a retry finds it and lands once,
on SQLite and on PostgreSQL alike (a unique column, not a check-then-insert).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Sequence

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from commands import nonconformance
from commands.clock import Clock
from commands.errors import NotFound
from commands.policy import Policy
from commands.rollback import is_production
from commands.states import APPROVED
from storage import audit
from storage.db import transaction
from storage.models import NonConformance, Release
from storage.quality_models import UnmatchedDeployment



@dataclass(frozen=True)
class UnmatchedReport:
    service: str
    environment: str
    status: str  # started | succeeded | failed | rolled_back
    reporter: str  # the audit actor: "pipeline:ci", "github:owner/repo"
    artifact: str | None = None
    commit: str | None = None
    actor: str | None = None  # who ran it, as reported (recorded, not an authorisation)
    tag: str | None = None
    untagged: bool = False  # "tag": null, said explicitly
    pipeline_url: str | None = None
    release_id: int | None = None  # a release it names, which is not an approved one
    commit_time: datetime | None = None
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Recorded:
    unmatched_id: int
    created: bool  # False: a retry of a delivery already recorded
    nonconformances: tuple[str, ...]  # NC-n refs
    matching: str | None  # REL-n: an approved release this deployment should have gone through
    message: str


def version_of(artifact: str | None) -> str | None:
    """The version an artefact names: "payments:2.3.1" -> "2.3.1", "registry/payments@2.3.1" -> "2.3.1"."""
    if not artifact:
        return None
    for sep in ("@", ":"):
        if sep in artifact:
            return artifact.rsplit(sep, 1)[1].strip() or None
    return artifact.strip() or None


def matching_release(session: Session, report: UnmatchedReport) -> Release | None:
    version = version_of(report.artifact)
    if version is None:
        return None
    return session.exec(select(Release).where(Release.service == report.service, Release.version == version,
                                              Release.environment == report.environment,
                                              Release.state == APPROVED).order_by(Release.id)).first()


def record_unmatched(db: Engine, report: UnmatchedReport, source: str, external_id: str, clock: Clock,
                     policy: Policy, also: Sequence[str] = ()) -> Recorded:
    """Keep the deployment, record its non-conformances; a repeated external_id changes nothing.

    `also`: identities an earlier try of this same delivery may have been recorded under (bot.api_deployments:
    the previous time bucket of a body digest)."""
    now = clock.now()
    with transaction(db) as session:
        for known in (external_id, *also):
            existing = _by_external_id(session, known)
            if existing is not None:
                return _answer(session, existing, False, policy)
        named = None
        if report.release_id is not None:
            named = session.get(Release, report.release_id)
            if named is None:
                raise NotFound(f"REL-{report.release_id} does not exist")
        match = matching_release(session, report)
        row = UnmatchedDeployment(
            external_id=external_id, source=source, release_id=report.release_id, service=report.service,
            environment=report.environment, status=report.status, artifact=report.artifact, commit=report.commit,
            tag=report.tag, actor=report.actor, pipeline=report.reporter, url=report.pipeline_url,
            reported_at=now,
            details={**report.details, "untagged": report.untagged,
                     "commit_time": report.commit_time.isoformat() if report.commit_time else None,
                     "matching_release": match.ref if match else None})
        try:
            with session.begin_nested():  # another process may record the same delivery at the same moment
                session.add(row)
                session.flush()
        except IntegrityError:
            return _answer(session, _by_external_id(session, external_id), False, policy)
        audit.record(session, actor=report.reporter, action="deployment_unmatched", release_id=report.release_id,
                     at=now, after={"unmatched": row.id, "source": source, "service": report.service,
                                    "environment": report.environment, "status": report.status,
                                    "artifact": report.artifact, "commit": report.commit, "tag": report.tag,
                                    "actor": report.actor, "matching_release": match.ref if match else None})
        if is_production(policy, report.environment):
            _nonconformances(session, named, row, report, match, now, policy)
        return _answer(session, row, True, policy)


def _nonconformances(session: Session, named: Release | None, row: UnmatchedDeployment, report: UnmatchedReport,
                     match: Release | None, now: datetime, policy: Policy) -> None:
    what = (f"{report.reporter} reported '{report.status}' of {report.service} {report.artifact or ''} to "
            f"{report.environment}" + (f" by {report.actor}" if report.actor else "")
            + (f" for {named.ref} ({named.state}) outside its gate" if named else ", naming no release")
            ).replace("  ", " ")
    if (report.details or {}).get("why"):  # why nothing matched, as the caller found it (GitHub's lookup)
        what += f" ({report.details['why']})"
    also = f"; {match.ref} is approved for this version but the deployment did not go through its gate" if match else ""
    nonconformance.record(session, named, kind=nonconformance.DEPLOYMENT_WITHOUT_APPROVAL,
                          subject=f"unmatched:{row.id}", detail=f"{what}: a production deployment without an "
                          f"approved release record{also}. commit={report.commit}.", actor=report.reporter, now=now,
                          service=report.service, unmatched_id=row.id, status=report.status, policy=policy)
    if report.untagged:
        nonconformance.record(session, named, kind=nonconformance.UNTAGGED_BUILD, subject=f"unmatched:{row.id}",
                              detail=f"{what}: the artefact was not built from a tag (\"tag\": null). "
                              f"commit={report.commit}.", actor=report.reporter, now=now, service=report.service,
                              unmatched_id=row.id, status=report.status, policy=policy)


def _by_external_id(session: Session, external_id: str) -> UnmatchedDeployment | None:
    return session.exec(select(UnmatchedDeployment).where(UnmatchedDeployment.external_id == external_id)).first()


def _answer(session: Session, row: UnmatchedDeployment, created: bool, policy: Policy) -> Recorded:
    ncs = session.exec(select(NonConformance).where(NonConformance.unmatched_id == row.id)
                       .order_by(NonConformance.id)).all()
    match = (row.details or {}).get("matching_release")
    refs = tuple(n.ref for n in ncs)
    text = (f"recorded as unmatched deployment {row.id}" if created
            else f"already recorded as unmatched deployment {row.id}")
    if refs:
        text += f"; a production deployment without an approved release record is a non-conformance (QMS 6.2): " \
                f"{', '.join(refs)}, posted to the release channel"
    elif not is_production(policy, row.environment):
        text += f"; {row.environment} is not a production environment, so it is no non-conformance"
    if match:
        text += (f". {match} is an approved release of this version: report deployments through "
                 f"/api/v1/releases/{match}/deployments so they pass its gate")
    return Recorded(row.id, created, refs, match, text + ".")
