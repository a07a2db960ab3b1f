"""The deferred steps of an emergency (QMS 4.6, right-hand column): owed from the deployment's finish.

When an emergency's deployment finishes (commands.deploy.finish_change, the one
step both `/release done` and the Pipeline API's report go through), each step
becomes a Task with an owner and a deadline counted from the finish. Owners:
the requester (the on-call engineer who opened the emergency and knows the
change) raises the change request, writes the planning and impact assessment
and the release notes and runbook; the QA leads review the skipped tests (their
phase was skipped); the retrospective is the one every emergency already owes
(commands.deploy), within the emergency's business days. A release manager may
record any of them.

Each step is reminded in the bridge before its deadline and at it, escalated
once to the release managers when overdue (commands.reminders), and checked at
its deadline by an outbox row (DEADLINE): a step still open then, or recorded
after it, is a non-conformance (commands.nonconformance), recorded once.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Mapping

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from calendars.business import add_business_days
from commands import announce, emergency, nonconformance
from commands.clock import Clock
from commands.decision import Decision, decide
from commands.errors import InputError, Refused
from commands.text import when
from commands.outcome import Actor, Outcome
from commands.policy import EmergencyPolicy, Policy
from storage import audit, outbox
from storage.models import Release, Task

DEADLINE = "deferred_deadline"  # outbox kind: the deadline check of one step
REQUESTER, RELEASE_MANAGERS = "requester", "role:release_manager"
FORM = ("/release step REL-12 change_request|planning|test_review|docs|retrospective|root_cause_review "
        '[link=…] [runbook=…] [note="…"]')


@dataclass(frozen=True)
class Step:
    label: str
    owner: str  # REQUESTER, or "role:<role>"
    needs: tuple[str, ...]  # fields it must record; ("link", "note") means either
    either: bool = False
    due: Callable[[datetime, EmergencyPolicy, str], datetime] = lambda at, p, tz: at


STEPS: dict[str, Step] = {
    "change_request": Step("formal change request", REQUESTER, ("link",),
                           due=lambda at, p, tz: at + p.change_request_within),
    "planning": Step("planning phase and impact assessment", REQUESTER, ("link", "note"), either=True,
                     due=lambda at, p, tz: at + p.planning_within),
    "test_review": Step("retrospective review of the skipped tests", "role:qa_lead", ("link", "note"), either=True,
                        due=lambda at, p, tz: at + p.test_review_within),
    "docs": Step("release notes and runbook", REQUESTER, ("link", "runbook"),
                 due=lambda at, p, tz: at + p.docs_within),
    # the retrospective every emergency owes (commands.aftercare records it), in business days of the release's zone
    "retrospective": Step("retrospective", REQUESTER, ("note",),
                          due=lambda at, p, tz: add_business_days(at, p.retrospective_business_days, tz)),
}
# QMS 4.6 frequency rule: owned by the release managers, due at the quarterly engineering review (commands.frequency)
ROOT_CAUSE = "root_cause_review"
LABELS = {**{k: s.label for k, s in STEPS.items()}, ROOT_CAUSE: "root-cause review of the emergency frequency"}


def remind_before(due: datetime, finished: datetime, policy: Policy) -> timedelta:
    """How long before the deadline the owner is reminded, and after it the release managers escalated to:
    a quarter of the time the step has, at most the retrospective's reminder lead (24h by default)."""
    return min((due - finished) / 4, policy.deployment.retrospective_remind_before)


def owner_of(release: Release, step: str) -> str:
    owner = STEPS[step].owner
    return release.requester_id if owner == REQUESTER else owner


def owe(session: Session, release: Release, finished: datetime, policy: Policy) -> None:
    """Each deferred step of an emergency as a task, with its reminders and its deadline check. Called when the
    deployment finishes; a second finish (a success rolled back in stabilisation) finds them owed already."""
    if emergency.of(session, release) is None:
        return
    owed = {t.kind for t in session.exec(select(Task).where(Task.release_id == release.id))}
    if set(STEPS) <= owed:
        return
    opened = []
    for step, spec in STEPS.items():
        if step in owed:
            continue
        due = spec.due(finished, policy.emergency, release.tz)
        session.add(Task(release_id=release.id, kind=step, due_at=due, created_at=finished,
                         owner_id=owner_of(release, step)))
        lead = remind_before(due, finished, policy)
        if step == "retrospective":  # its own reminders, with the button that records it
            announce.reminder(session, release, "retrospective_soon", due - lead, finished)
            announce.reminder(session, release, "retrospective_due", due, finished)
        else:
            announce.reminder(session, release, "deferred_soon", due - lead, finished, key_suffix=step, step=step)
            announce.reminder(session, release, "deferred_due", due, finished, key_suffix=step, step=step)
        announce.reminder(session, release, "deferred_escalation", due + lead, finished, key_suffix=step, step=step)
        outbox.enqueue(session, key=f"{DEADLINE}:{release.id}:{step}", kind=DEADLINE, release_id=release.id,
                       at=finished, due_at=due, payload={"step": step})
        opened.append({"step": step, "owner": owner_of(release, step), "due_at": due})
    session.flush()
    audit.record(session, actor="releasebot", action="deferred_steps_opened", release_id=release.id, at=finished,
                 after={"steps": opened}, reason="QMS 4.6: the steps the emergency track skipped are owed from the "
                                                 "deployment's finish")


