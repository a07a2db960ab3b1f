"""The emergency bridge (QMS 4.6): where an emergency is worked, and how it is closed.

The bridge's channel is made by the delivery loop, after the emergency release
commits, from one outbox row keyed per release: a retry after Slack failed
midway finds the same row and never makes a second channel. Each step the
delivery loop gets done (the channel made, the thread started, the card posted)
is written at once, so a retry starts from where the last try stopped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from commands import announce
from commands.approval import ApprovalStatus
from commands.clock import Clock
from commands.decision import decide
from commands.errors import InputError, NotFound, Refused
from commands.outcome import Actor, Outcome
from commands.policy import Policy
from commands.states import CANCELLED, FAILED, ROLLED_BACK
from storage import outbox
from storage.db import read, transaction
from storage.models import Deployment, Emergency, Release, Task

BRIDGE_OPEN = "bridge_open"
BRIDGE_CARD = announce.BRIDGE_CARD
BRIDGE_POST = "bridge_post"  # a line about the bridge: the link in the release channel, the closing summary
NAME_LIMIT = 80  # Slack's longest channel name
# The roles on every bridge (QMS 4.6: on-call, engineering lead, release manager), security when it is one.
BRIDGE_ROLES = ("operations", "engineering_lead", "release_manager")
# The answers that make a change security-related (QMS 3.6), as the classification asks them.
_SECURITY_ANSWERS = ("cve", "sensitive", "network_iam")
_NOT_IN_NAME = re.compile(r"[^a-z0-9_-]+")
CLOSE_FORM = '/release bridge close REL-12 summary="…"'
CLOSERS = ("release_manager", "engineering_lead", "operations")
# The ends that never get a validation, so they close the bridge without one.
ENDED_UNVALIDATED = (ROLLED_BACK, FAILED, CANCELLED)


def request_bridge(session: Session, release: Release, emergency: Emergency, now: datetime) -> None:
    """Queue the bridge's opening: a channel (or a thread when policy or Slack says so), invites and the card."""
    outbox.enqueue(session, key=f"bridge-open:{release.id}", kind=BRIDGE_OPEN, release_id=release.id,
                   at=now, stream=announce.stream(release), payload={"bridge_key": emergency.bridge_key})


def channel_name(pattern: str, release: Release) -> str:
    """The bridge channel's name: Slack allows lowercase letters, digits, '-' and '_', at most 80."""
    name = _NOT_IN_NAME.sub("-", pattern.format(n=release.id, service=release.service).lower())
    name = re.sub(r"-{2,}", "-", name).strip("-")[:NAME_LIMIT].rstrip("-")
    return name or f"rel-{release.id}-emergency"


def security_related(release: Release, emergency: Emergency) -> bool:
    answers = release.answers or {}
    return emergency.security or any(answers.get(k) for k in _SECURITY_ANSWERS)


def bridge_roles(release: Release, emergency: Emergency) -> tuple[str, ...]:
    return BRIDGE_ROLES + (("security",) if security_related(release, emergency) else ())


def of(session: Session, release_id: int) -> Emergency | None:
    return session.exec(select(Emergency).where(Emergency.release_id == release_id)).first()


@dataclass(frozen=True)
class BridgeView:
    """What the bridge card shows, read in one go."""

    release: Release
    emergency: Emergency
    status: ApprovalStatus
    deployment: Deployment | None
    steps: list[Task] = field(default_factory=list)  # deferred steps: tasks with an owner
    roles: tuple[str, ...] = ()
    log_count: int = 0


def view(db: Engine, release_id: int) -> BridgeView | None:
    from commands.decision_log import count
    from commands.deploy import deployment_of
    from commands.release import approval_of, load
    with read(db) as session:
        emergency = of(session, release_id)
        if emergency is None:
            return None
        release = load(session, release_id)
        steps = list(session.exec(select(Task).where(Task.release_id == release_id, Task.owner_id.is_not(None))
                                  .order_by(Task.due_at, Task.id)))
        return BridgeView(release, emergency, approval_of(session, release), deployment_of(session, release),
                          steps, bridge_roles(release, emergency), count(session, release_id))


# ---- what the delivery loop got done, written as soon as it is done -------------------------------

def _update(db: Engine, release_id: int, **values) -> Emergency:
    with transaction(db) as session:
        emergency = of(session, release_id)
        for k, v in values.items():
            setattr(emergency, k, v)
        session.add(emergency)
        session.flush()
        return emergency


def channel_made(db: Engine, release_id: int, channel: str, now: datetime) -> None:
    _update(db, release_id, bridge_kind="channel", bridge_channel=channel, bridge_opened_at=now)


