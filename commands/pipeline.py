"""What a CI/CD pipeline reports about a deployment, decided as one step each.

The Pipeline API (bot/api.py) only authenticates, parses and maps the
Outcome to a status; the rules are here. Each report is one decision in one
transaction: a report for a release that was never approved is recorded as
a non-conformance (QMS 6.2); `rolled_back` reported during stabilisation is
the rollback decision and the restoration at once, as a pipeline that rolls
back by itself knows only the end.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Mapping

from sqlalchemy.engine import Engine

from commands import nonconformance
from commands.clock import Clock
from commands.decision import Decision, decide
from commands.deploy import (Deployer, finish_change, finish_check, finish_replay, gate_reasons, rollback_change,
                             rollback_check, start_change, start_check, start_replay)
from commands.errors import CouldNotCheck
from commands.outcome import Outcome
from commands.policy import Policy
from commands.provenance import Provenance
from commands.states import STABILISING
from storage.models import NonConformance

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
        if outcome == "rolled_back" and d.release.state == STABILISING:
            # finished once already (success): deciding the rollback is what needs checking, and it
            # asks the same of the reporter as recording the end does
            return True, rollback_check(d, who)
        return False, finish_check(d, who, outcome)

    def change(d: Decision) -> Outcome:
        if d.context == "unapproved":
            return _nonconformance(d, who, report, policy)
        if outcome is None:
            return start_change(d, who, report.checklist, report.artifact, report.commit, report.pipeline_url,
                                policy)
        deciding, dep = d.context
        if deciding:
            rollback_change(d, who, dep, report.note or "reported rolled back by the pipeline")
        return finish_change(d, who, dep, outcome, policy, report.note, report.pipeline_url)

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
    nc = record_unapproved(d, who, report.status, report.detail())
    reasons.append(f"{release.ref} was never approved: a deployment reported for it is a non-conformance "
                   f"(QMS 6.2), recorded as non-conformance {nc.id} and posted to the release channel")
    return Outcome("\n".join(reasons), release, changed=True, refused=True,
                   data={"reasons": reasons, "nonconformance": nc.id})


def record_unapproved(d: Decision, who: Deployer, status: str, detail: str) -> NonConformance:
    release = d.release
    text = (f"{who.audit_name} reported '{status}' for {release.ref} ({release.state}, never approved). "
            f"{detail}").strip()
    # A pipeline retrying after a timeout reports the same thing again: one record, one post.
    subject = f"{release.ref}:report:{hashlib.sha256(text.encode()).hexdigest()[:40]}"
    nc, _ = nonconformance.record(d.session, release, kind=nonconformance.DEPLOYMENT_WITHOUT_APPROVAL,
                                  subject=subject, detail=text, actor=who.audit_name, now=d.now, status=status)
    return nc