def task_of(session: Session, release: Release, step: str) -> Task | None:
    return session.exec(select(Task).where(Task.release_id == release.id, Task.kind == step)).first()


def overdue(session: Session, release: Release, task: Task, actor: str, now: datetime, policy: Policy) -> bool:
    """Record the non-conformance of a step not done by its deadline (once). True if it is one."""
    if task.kind not in STEPS or now < task.due_at or (task.done_at is not None and task.done_at <= task.due_at):
        return False
    if emergency.of(session, release) is None:  # another release's late retrospective is late, not this
        return False
    late = f"recorded {_span(task.done_at - task.due_at)} late" if task.done_at else "still open"
    nonconformance.record(session, release, kind=nonconformance.DEFERRED_STEP_OVERDUE,
                          subject=f"task:{task.id}",
                          detail=f"The {LABELS[task.kind]} of emergency {release.ref} was due "
                                 f"{when(task.due_at)} and is {late} (QMS 4.6: skipped steps are "
                                 "completed retrospectively by their deadlines)",
                          actor=actor, now=now, policy=policy, step=task.kind, due_at=task.due_at.isoformat())
    return True


def deadline_reached(session: Session, release_id: int, step: str, now: datetime, policy: Policy) -> str:
    """The delivery loop's check at a step's deadline (its outbox row is claimed once, across processes)."""
    from commands.release import load
    release = load(session, release_id, lock=True)  # a step being recorded right now commits first, or after
    task = task_of(session, release, step)
    if task is None:
        return "skipped: no such step"
    return "non-conformance" if overdue(session, release, task, "releasebot", now, policy) else "skipped: done in time"


def lateness(task: Task, at: datetime) -> dict:
    late = at > task.due_at
    return {"due_at": task.due_at, "late": late, "late_by_minutes": int((at - task.due_at).total_seconds() // 60)
            if late else 0}


def _span(d: timedelta) -> str:
    minutes = int(d.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    return (f"{days}d " if days else "") + f"{rest // 60}h{rest % 60:02d}m"


def record_step(db: Engine, actor: Actor, release_id: int, step: str, fields: Mapping[str, str | None],
                clock: Clock, policy: Policy) -> Outcome:
    """`/release step REL-n <step> …`: one deferred step done, with its evidence; late still records, with lateness."""
    if step == "retrospective":
        from commands.aftercare import record_task
        return record_task(db, actor, release_id, "retrospective",
                           {"notes": fields.get("note") or fields.get("link") or "", "actions": ""}, clock, policy)
    if step not in LABELS:
        raise InputError(f"'{step or ''}' is not a deferred step; steps are {', '.join(LABELS)}", form=FORM)
    details = {k: (fields.get(k) or "").strip() for k in ("link", "runbook", "note")}
    spec = STEPS.get(step)
    needs = spec.needs if spec else ("link", "note")
    either = spec.either if spec else True
    missing = [k for k in needs if not details[k]]
    if (either and len(missing) == len(needs)) or (not either and missing):
        what = " or ".join(f"{k}=" for k in needs) if either else " and ".join(f"{k}=" for k in missing)
        raise InputError(f"the {LABELS[step]} needs {what}" + (" (the change request's id or URL)"
                                                               if step == "change_request" else ""),
                         field=missing[0], form=FORM)
    details = {k: v for k, v in details.items() if v}

    def replay(d: Decision) -> Outcome | None:
        task = task_of(d.session, d.release, step)
        if task and task.done_at:
            return Outcome(f"The {LABELS[step]} of {d.release.ref} was already recorded by {task.done_by} at "
                           f"{when(task.done_at)}.", d.release)
        return None

    def check(d: Decision) -> Task:
        task = task_of(d.session, d.release, step)
        if task is None:
            raise Refused(f"{d.release.ref} owes no {LABELS[step]}: deferred steps are owed by an emergency "
                          "release once its deployment finishes.", "no_task")
        owner = task.owner_id or ""
        if not owner.startswith("role:") and actor.user_id in {owner, d.release.requester_id}:
            return task
        roles = ((owner[5:],) if owner.startswith("role:") else ()) + ("release_manager",)
        actor.require(tuple(dict.fromkeys(roles)), f"The {LABELS[step]} of {d.release.ref} is recorded by its "
                                                   f"owner ({owner}) or a release manager.", "not_owner")
        return task

    def change(d: Decision) -> Outcome:
        task = d.context
        task.done_by, task.done_at, task.details = actor.user_id, d.now, dict(details)
        late = lateness(task, d.now)
        d.record("deferred_step_recorded", after={"step": step, "label": LABELS[step], **details, **late})
        announce.note(d.session, d.release, "deferred_step_recorded", d.now, key_suffix=step, by=actor.user_id,
                      step=LABELS[step], late_by_minutes=late["late_by_minutes"])
        d.session.flush()
        msg = f"The {LABELS[step]} of {d.release.ref} is recorded."
        if overdue(d.session, d.release, task, actor.user_id, d.now, policy):
            msg += (f" It was due {when(task.due_at)} ({_span(d.now - task.due_at)} late), which is "
                    "recorded as a non-conformance.")
        return Outcome(msg, d.release, changed=True)

    return decide(db, release_id, actor.user_id, "deferred_step", clock.now(), check=check, change=change,
                  replay=replay, refusal_detail={"step": step})
