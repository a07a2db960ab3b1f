"""The deployment gate, the deployment itself, rollback, and its outcome.

QMS §3.4: the person who executes a deployment is never one of its go/no-go
approvers; that is the one structural rule no team size relaxes. §4.4 step 4:
monitoring, rollback readiness and on-call are confirmed before it starts.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Mapping

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from calendars.business import add_business_days
from commands import announce, planning
from commands.approval import GO, NOGO
from commands.clock import Clock
from commands.errors import InputError, required_reason
from commands.outcome import Outcome
from commands.policy import Policy
from commands.release import APPROVED, Refused, current_votes, load, refuse, snapshot, touch
from commands.states import DEPLOYING, FAILED, IN_FLIGHT, ROLLED_BACK, ROLLING_BACK, STABILISING
from storage import audit
from storage.db import transaction
from storage.models import Deployment, NonConformance, Release, Task

OUTCOMES = ("success", "rolled_back", "failed")
# who may record how a deployment ended, besides the deployer: on-call and release management
_FINISHERS = {"release_manager", "operations"}

CHECKLIST: tuple[tuple[str, str], ...] = (
    ("monitoring", "monitoring and alerting are active"),
    ("rollback", "the rollback plan is ready and tested"),
    ("oncall", "on-call is confirmed"),
)


@dataclass(frozen=True)
class Deployer:
    """Who is deploying: a Slack user, possibly through a pipeline that reported it."""

    user_id: str
    roles: frozenset[str] = frozenset()
    pipeline: str | None = None

    @property
    def audit_name(self) -> str:
        return f"{self.user_id} via pipeline:{self.pipeline}" if self.pipeline else self.user_id


def gate_reasons(release: Release, session: Session, deployer_id: str, now: datetime,
                 checklist: Mapping[str, bool]) -> list[str]:
    """Every reason the deployment may not start now; empty means it may."""
    reasons = []
    votes = current_votes(session, release)
    if release.state != APPROVED:
        reasons.append(f"{release.ref} is {release.state}, not approved")
    for v in votes:
        if v.decision == NOGO:
            reasons.append(f"a No-go from {v.voter_id} ({v.role}) stands: {v.note}")
    if not release.start_at <= now < release.end_at:
        end_fmt = "%H:%M" if release.end_at.date() == release.start_at.date() else "%Y-%m-%d %H:%M"
        reasons.append(f"now ({now:%Y-%m-%d %H:%M} UTC) is outside the planned window "
                       f"{release.start_at:%Y-%m-%d %H:%M}–{release.end_at.strftime(end_fmt)} UTC; reschedule it with "
                       f"/release reschedule {release.ref} start=… (rescheduling resets the votes)")
    for hit in planning.blackouts_not_overridden(session, release):
        reasons.append(f"{release.ref} falls in blackout '{hit.name}' ({hit.start:%Y-%m-%d %H:%M}–"
                       f"{hit.end:%Y-%m-%d %H:%M} UTC); deploying in it needs an executive override of its "
                       "blackout flag (QMS 5.1)")
    mine = next((v for v in votes if v.voter_id == deployer_id and v.decision in (GO, NOGO)), None)
    if mine:
        reasons.append(f"{deployer_id} voted {'Go' if mine.decision == GO else 'No-go'} as {mine.role}; a go/no-go "
                       "approver never executes the deployment (QMS 3.4)")
    for key, text in CHECKLIST:
        if not checklist.get(key):
            reasons.append(f"not confirmed: {text}")
    return reasons


def check_gate(db: Engine, release_id: int, deployer_id: str, clock: Clock,
               checklist: Mapping[str, bool]) -> list[str]:
    with transaction(db) as session:
        return gate_reasons(load(session, release_id), session, deployer_id, clock.now(), checklist)


def start_deployment(db: Engine, who: Deployer, release_id: int, checklist: Mapping[str, bool], clock: Clock,
                     *, artifact: str | None = None, commit: str | None = None,
                     pipeline_url: str | None = None) -> Outcome:
    now = clock.now()
    with transaction(db) as session:
        release = load(session, release_id, lock=True)
        existing = session.exec(select(Deployment).where(Deployment.release_id == release.id)).first()
        if existing and existing.deployer_id == who.user_id and release.state in IN_FLIGHT:
            return Outcome(f"{release.ref} is already being deployed by you since "
                           f"{existing.started_at:%H:%M} UTC.", release, data={"reasons": []})
        reasons = gate_reasons(release, session, who.user_id, now, checklist)
        if reasons:
            audit.record(session, actor=who.audit_name, action="deploy_refused", release_id=release.id, at=now,
                         after={"reasons": reasons, "checklist": dict(checklist)}, reason="; ".join(reasons))
            text = f"{release.ref} cannot be deployed now:\n" + "\n".join(f"• {r}" for r in reasons)
            return Outcome(text, release, refused=True, data={"reasons": reasons})
        before = snapshot(release)
        release.state = DEPLOYING
        touch(release, now)
        dep = Deployment(release_id=release.id, deployer_id=who.user_id, pipeline=who.pipeline,
                         checklist={k: bool(checklist.get(k)) for k, _ in CHECKLIST}, artifact=artifact,
                         commit=commit, pipeline_url=pipeline_url, started_at=now)
        session.add(dep)
        session.flush()
        ev = audit.record(session, actor=who.audit_name, action="deployment_started", release_id=release.id,
                          at=now, before=before, after={**snapshot(release), "deployer": who.user_id,
                                                        "checklist": dep.checklist, "artifact": artifact,
                                                        "commit": commit, "pipeline_url": pipeline_url})
        announce.approval_update(session, release, now, ev)
        announce.note(session, release, "deployment_started", now, deployer=who.user_id)
    return Outcome(f"{release.ref} deployment started; you are recorded as the deployer. Record how it ends with "
                   f"/release done {release.ref} outcome=success|rolled_back|failed.", release, changed=True,
                   data={"reasons": []})


def deployment_of(session: Session, release: Release) -> Deployment | None:
    return session.exec(select(Deployment).where(Deployment.release_id == release.id)).first()


def decide_rollback(db: Engine, who: Deployer, release_id: int, reason: str, clock: Clock) -> Outcome:
    """QMS §4.5: the on-call or deploying engineer decides a rollback without further approval."""
    reason = required_reason(reason, "a rollback decision needs a reason (the trigger)",
                             '/release rollback REL-12 reason="error rate +20% for 5 min"')
    now = clock.now()
    with transaction(db) as session:
        release = load(session, release_id, lock=True)
        dep = deployment_of(session, release)
        try:
            if release.state not in (DEPLOYING, STABILISING) or dep is None:
                raise Refused(f"{release.ref} is {release.state}; only a deployment in progress or in its "
                              "stabilisation window can be rolled back.", "not_deployed")
            if who.pipeline is None and who.user_id != dep.deployer_id and not who.roles & _FINISHERS:
                raise Refused(f"A rollback of {release.ref} is decided by the deploying engineer or on-call "
                              "(operations), or a release manager (QMS 4.5).", "not_deployer")
        except Refused as exc:
            return refuse(session, release, who.audit_name, "rollback", exc, now)
        before = snapshot(release)
        release.state = ROLLING_BACK
        dep.rollback_decided_at, dep.rollback_decided_by = now, who.user_id
        touch(release, now)
        ev = audit.record(session, actor=who.audit_name, action="rollback_decided", release_id=release.id, at=now,
                          before=before, after=snapshot(release), reason=reason)
        announce.approval_update(session, release, now, ev)
        announce.note(session, release, "rollback_decided", now, by=who.user_id, reason=reason)
    return Outcome(f"Rollback of {release.ref} decided at {now:%H:%M} UTC. When service is restored: "
                   f"/release done {release.ref} outcome=rolled_back.", release, changed=True)


def finish_deployment(db: Engine, who: Deployer, release_id: int, outcome: str, clock: Clock, policy: Policy,
                      note: str | None = None, link: str | None = None) -> Outcome:
    if outcome not in OUTCOMES:
        raise InputError(f"'{outcome}' is not an outcome; use success, rolled_back or failed", field="outcome",
                         form="/release done REL-12 outcome=success|rolled_back|failed [note=…] [link=…]")
    now = clock.now()
    with transaction(db) as session:
        release = load(session, release_id, lock=True)
        dep = deployment_of(session, release)
        if dep and dep.outcome == outcome and dep.finished_at and release.state not in IN_FLIGHT:
            return Outcome(f"{release.ref} already finished: {outcome}.", release)
        try:
            if dep is None or release.state not in IN_FLIGHT:
                raise Refused(f"{release.ref} has no deployment in progress (it is {release.state}).", "not_deploying")
            if release.state == ROLLING_BACK and outcome != "rolled_back":
                raise Refused(f"{release.ref} is rolling back; record outcome=rolled_back when service is restored.",
                              "rolling_back")
            if who.pipeline is None and who.user_id != dep.deployer_id and not who.roles & _FINISHERS:
                raise Refused(f"Only the deployer, operations or a release manager can record how {release.ref} "
                              "ended.", "not_deployer")
        except Refused as exc:
            return refuse(session, release, who.audit_name, "finish", exc, now, {"outcome": outcome})
        before = snapshot(release)
        dep.finished_at, dep.outcome, dep.note, dep.link = now, outcome, note, link
        if outcome == "rolled_back":
            if dep.rollback_decided_at is None:  # decided and done in one step
                dep.rollback_decided_at, dep.rollback_decided_by = now, who.user_id
            dep.restored_at = now
            release.state = ROLLED_BACK
        elif outcome == "failed":
            release.state = FAILED
        else:
            dep.stabilisation_ends_at = now + policy.type(release.effective_type).stabilisation
            release.state = STABILISING
            announce.reminder(session, release, "signoff_request", dep.stabilisation_ends_at, now)
        touch(release, now)
        ev = audit.record(session, actor=who.audit_name, action=f"deployment_{outcome}", release_id=release.id,
                          at=now, before=before, after={**snapshot(release), "note": note, "link": link,
                                                        "rollback_decided_at": dep.rollback_decided_at,
                                                        "restored_at": dep.restored_at,
                                                        "stabilisation_ends_at": dep.stabilisation_ends_at})
        announce.approval_update(session, release, now, ev)
        announce.note(session, release, f"deployment_{outcome}", now)
        _owe_aftercare(session, release, dep, outcome, now, policy)
    msg = f"{release.ref} recorded as {outcome.replace('_', ' ')}."
    if outcome == "success":
        msg += (f" Stabilisation runs until {dep.stabilisation_ends_at:%Y-%m-%d %H:%M} UTC; then the sign-offs "
                "are asked for in the thread.")
    return Outcome(msg, release, changed=True)


def _owe_aftercare(session: Session, release: Release, dep: Deployment, outcome: str, now: datetime,
                   policy: Policy) -> None:
    """The follow-up every deployment owes, and the retrospective some owe, each with its reminders."""
    p = policy.deployment
    owed = {t.kind for t in session.exec(select(Task).where(Task.release_id == release.id))}
    # A success rolled back during stabilisation finishes twice; what it owed the first time stands.
    if "followup" not in owed:
        followup_due = now + p.followup_after
        session.add(Task(release_id=release.id, kind="followup", due_at=followup_due, created_at=now))
        announce.reminder(session, release, "followup", followup_due, now)
        announce.reminder(session, release, "followup_escalation", followup_due + p.followup_escalate_after, now)
    retro = release.effective_type in p.retrospective_types or outcome in ("rolled_back", "failed")
    if retro and "retrospective" not in owed:
        due = add_business_days(now, p.retrospective_business_days, release.tz)
        session.add(Task(release_id=release.id, kind="retrospective", due_at=due, created_at=now))
        announce.reminder(session, release, "retrospective_soon", due - p.retrospective_remind_before, now)
        announce.reminder(session, release, "retrospective_due", due, now)


def report_unapproved(db: Engine, who: Deployer, release_id: int, status: str, clock: Clock,
                      detail: str) -> NonConformance:
    """QMS §6.2: a production deployment without an approved release record."""
    now = clock.now()
    with transaction(db) as session:
        release = load(session, release_id, lock=True)
        text = (f"{who.audit_name} reported '{status}' for {release.ref} ({release.state}, never approved). "
                f"{detail}").strip()
        # A pipeline retrying after a timeout reports the same thing again: one record, one post.
        same = session.exec(select(NonConformance).where(NonConformance.release_id == release.id,
                                                         NonConformance.reported_by == who.audit_name,
                                                         NonConformance.detail == text)).first()
        if same:
            return same
        nc = NonConformance(release_id=release.id, kind="deployment_without_approval", detail=text,
                            reported_by=who.audit_name, at=now)
        session.add(nc)
        session.flush()
        audit.record(session, actor=who.audit_name, action="nonconformance", release_id=release.id, at=now,
                     after={"kind": nc.kind, "status": status, "nonconformance": nc.id}, reason=nc.detail)
        announce.note(session, release, "nonconformance", now, key_suffix=str(nc.id), detail=nc.detail)
        return nc


def release_state(db: Engine, release_id: int) -> str:
    with transaction(db) as session:
        return load(session, release_id).state


def never_approved(db: Engine, release_id: int) -> bool:
    with transaction(db) as session:
        return load(session, release_id).approval_seq == 0



