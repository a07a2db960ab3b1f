"""What a CI/CD pipeline reports about a deployment, decided as one step each.

The Pipeline API (bot/api.py) only authenticates, parses and maps the
Outcome to a status; the rules are here. Each report is one decision in one
transaction. Non-conformances it records (QMS 6.2), each once however often
the report is repeated:
- a report for a release that was never approved (one per distinct report);
- in production, an outcome reported for a release whose deployment never
  started through the gate: deployed without an approved release record too;
- in production, `"tag": null` (the artefact was not built from a tag);
- a rollback over the SLO (commands.rollback), on restore.
`rolled_back` reported during stabilisation is the rollback decision and
the restoration in one step; the report may say when each happened
(`rollback_decided_at`, `restored_at`), else commands.rollback's rule applies.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping

from sqlalchemy.engine import Engine

from commands import nonconformance
from commands.clock import Clock
from commands.decision import Decision, decide
from commands.deploy import (Deployer, deployment_of, finish_change, finish_check, finish_replay, gate_reasons,
                             start_change, start_check, start_replay)
from commands.errors import CouldNotCheck
from commands.outcome import Outcome
from commands.policy import Policy
from commands.provenance import Provenance, package_nonconformances
from commands.rollback import RollbackTimes, is_production, rollback_check, rollback_change
from commands.states import STABILISING
from storage.models import Deployment, NonConformance, Release

# what a pipeline reports -> the outcome it records (None: the start)
STATUSES: dict[str, str | None] = {"started": None, "succeeded": "success", "failed": "failed",
                                   "rolled_back": "rolled_back"}


@dataclass(frozen=True)
class Report:
    status: str  # a key of STATUSES
    checklist: Mapping[str, bool] = field(default_factory=dict)
    artifact: str | None = None
    commit: str | None = None
    pipeline_url: str | None = None
    note: str | None = None
    tag: str | None = None
    untagged: bool = False  # "tag": null, said explicitly: the build was not from a tag (QMS 6.2)
    commit_time: datetime | None = None
    times: RollbackTimes | None = None  # what a rolled_back report says about the rollback's two times

    def detail(self) -> str:
        return " ".join(f"{k}={v}." for k, v in (("artifact", self.artifact), ("commit", self.commit),
                                                  ("pipeline_url", self.pipeline_url), ("note", self.note)) if v)


def report_deployment(db: Engine, who: Deployer, release_id: int, report: Report, clock: Clock,
                      policy: Policy) -> Outcome:
    """Outcome.data: "reasons" (a start the gate refused, or a non-conformance) and "nonconformance" (its id)."""
    outcome = STATUSES[report.status]
    refusal: dict = {"checklist": dict(report.checklist)} if outcome is None else {"outcome": outcome}

    def replay(d: Decision) -> Outcome | None:
        if d.release.approval_seq == 0:
            return None
        return start_replay(d, who) if outcome is None else finish_replay(d, who, outcome)

    def check(d: Decision):
        if d.release.approval_seq == 0:
            return "unapproved"  # not refused: recorded as what it is
        if outcome is None:
            return start_check(d, who, report.checklist, policy, refusal,
                               Provenance(report.artifact, report.commit))
        if deployment_of(d.session, d.release) is None and is_production(policy, d.release.environment):
            return "ungated"  # it ended, so it ran: outside the gate, recorded as what it is
        if outcome == "rolled_back" and d.release.state == STABILISING:
            # finished once already (success): deciding the rollback is what needs checking, and it
            # asks the same of the reporter as recording the end does
            return True, rollback_check(d, who)
        return False, finish_check(d, who, outcome)

    def change(d: Decision) -> Outcome:
        if d.context == "unapproved":
            return _nonconformance(d, who, report, policy)
        if d.context == "ungated":
            return _ungated(d, who, report, policy)
        if outcome is None:
            out = start_change(d, who, report.checklist, report.artifact, report.commit, report.pipeline_url,
                               policy, tag=report.tag, commit_time=report.commit_time)
            provenance(d, who, deployment_of(d.session, d.release), report, policy)
            return out
        deciding, dep = d.context
        if deciding:
            # the report is the decision too: with only the restore said, no earlier decision is known
            decided = (report.times.decided_at or report.times.restored_at) if report.times else None
            rollback_change(d, who, dep, report.note or "reported rolled back by the pipeline", decided)
        provenance(d, who, dep, report, policy)
        return finish_change(d, who, dep, outcome, policy, report.note, report.pipeline_url, report.times)

    out = decide(db, release_id, who.audit_name, "deploy" if outcome is None else "finish", clock.now(),
                 replay=replay, check=check, change=change, refusal_detail=refusal)
    if out.refused and "nonconformance" not in out.data:
        return Outcome(out.message, out.release, refused=True, data={"reasons": refusal.get("reasons", [])})
    return out


def _nonconformance(d: Decision, who: Deployer, report: Report, policy: Policy) -> Outcome:
    """QMS §6.2: a production deployment without an approved release record."""
    release = d.release
    reasons = []
    if report.status == "started":
        try:
            reasons = gate_reasons(release, d.session, who, d.now, report.checklist, policy,
                                   Provenance(report.artifact, report.commit))
        except CouldNotCheck as exc:  # what happened is recorded all the same
            reasons = [exc.message]
    nc = record_unapproved(d, who, report.status, report.detail(), policy)
    untagged(d.session, release, who, report, policy, d.now)
    reasons += package_missing(d, who, report, policy)  # as for an approved release deployed past the gate
    reasons.append(f"{release.ref} was never approved: a deployment reported for it is a non-conformance "
                   f"(QMS 6.2), recorded as non-conformance {nc.id} and posted to the release channel")
    return Outcome("\n".join(reasons), release, changed=True, refused=True,
                   data={"reasons": reasons, "nonconformance": nc.id})


def record_unapproved(d: Decision, who: Deployer, status: str, detail: str, policy: Policy) -> NonConformance:
    release = d.release
    text = (f"{who.audit_name} reported '{status}' for {release.ref} ({release.state}, never approved). "
            f"{detail}").strip()
    # A pipeline retrying after a timeout reports the same thing again: one record, one post.
    subject = f"{release.ref}:report:{hashlib.sha256(text.encode()).hexdigest()[:40]}"
    nc, _ = nonconformance.record(d.session, release, kind=nonconformance.DEPLOYMENT_WITHOUT_APPROVAL,
                                  subject=subject, detail=text, actor=who.audit_name, now=d.now, policy=policy,
                                  status=status)
    return nc


def _ungated(d: Decision, who: Deployer, report: Report, policy: Policy) -> Outcome:
    """QMS §6.2: an outcome reported for an approved release that never started through the gate. The
    deployment ran without the gate's checks, so it has no approved record of its own: recorded once,
    whatever it reported and however often. The release itself is left as it is."""
    release = d.release
    text = (f"{who.audit_name} reported '{report.status}' for {release.ref} ({release.state}), but no deployment "
            f"of it started through the gate. {report.detail()}").strip()
    nc, _ = nonconformance.record(d.session, release, kind=nonconformance.DEPLOYMENT_WITHOUT_APPROVAL,
                                  subject=f"{release.ref}:ungated", detail=text, actor=who.audit_name, now=d.now,
                                  status=report.status, policy=policy)
    untagged(d.session, release, who, report, policy, d.now)
    reason = (f"no deployment of {release.ref} started through the gate: a deployment reported without one is "
              f"a non-conformance (QMS 6.2), recorded as {nc.ref}; start deployments with status \"started\"")
    reasons = [reason, *package_missing(d, who, report, policy)]
    return Outcome("\n".join(reasons), release, changed=True, refused=True,
                   data={"reasons": reasons, "nonconformance": nc.id})


def package_missing(d: Decision, who: Deployer, report: Report, policy: Policy) -> list[str]:
    """QMS 6.2: a production deployment reported as run without passing the gate skipped its package check too:
    the mandatory test phases neither passed nor waived, and the release documents absent, are each a
    non-conformance of their own (commands.provenance), once per release however often it is reported."""
    if not is_production(policy, d.release.environment):
        return []
    ncs = package_nonconformances(d.session, d.release, report.artifact, who.audit_name, d.now, policy,
                                  how=f"was reported '{report.status}' by {who.audit_name} without passing the gate")
    return [f"{nc.ref}: {nc.detail}" for nc in ncs]


def provenance(d: Decision, who: Deployer, dep: Deployment | None, report: Report, policy: Policy) -> None:
    """What the report says of where the artefact came from, kept on the deployment (first said wins)."""
    if dep is None:
        return
    if report.tag and dep.tag is None:
        dep.tag = report.tag
    if report.commit_time and dep.commit_time is None:
        dep.commit_time = report.commit_time
    untagged(d.session, d.release, who, report, policy, d.now, dep.id)


def untagged(session, release: Release, who: Deployer, report: Report, policy: Policy, now: datetime,
             deployment_id: int | None = None) -> NonConformance | None:
    """QMS §6.2: an artefact deployed to production that was not built from a tagged commit. Once per release."""
    if not report.untagged or not is_production(policy, release.environment):
        return None
    detail = (f"{who.audit_name} reported that the artefact of {release.ref} was not built from a tag "
              f"(\"tag\": null). {report.detail()}").strip()
    nc, _ = nonconformance.record(session, release, kind=nonconformance.UNTAGGED_BUILD,
                                  subject=f"{release.ref}:untagged",
                                  detail=detail, actor=who.audit_name, now=now, deployment_id=deployment_id,
                                  status=report.status, policy=policy)
    return nc
