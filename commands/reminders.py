"""What a reminder says when it comes due, or why it is no longer owed.

Reminders are outbox rows written with the decision that caused them. Whether
one is still owed is decided here, when it comes due: finishing the work early
needs no cancelling, and a reminder that fires after a restart sees the truth.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, select

from commands import announce, deferred, emergency, planning
from commands.aftercare import CLOSING_REMINDER, signoffs, still_open
from commands.classification import controls
from commands.deploy import deployment_of
from commands.states import IN_FLIGHT, STABILISING
from commands.policy import Policy
from commands.release import PENDING, approval_of, load
from storage.models import Blackout, BlackoutOccurrence, Outbox, Release, Task


@dataclass(frozen=True)
class Notice:
    release: Release | None  # None: a channel-wide notice (a blackout about to start)
    what: str
    users: tuple[str, ...] = ()  # people who owe the action
    roles: tuple[str, ...] = ()  # roles who owe it (their members and groups are mentioned)
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Skip:
    reason: str


def due(session: Session, row: Outbox, policy: Policy) -> Notice | Skip:
    what = row.payload.get("reminder", "")
    if what == "blackout_warning":
        return _blackout_warning(session, row)
    release = load(session, row.release_id)
    if what == "approval_nudge":
        if release.state != PENDING or release.round != row.payload.get("round"):
            return Skip(f"no longer waiting for votes ({release.state}, round {release.round})")
        st = approval_of(session, release)
        missing = st.missing()
        # with alternative sets: "cab ×2 or release_manager + engineering_lead", not every role at once
        extra = {"missing_text": st.missing_text()} if st.alternatives else {}
        em = emergency.of(session, release)
        if em is not None and em.assessed_at is None:
            # A Go before the assessment is refused (QMS 4.6): say what the assessment still needs, first.
            extra["assessment_missing"] = emergency.missing_items(em)
        return Notice(release, what, roles=tuple(missing), detail={"missing": missing, **extra})
    if what in ("followup", "followup_escalation", "retrospective_soon", "retrospective_due"):
        kind = "followup" if what.startswith("followup") else "retrospective"
        task = session.exec(select(Task).where(Task.release_id == release.id, Task.kind == kind)).first()
        if task is None or task.done_at:
            return Skip(f"{kind} already recorded")
        dep = deployment_of(session, release)
        owners = tuple(u for u in (dep.deployer_id if dep else None,
                                   release.requester_id if kind == "retrospective" else None) if u)
        if what == "followup_escalation":
            owners = ()  # escalation goes to the release managers only
        detail = {"due_at": task.due_at, **_bridge(session, release)} if kind == "retrospective" else \
            {"due_at": task.due_at}
        return Notice(release, what, users=owners, roles=("release_manager",), detail=detail)
    if what in DEFERRED_REMINDERS:
        return _deferred(session, release, what, row.payload.get("step", ""))
    if what == "signoff_request":
        if release.state != STABILISING:
            return Skip(f"release is {release.state}")
        taken = {s.role for s in signoffs(session, release)}
        needed = tuple(r for r in policy.deployment.signoff_roles if r not in taken)
        if not needed:  # the closing sign-off has its own reminder, once the aftercare is in too
            return Skip("every post-deployment sign-off is in")
        return Notice(release, what, roles=needed, detail={"needed": list(needed)})
    if what == CLOSING_REMINDER:
        if release.state != STABILISING:
            return Skip(f"release is {release.state}")
        if not still_open(session, release, policy).only_closing:
            return Skip("more than the closing sign-off is open")
        role = policy.deployment.closing_role
        return Notice(release, what, roles=(role,), detail={"needed": [role]})
    if what in announce.STUCK_REMINDERS:
        return _stuck(session, release, what)
    return Skip(f"unknown reminder '{what}'")


DEFERRED_REMINDERS = ("deferred_soon", "deferred_due", "deferred_escalation")


def _bridge(session: Session, release: Release) -> dict:
    """An emergency's aftercare is reminded in its bridge while the bridge is open; after it closes (an
    archived channel takes no posts), in the release's thread."""
    em = emergency.of(session, release)
    if em is None or not em.bridge_channel or em.closed_at is not None:
        return {}
    return {"post_to": (em.bridge_channel, em.bridge_thread_ts)}


def _deferred(session: Session, release: Release, what: str, step: str) -> Notice | Skip:
    """A deferred step of an emergency: its owner before the deadline and at it, the release managers once
    when it is overdue."""
    task = session.exec(select(Task).where(Task.release_id == release.id, Task.kind == step)).first()
    if task is None or task.done_at:
        return Skip(f"{step} already recorded")
    owner = task.owner_id or release.requester_id
    users, roles = ((), (owner[5:],)) if owner.startswith("role:") else ((owner,), ())
    if what == "deferred_escalation":
        users, roles = (), ("release_manager",)
    return Notice(release, what, users=users, roles=roles,
                  detail={"due_at": task.due_at, "step": step, "label": deferred.LABELS.get(step, step),
                          **_bridge(session, release)})


def _stuck(session: Session, release: Release, what: str) -> Notice | Skip:
    """Still deploying (or rolling back) past the window and its grace: the deployer is asked first,
    the release managers once after that. A deployment recorded as ended is not chased."""
    dep = deployment_of(session, release)
    if dep is None or release.state not in IN_FLIGHT:
        return Skip(f"deployment finished ({release.state})")
    detail = {"state": release.state, "window_end": release.end_at, "started_at": dep.started_at}
    if what == "stuck_escalation":
        return Notice(release, what, roles=("release_manager",), detail=detail)
    return Notice(release, what, users=(dep.deployer_id,), detail=detail)


def after_sent(session: Session, row: Outbox, sent_at: datetime, policy: Policy) -> None:
    """Follow-ons of a reminder that went out: the next approval nudge, one per SLA period."""
    if row.payload.get("reminder") != "approval_nudge":
        return
    release = load(session, row.release_id)
    n = int(row.payload.get("n", 1)) + 1
    sla = controls(policy, release).approval_sla
    announce.reminder(session, release, "approval_nudge", row.due_at + sla, sent_at,
                      key_suffix=f"{release.round}:{n}", round=release.round, n=n)



def _blackout_warning(session: Session, row: Outbox) -> Notice | Skip:
    """A blackout starts soon: name it, and every release scheduled inside it with its state."""
    p = row.payload
    blackout = session.get(Blackout, p.get("blackout"))
    start, end = datetime.fromisoformat(p["start"]), datetime.fromisoformat(p["end"])
    if blackout is None or blackout.removed_at is not None:
        return Skip("blackout removed")
    still = session.scalars(select(BlackoutOccurrence).where(BlackoutOccurrence.blackout_id == blackout.id,
                                                             BlackoutOccurrence.start_at == start)).first()
    if still is None:
        return Skip("occurrence no longer in the blackout's schedule")
    inside = [r for r in planning.releases_over_all(session, start, end)
              if planning.applies(blackout, r.service, r.environment)]
    return Notice(None, "blackout_warning", detail={"name": p.get("summary") or blackout.name, "start": start,
                                                    "end": end, "blackout": blackout.id,
                                                    "releases": [(r.ref, r.service, r.version, r.environment,
                                                                  r.state, r.start_at) for r in inside]})