def fell_back(db: Engine, release_id: int, channel: str, reason: str | None) -> None:
    """The bridge is a thread in the release channel (policy asked for one, or Slack made no channel)."""
    _update(db, release_id, bridge_kind="thread", bridge_channel=channel, bridge_fallback_reason=reason)


def thread_started(db: Engine, release_id: int, ts: str, now: datetime) -> None:
    _update(db, release_id, bridge_thread_ts=ts, bridge_opened_at=now)


def card_posted(db: Engine, release_id: int, ts: str, now: datetime) -> None:
    """The card is up. A channel bridge also tells the release channel where it is (once, by key)."""
    with transaction(db) as session:
        emergency = of(session, release_id)
        emergency.card_ts = ts
        session.add(emergency)
        if emergency.bridge_kind == "channel":
            from commands.release import load
            release = load(session, release_id)
            outbox.enqueue(session, key=f"bridge-link:{release_id}", kind=BRIDGE_POST, release_id=release_id,
                           at=now, stream=announce.stream(release), payload={"what": "link"})


def at(db: Engine, channel: str) -> list[Emergency]:
    """The open-or-closed bridges in this channel (a channel bridge, or threads in the release channel)."""
    with read(db) as session:
        return list(session.exec(select(Emergency).where(Emergency.bridge_channel == channel)))


# ---- closing ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Span:
    label: str
    at: datetime | None
    since_previous: timedelta | None


def durations(e: Emergency, deployment: Deployment | None) -> list[Span]:
    """open → assessed → approved → deployed → validated, each with the time since the step before."""
    # The emergency opens at the request (QMS 4.6), and the assessment and approval targets are measured from
    # it (commands.emergency.timing): the summary uses the same start, not the channel's creation.
    opened = e.opened_at
    marks = [("opened", opened), ("assessed", e.assessed_at), ("approved", e.approved_at),
             ("deployed", deployment.finished_at if deployment else None), ("validated", e.validated_at)]
    spans, last = [], None
    for label, when in marks:
        spans.append(Span(label, when, when - last if when and last else None))
        last = when or last
    return spans


def close_bridge(db: Engine, actor: Actor, release_id: int, summary: str, clock: Clock,
                 policy: Policy) -> Outcome:
    summary = (summary or "").strip()
    if not summary:
        raise InputError("closing a bridge needs a summary", field="summary", form=CLOSE_FORM)
    now = clock.now()

    def emergency_of(d) -> Emergency:
        e = of(d.session, d.release.id)
        if e is None:
            raise InputError(f"{d.release.ref} is not an emergency release; only emergencies have a bridge",
                             form=CLOSE_FORM)
        return e

    def replay(d) -> Outcome | None:
        e = emergency_of(d)
        return Outcome(f"The bridge of {d.release.ref} is already closed.", d.release) if e.closed_at else None

    def check(d) -> Emergency:
        e = emergency_of(d)
        if actor.user_id != d.release.requester_id:
            actor.require(CLOSERS, "Only the requester, a release manager, an engineering lead or the on-call "
                                   "engineer (operations) closes a bridge.")
        # A rolled-back, failed or cancelled emergency is never validated (validation needs a successful
        # deployment): its bridge closes on its outcome instead, or it could never close.
        if e.validated_at is None and d.release.state not in ENDED_UNVALIDATED:
            raise Refused(f"{d.release.ref}'s bridge stays open until validation is recorded: the on-call engineer "
                          "confirms, after the minimum monitoring window, that the incident is resolved and no new "
                          "error patterns appeared. (An emergency that was rolled back, failed or was cancelled "
                          "closes its bridge without validation.)", code="not_validated")
        return e

    def change(d) -> Outcome:
        e = d.context
        e.closed_by, e.closed_at, e.close_summary = actor.user_id, now, summary
        d.session.add(e)
        d.record("bridge_closed", reason=summary, after={"closed_at": now, "summary": summary}, touch=False)
        outbox.enqueue(d.session, key=f"bridge-close:{d.release.id}", kind=BRIDGE_POST, release_id=d.release.id,
                       at=now, stream=announce.stream(d.release), payload={"what": "closed"})
        announce.bridge_card(d.session, d.release, now, "closed")
        return Outcome(f"Closed the bridge of {d.release.ref}; its summary goes to the bridge"
                       + (" and the channel is archived." if e.bridge_kind == "channel" else "."), d.release,
                       changed=True)

    return decide(db, release_id, actor.user_id, "bridge_close", now, check=check, change=change, replay=replay)


def require_emergency(session: Session, release: Release, form: str) -> Emergency:
    e = of(session, release.id)
    if e is None:
        raise NotFound(f"{release.ref} is not an emergency release; only emergencies have a decision log",
                       form=form)
    return e
