"""After the deployment: post-deployment sign-offs (QMS §4.4 step 5), the
24-hour follow-up (§4.6), the retrospective (§6.1), and closure (§4.4 step 6).

A release closes when its release record is complete and signed: every sign-off
role has signed, every aftercare task it owes is recorded, and then the closing
role (the release manager) signs off. The closing sign-off is refused while
anything else is open, so the release manager signs the complete record and the
release always closes at that sign-off.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from commands import announce, deferred, emergency
from commands.clock import Clock
from commands.decision import Decision, decide
from commands.deploy import deployment_of
from commands.errors import CouldNotCheck, InputError, Refused
from commands.outcome import Actor, Outcome, could_not_check
from commands.policy import Policy
from commands.release import snapshot
from commands.states import CLOSED, STABILISING
from commands.text import when
from storage.models import Release, SignOff, Task

TASKS = {"followup": "24-hour follow-up", "retrospective": "retrospective"}
CLOSING_REMINDER = "closing_signoff"
# Owed by the service, not by this release's record: the frequency rule's root-cause review waits for the
# quarterly engineering review and does not hold the release open.
_NOT_CLOSING = {deferred.ROOT_CAUSE}


def label(kind: str) -> str:
    return TASKS.get(kind) or deferred.LABELS.get(kind, kind)


def signoffs(session: Session, release: Release) -> list[SignOff]:
    return list(session.exec(select(SignOff).where(SignOff.release_id == release.id).order_by(SignOff.id)))


def tasks(session: Session, release: Release) -> list[Task]:
    return list(session.exec(select(Task).where(Task.release_id == release.id).order_by(Task.id)))


@dataclass(frozen=True)
class Open:
    """What still stands between a stabilising release and its closure."""

    signoff_roles: tuple[str, ...]  # sign-offs owed before the closing one
    tasks: tuple[str, ...]  # aftercare tasks owed and not recorded
    closing: bool  # the closing sign-off itself

    @property
    def only_closing(self) -> bool:
        return self.closing and not self.signoff_roles and not self.tasks

    def before_closing(self) -> str:
        parts = ([f"sign-off from {', '.join(self.signoff_roles)}"] if self.signoff_roles else []) + \
                [f"the {label(k)}" for k in self.tasks]
        return ", ".join(parts)


def still_open(session: Session, release: Release, policy: Policy) -> Open:
    taken = {s.role for s in signoffs(session, release)}
    return Open(signoff_roles=tuple(r for r in policy.deployment.signoff_roles if r not in taken),
                tasks=tuple(t.kind for t in tasks(session, release) if t.done_at is None and t.kind not in _NOT_CLOSING),
                closing=policy.deployment.closing_role not in taken)


def _remind_closing_role(d: Decision, policy: Policy) -> None:
    """Only the closing sign-off is left: tell its role holders, once (a stable key)."""
    if d.release.state == STABILISING and still_open(d.session, d.release, policy).only_closing:
        announce.reminder(d.session, d.release, CLOSING_REMINDER, d.now, d.now)


def sign_off(db: Engine, actor: Actor, release_id: int, clock: Clock, policy: Policy,
             role_hint: str | None = None) -> Outcome:
    closing_role = policy.deployment.closing_role

    def replay(d: Decision) -> Outcome | None:
        mine = next((s for s in signoffs(d.session, d.release) if s.user_id == actor.user_id), None)
        if mine and role_hint in (None, mine.role):
            return Outcome(f"Your sign-off of {d.release.ref} as {mine.role} is already recorded.", d.release)
        return None

    def check(d: Decision) -> str:
        release = d.release
        dep = deployment_of(d.session, release)
        if release.state != STABILISING or dep is None:
            raise Refused(f"{release.ref} is {release.state}; sign-off comes after a successful deployment's "
                          "stabilisation window.", "not_stabilising")
        if d.now < dep.stabilisation_ends_at:
            raise Refused(f"The stabilisation window of {release.ref} runs until "
                          f"{when(dep.stabilisation_ends_at)}; sign off after it.", "too_early")
        mine = next((s for s in signoffs(d.session, release) if s.user_id == actor.user_id), None)
        if mine:
            raise Refused(f"You already signed off as {mine.role}; one person signs off once.", "one_person_one_role")
        left = still_open(d.session, release, policy)
        # The sign-offs owed first come first: a release manager who is also QA lead signs as QA lead.
        needed = [*left.signoff_roles, *([closing_role] if left.closing else [])]
        offered = [r for r in needed if role_hint in (None, r)]
        role = actor.require(offered, f"{release.ref} still needs sign-off from: {', '.join(needed) or 'none'}; "
                                      "you hold none of those roles.", "no_signoff_role")
        if role == closing_role:
            unsure = [r for r in offered if r in left.signoff_roles and r in actor.unresolved]
            if unsure:  # they may owe an earlier sign-off: not a refusal we can stand behind
                raise CouldNotCheck(could_not_check(unsure))
            if not left.only_closing:
                raise Refused(f"The release manager signs off {release.ref} last; still open: "
                              f"{left.before_closing()}.", "closing_not_last")
        return role

    def change(d: Decision) -> Outcome:
        release, role = d.release, d.context
        d.session.add(SignOff(release_id=release.id, role=role, user_id=actor.user_id, at=d.now))
        d.session.flush()
        closes = role == closing_role  # the check let it through only when nothing else was open
        if closes:
            release.state = CLOSED
        ev = d.record("signed_off", after={**snapshot(release), "role": role})
        msg = f"Your sign-off of {release.ref} as {role} is recorded."
        if closes:
            d.record("closed", reason="the release manager signed off after every post-deployment sign-off and "
                                      "aftercare record was in", touch=False)
            announce.note(d.session, release, "closed", d.now)
            msg += f" {release.ref} is closed."
        else:
            _remind_closing_role(d, policy)
        announce.approval_update(d.session, release, d.now, ev)
        return Outcome(msg, release, changed=True)

    return decide(db, release_id, actor.user_id, "signoff", clock.now(), check=check, change=change, replay=replay)


# who may record the follow-up or the retrospective, besides the deployer and requester
_TASK_ROLES = ("release_manager", "engineering_lead", "operations")


def record_task(db: Engine, actor: Actor, release_id: int, kind: str, details: Mapping[str, str],
                clock: Clock, policy: Policy) -> Outcome:
    if kind not in TASKS:
        raise InputError(f"'{kind}' is not something to record; use followup or retrospective")
    details = {k: (v or "").strip() for k, v in details.items()}
    if not any(details.values()):
        raise InputError(f"the {TASKS[kind]} needs its notes", field=next(iter(details), "notes"))

    def owed(d: Decision) -> Task | None:
        return d.session.exec(select(Task).where(Task.release_id == d.release.id, Task.kind == kind)).first()

    def replay(d: Decision) -> Outcome | None:
        task = owed(d)
        if task and task.done_at:
            return Outcome(f"The {TASKS[kind]} of {d.release.ref} was already recorded by {task.done_by} at "
                           f"{when(task.done_at)}.", d.release)
        return None

    def check(d: Decision) -> Task:
        task = owed(d)
        if task is None:
            raise Refused(f"{d.release.ref} owes no {TASKS[kind]}.", "no_task")
        dep = deployment_of(d.session, d.release)
        if actor.user_id not in {d.release.requester_id, dep.deployer_id if dep else ""}:
            actor.require(_TASK_ROLES, f"The {TASKS[kind]} is recorded by the deployer, the requester, a release "
                                       "manager, an engineering lead or operations.", "not_owner")
        return task

    def change(d: Decision) -> Outcome:
        task = d.context
        task.done_by, task.done_at, task.details = actor.user_id, d.now, dict(details)
        d.record(f"{kind}_recorded",
                 after={"kind": kind, **details, "due_at": task.due_at, "late": d.now > task.due_at})
        announce.note(d.session, d.release, f"{kind}_recorded", d.now, by=actor.user_id)
        d.session.flush()
        deferred.overdue(d.session, d.release, task, actor.user_id, d.now, policy)  # an emergency's step done late
        _remind_closing_role(d, policy)
        return Outcome(f"The {TASKS[kind]} of {d.release.ref} is recorded.", d.release, changed=True)

    return decide(db, release_id, actor.user_id, kind, clock.now(), check=check, change=change, replay=replay)


def validate(db: Engine, actor: Actor, release_id: int, note: str, clock: Clock, policy: Policy) -> Outcome:
    """QMS 4.6 Validation: after [emergency] min_monitoring of a successful emergency deployment, on-call
    (operations) confirms the triggering incident is resolved and no new error patterns appeared."""
    note = (note or "").strip()
    if not note:
        raise InputError("validation needs a note: how the incident's resolution and the absence of new error "
                         "patterns were confirmed", field="note", form=VALIDATE_FORM)

    def replay(d: Decision) -> Outcome | None:
        em = emergency.of(d.session, d.release)
        if em and em.validated_at:
            return Outcome(f"{d.release.ref} was already validated by {em.validated_by} at "
                           f"{when(em.validated_at)}.", d.release)
        return None

    def check(d: Decision):
        release = d.release
        em = emergency.of(d.session, release)
        if em is None:
            raise Refused(f"{release.ref} is not an emergency release; validation by on-call is the emergency "
                          "track's (QMS 4.6). Others are signed off after stabilisation (/release signoff).",
                          "not_emergency")
        dep = deployment_of(d.session, release)
        if dep is None or dep.outcome != "success" or release.state != STABILISING:
            raise Refused(f"{release.ref} is {release.state}; validation follows a successful deployment.",
                          "not_deployed")
        actor.require(("operations",), f"Validation of {release.ref} is confirmed by on-call (operations), who "
                                       "watched the incident.", "not_oncall")
        ready = dep.finished_at + policy.emergency.min_monitoring
        if d.now < ready:
            raise Refused(f"{release.ref} has been monitored for {int((d.now - dep.finished_at).total_seconds() // 60)}"
                          f" minutes; QMS 4.6 asks for at least {int(policy.emergency.min_monitoring.total_seconds() // 60)}"
                          f". Validate from {when(ready)}.", "too_early")
        return em, dep

    def change(d: Decision) -> Outcome:
        em, dep = d.context
        em.validated_at, em.validated_by, em.validation_note = d.now, actor.user_id, note
        d.record("emergency_validated", reason=note,
                 after={"incident": em.incident, "note": note, "deployed_at": dep.finished_at,
                        "monitored_minutes": int((d.now - dep.finished_at).total_seconds() // 60),
                        "extended_monitoring_until": dep.stabilisation_ends_at})
        announce.note(d.session, d.release, "emergency_validated", d.now, by=actor.user_id, reason=note)
        return Outcome(f"{d.release.ref} is validated: incident {em.incident} resolved, no new error patterns. "
                       f"Extended monitoring runs until {when(dep.stabilisation_ends_at)}; the "
                       "post-deployment sign-offs follow it.", d.release, changed=True)

    return decide(db, release_id, actor.user_id, "validate", clock.now(), check=check, change=change, replay=replay)


VALIDATE_FORM = '/release validate REL-12 note="incident resolved, error rate at baseline, no new error patterns"'
