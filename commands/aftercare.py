"""After the deployment: post-deployment sign-offs (QMS §4.4 step 5), the
24-hour follow-up (§4.6) and the retrospective (§6.1)."""
from __future__ import annotations

from typing import Mapping

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from commands import announce
from commands.clock import Clock
from commands.deploy import deployment_of
from commands.states import CLOSED, STABILISING
from commands.errors import InputError
from commands.outcome import Actor, Outcome
from commands.policy import Policy
from commands.release import Refused, refuse, load, snapshot, touch
from storage import audit
from storage.db import transaction
from storage.models import Release, SignOff, Task

TASKS = {"followup": "24-hour follow-up", "retrospective": "retrospective"}


def signoffs(session: Session, release: Release) -> list[SignOff]:
    return list(session.exec(select(SignOff).where(SignOff.release_id == release.id).order_by(SignOff.id)))


def sign_off(db: Engine, actor: Actor, release_id: int, clock: Clock, policy: Policy,
             role_hint: str | None = None) -> Outcome:
    now = clock.now()
    roles = policy.deployment.signoff_roles
    with transaction(db) as session:
        release = load(session, release_id, lock=True)
        done = signoffs(session, release)
        mine = next((s for s in done if s.user_id == actor.user_id), None)
        if mine and (role_hint in (None, mine.role)):
            return Outcome(f"Your sign-off of {release.ref} as {mine.role} is already recorded.", release)
        try:
            dep = deployment_of(session, release)
            if release.state != STABILISING or dep is None:
                raise Refused(f"{release.ref} is {release.state}; sign-off comes after a successful deployment's "
                              "stabilisation window.", "not_stabilising")
            if now < dep.stabilisation_ends_at:
                raise Refused(f"The stabilisation window of {release.ref} runs until "
                              f"{dep.stabilisation_ends_at:%Y-%m-%d %H:%M} UTC; sign off after it.", "too_early")
            if mine:
                raise Refused(f"You already signed off as {mine.role}; one person signs off once.", "one_person_one_role")
            taken = {s.role for s in done}
            open_roles = [r for r in roles if r not in taken and r in actor.roles and role_hint in (None, r)]
            if not open_roles:
                needed = ", ".join(r for r in roles if r not in taken) or "none"
                raise Refused(f"{release.ref} still needs sign-off from: {needed}; you hold none of those roles.",
                              "no_signoff_role")
        except Refused as exc:
            return refuse(session, release, actor.user_id, "signoff", exc, now)
        before = snapshot(release)
        role = open_roles[0]
        session.add(SignOff(release_id=release.id, role=role, user_id=actor.user_id, at=now))
        session.flush()
        complete = {s.role for s in signoffs(session, release)} >= set(roles)
        if complete:
            release.state = CLOSED
        touch(release, now)
        ev = audit.record(session, actor=actor.user_id, action="signed_off", release_id=release.id, at=now,
                          before=before, after={**snapshot(release), "role": role})
        if complete:
            audit.record(session, actor=actor.user_id, action="closed", release_id=release.id, at=now,
                         before=before, after=snapshot(release), reason="all post-deployment sign-offs are in")
            announce.note(session, release, "closed", now)
        announce.approval_update(session, release, now, ev)
    msg = f"Your sign-off of {release.ref} as {role} is recorded."
    if complete:
        msg += f" {release.ref} is closed."
    return Outcome(msg, release, changed=True)


# who may record the follow-up or the retrospective, besides the deployer and requester
_TASK_ROLES = {"release_manager", "engineering_lead", "operations"}


def record_task(db: Engine, actor: Actor, release_id: int, kind: str, details: Mapping[str, str],
                clock: Clock) -> Outcome:
    if kind not in TASKS:
        raise InputError(f"'{kind}' is not something to record; use followup or retrospective")
    details = {k: (v or "").strip() for k, v in details.items()}
    if not any(details.values()):
        raise InputError(f"the {TASKS[kind]} needs its notes", field=next(iter(details), "notes"))
    now = clock.now()
    with transaction(db) as session:
        release = load(session, release_id, lock=True)
        task = session.exec(select(Task).where(Task.release_id == release.id, Task.kind == kind)).first()
        if task and task.done_at:
            return Outcome(f"The {TASKS[kind]} of {release.ref} was already recorded by {task.done_by} at "
                           f"{task.done_at:%Y-%m-%d %H:%M} UTC.", release)
        try:
            if task is None:
                raise Refused(f"{release.ref} owes no {TASKS[kind]}.", "no_task")
            dep = deployment_of(session, release)
            owners = {release.requester_id, dep.deployer_id if dep else ""}
            if actor.user_id not in owners and not actor.roles & _TASK_ROLES:
                raise Refused(f"The {TASKS[kind]} is recorded by the deployer, the requester, a release manager, an "
                              "engineering lead or operations.", "not_owner")
        except Refused as exc:
            return refuse(session, release, actor.user_id, kind, exc, now)
        task.done_by, task.done_at, task.details = actor.user_id, now, dict(details)
        touch(release, now)
        audit.record(session, actor=actor.user_id, action=f"{kind}_recorded", release_id=release.id, at=now,
                     after={"kind": kind, **details, "due_at": task.due_at, "late": now > task.due_at})
        announce.note(session, release, f"{kind}_recorded", now, by=actor.user_id)
    return Outcome(f"The {TASKS[kind]} of {release.ref} is recorded.", release, changed=True)
