"""GitHub's `deployment_status` events, recorded on the release (issue 14).

`in_progress`, `success`, `failure` and `error` go through the pipeline API's own use case
(commands.pipeline.report_deployment): the same gate at the start, the same finish, stabilisation after a
success, the same non-conformance for a release that was never approved. A success in a mapped production
environment that matches no release at all is an UnmatchedDeployment and the non-conformance "production
deployment without an approved release record" (QMS 6.2), posted to the release channel; it is recorded for
environments without the protection rule too, so a team sees what goes around it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.engine import Engine

from commands import unmatched
from commands.clock import Clock
from commands.deploy import CHECKLIST, Deployer
from commands.github_gate import match_release, provenance_of
from commands.outcome import Outcome
from commands.pipeline import Report, report_deployment
from commands.policy import Policy
from commands.rollback import is_production
from storage.db import read
from storage.github_models import GithubRequest

# GitHub's deployment states -> the pipeline API's report statuses; the others (queued, pending, inactive)
# say nothing the release records
STATUSES = {"in_progress": "started", "success": "succeeded", "failure": "failed", "error": "failed"}


@dataclass(frozen=True)
class StatusEvent:
    deployment_id: int
    repo: str
    environment: str
    state: str  # GitHub's deployment_status.state
    sender: str
    sha: str | None = None
    ref: str | None = None
    url: str | None = None  # the run's log or target URL
    payload: Mapping[str, Any] = field(default_factory=dict)  # the deployment's own payload


def which_release(db: Engine, ev: StatusEvent, policy: Policy) -> tuple[int | None, str | None]:
    """The release this deployment is (the one its protection rule request matched, else by the same order
    as the request), or None and why none is."""
    mapped = policy.github.environment(ev.repo, ev.environment)
    if mapped is None:
        return None, "not mapped"
    with read(db) as session:
        asked = session.scalars(select(GithubRequest.release_id).where(
            GithubRequest.deployment_id == ev.deployment_id, GithubRequest.release_id.is_not(None))).first()
        if asked is not None:
            return asked, None
        release, why = match_release(session, *mapped, ev.payload, ev.ref)
        return (release.id, None) if release else (None, why)


def deployer_of(db: Engine, deployment_id: int) -> str | None:
    """The Slack user the protection rule checked for this deployment, if it asked."""
    with read(db) as session:
        return session.scalars(select(GithubRequest.deployer_id).where(
            GithubRequest.deployment_id == deployment_id, GithubRequest.deployer_id.is_not(None))).first()


def report(ev: StatusEvent) -> Report:
    given = ev.payload.get("checklist")
    checklist = {k: given.get(k) is True for k, _ in CHECKLIST} if isinstance(given, dict) else {}
    made = provenance_of(ev.payload, ev.ref, ev.sha)  # the same artefact and commit as the protection rule checked
    return Report(STATUSES[ev.state], checklist, artifact=made.artifact, commit=made.commit, pipeline_url=ev.url,
                  note=f"GitHub deployment {ev.deployment_id} of {ev.repo} to {ev.environment}: {ev.state}")


def deployment_status(db: Engine, ev: StatusEvent, who: Deployer, clock: Clock, policy: Policy) -> Outcome:
    """Record one deployment status; an event GitHub sends again records nothing new (the use cases' replays,
    the unmatched deployment's external id)."""
    if ev.state not in STATUSES:
        return Outcome(f"deployment status {ev.state} records nothing", None)
    release_id, why = which_release(db, ev, policy)
    if why == "not mapped":
        return Outcome(f"{ev.repo} environment {ev.environment} is not mapped; nothing recorded", None)
    if release_id is not None:
        return report_deployment(db, who, release_id, report(ev), clock, policy)
    service, environment = policy.github.environment(ev.repo, ev.environment)  # type: ignore[misc]
    if ev.state != "success" or not is_production(policy, environment):
        return Outcome(f"no release matches ({why}); a {ev.state} in {environment} is not recorded", None)
    # the same recorder as the pipeline API's POST /api/v1/deployments: one row and one NC per GitHub deployment
    out = unmatched.record_unmatched(db, unmatched.UnmatchedReport(
        service=service, environment=environment, status="succeeded", reporter=who.audit_name,
        artifact=(ev.ref or "")[:200] or None, commit=(ev.sha or "")[:80] or None, tag=(ev.ref or "")[:200] or None, actor=ev.sender,
        pipeline_url=ev.url, details={"repo": ev.repo, "github_environment": ev.environment,
                                      "deployment_id": ev.deployment_id, "sender": ev.sender,
                                      "why": f"GitHub {ev.repo}, deployment {ev.deployment_id}: {why}"}),
        "github", f"github:{ev.deployment_id}", clock, policy)
    return Outcome(out.message, None, changed=out.created, refused=True,
                   data={"nonconformance": out.nonconformances[0] if out.nonconformances else None})
