"""What one person's App Home shows, by the roles they hold: a pure read of the record.

Everything is read in one read transaction with a fixed number of queries, whatever the number of
live releases (the live releases, their current round's votes, their open flags and emergency rows,
the open tasks, the open non-conformances and their count, the person's own requests and their
count, the next blackouts). Whether the viewer may vote is decided by commands.vote's own rules
(vote.go_check) on those rows, never a query or a Slack call per release.

Lists are whole here (counted); the renderer (bot/messages/home.py) shows the first few of each
and says how many more there are and where to see them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, func
from sqlalchemy.engine import Engine
from sqlmodel import select

from commands import deferred, vote
from commands.aftercare import TASKS
from commands.approval import NOGO, ApprovalStatus, CastVote, status
from commands.clock import Clock
from commands.outcome import Actor
from commands.policy import Policy
from commands.states import APPROVED, CANCELLED, CLOSED, LIVE_STATES
from storage.db import read
from storage.models import (Blackout, BlackoutOccurrence, Emergency, NonConformance, Release, ReleaseFlag, Task,
                            Vote)

# A deployer sees an approved release from this long before its window opens.
NEAR = timedelta(hours=24)
# How many rows the lists the renderer truncates read at most (it shows fewer and counts the rest).
ROWS = 50
BLACKOUTS = 5
NC_OPEN = ("closed",)  # states an open non-conformance is not in


@dataclass(frozen=True)
class VoteItem:
    release: Release
    missing: str  # what the release still needs, in words
    role: str | None = None  # the role the viewer's Go would fill
    why_not: str = ""  # why the viewer cannot vote Go on it now (vote.go_check's sentence)
    flagged: bool = False  # a planning flag holds approval until rescheduled or overridden


@dataclass(frozen=True)
class DeployItem:
    release: Release
    open_now: bool  # its window is open now (else it opens within NEAR)
    voted_as: str | None = None  # the viewer voted on it: another deployer must run it (QMS 3.4)


@dataclass(frozen=True)
class BlockedItem:
    release: Release
    reasons: tuple[str, ...]  # open planning flags and standing No-gos


@dataclass(frozen=True)
class TaskItem:
    release_ref: str
    kind: str
    label: str
    due_at: datetime
    owner_id: str | None
    overdue: bool
    deferred: bool  # an emergency's deferred step (QMS 4.6), not the follow-up or retrospective


@dataclass(frozen=True)
class NCItem:
    ref: str
    kind: str
    detail: str
    state: str
    at: datetime
    due_at: datetime | None
    owner_id: str | None
    release_ref: str | None


@dataclass(frozen=True)
class BlackoutItem:
    name: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Counted:
    """The first rows of a list and how many it has in all."""
    items: tuple
    total: int

    @property
    def more(self) -> int:
        return max(0, self.total - len(self.items))


def counted(rows, total: int | None = None) -> Counted:
    rows = tuple(rows)
    return Counted(rows, len(rows) if total is None else total)


@dataclass(frozen=True)
class HomeView:
    user_id: str
    now: datetime
    roles: frozenset[str]
    unresolved: frozenset[str]
    approver: bool
    deployer: bool
    release_manager: bool
    to_vote: Counted = counted(())
    cannot_vote: Counted = counted(())
    to_deploy: Counted = counted(())
    blocked: Counted = counted(())
    tasks: Counted = counted(())
    nonconformances: Counted = counted(())
    mine: Counted = counted(())
    blackouts: tuple[BlackoutItem, ...] = field(default_factory=tuple)


def approver_roles(policy: Policy) -> frozenset[str]:
    """Roles some release type asks a vote of."""
    return frozenset(r for t in policy.types.values() for one in t.approver_sets for r in one)


def home_view(db: Engine, actor: Actor, clock: Clock, policy: Policy) -> HomeView:
    now = clock.now()
    held = actor.roles | actor.unresolved
    approver = bool(held & approver_roles(policy))
    deployer = bool(held & set(policy.deployment.deployers))
    manager = "release_manager" in actor.roles
    with read(db) as session:
        live = list(session.scalars(select(Release).where(Release.state.in_(LIVE_STATES))
                                    .order_by(Release.start_at, Release.id)))
        votes: dict[int, list[Vote]] = {}
        flags: dict[int, list[ReleaseFlag]] = {}
        ems: dict[int, Emergency] = {}
        if live and (approver or deployer or manager):
            for v in session.scalars(select(Vote).join(Release, and_(Vote.release_id == Release.id,
                                                                     Vote.round == Release.round))
                                     .where(Release.state.in_(LIVE_STATES)).order_by(Vote.id)):
                votes.setdefault(v.release_id, []).append(v)
            for f in session.scalars(select(ReleaseFlag).join(Release, ReleaseFlag.release_id == Release.id)
                                     .where(Release.state.in_(LIVE_STATES), ReleaseFlag.cleared_at.is_(None),
                                            ReleaseFlag.overridden_at.is_(None)).order_by(ReleaseFlag.id)):
                flags.setdefault(f.release_id, []).append(f)
            for em in session.scalars(select(Emergency).join(Release, Emergency.release_id == Release.id)
                                      .where(Release.state.in_(LIVE_STATES))):
                ems[em.release_id] = em
        out = dict(user_id=actor.user_id, now=now, roles=actor.roles, unresolved=actor.unresolved,
                   approver=approver, deployer=deployer, release_manager=manager)
        statuses = {r.id: _status(r, votes.get(r.id, [])) for r in live}
        if approver:
            out |= _votes(live, statuses, votes, flags, ems, actor)
        if deployer:
            out["to_deploy"] = counted(_deployable(live, votes, actor, now))
        if manager:
            out["blocked"] = counted(_blocked(live, statuses, flags))
            out["tasks"] = counted(_tasks(session, now))
            out["nonconformances"] = _nonconformances(session)
        out["mine"] = _mine(session, actor.user_id)
        out["blackouts"] = _blackouts(session, now)
    return HomeView(**out)


def _status(r: Release, votes: list[Vote]) -> ApprovalStatus:
    return status(r.required_roles, [CastVote(v.voter_id, v.role, v.decision, v.note) for v in votes],
                  r.approver_sets)


def _votes(live, statuses, votes, flags, ems, actor: Actor) -> dict:
    held = actor.roles | actor.unresolved
    can, cannot = [], []
    for r in live:
        if not held & set(r.required_roles):
            continue  # a release that asks none of the viewer's roles is not theirs to vote on
        st = statuses[r.id]
        mine = next((v for v in votes.get(r.id, ()) if v.voter_id == actor.user_id), None)
        role, why = vote.go_check(r, st, actor, mine, ems.get(r.id))
        item = VoteItem(r, st.missing_text(), role, why, bool(flags.get(r.id)))
        (can if role else cannot).append(item)
    return {"to_vote": counted(can), "cannot_vote": counted(cannot)}


def _deployable(live, votes, actor: Actor, now: datetime) -> list[DeployItem]:
    out = []
    for r in live:
        if r.state != APPROVED or r.end_at <= now or r.start_at > now + NEAR:
            continue
        mine = next((v for v in votes.get(r.id, ()) if v.voter_id == actor.user_id and v.decision != "withdrawn"),
                    None)
        out.append(DeployItem(r, r.start_at <= now, mine.role if mine else None))
    return out


def _blocked(live, statuses, flags) -> list[BlockedItem]:
    out = []
    for r in live:
        reasons = [f"{f.kind}: {f.detail}" for f in flags.get(r.id, ())]
        reasons += [f"No-go from {v.voter_id} ({v.role}): {v.note or ''}" for v in statuses[r.id].nogos
                    if v.decision == NOGO]
        if reasons:
            out.append(BlockedItem(r, tuple(reasons)))
    return out


_DEFERRED = frozenset(deferred.LABELS) - {"retrospective"}


def _tasks(session, now: datetime) -> list[TaskItem]:
    """Overdue tasks, and every open deferred step of an emergency (each is a deadline that becomes a
    non-conformance when it passes)."""
    rows = session.execute(select(Task, Release.id).join(Release, Task.release_id == Release.id)
                           .where(Task.done_at.is_(None))
                           .where((Task.due_at < now) | Task.kind.in_(_DEFERRED))
                           .order_by(Task.due_at, Task.id))
    return [TaskItem(f"REL-{rid}", t.kind, deferred.LABELS.get(t.kind) or TASKS.get(t.kind, t.kind), t.due_at,
                     t.owner_id, t.due_at < now, t.kind in _DEFERRED) for t, rid in rows]


def _nonconformances(session) -> Counted:
    where = NonConformance.state.not_in(NC_OPEN)
    total = session.scalar(select(func.count()).select_from(NonConformance).where(where)) or 0
    rows = session.scalars(select(NonConformance).where(where)
                           .order_by(NonConformance.at.desc(), NonConformance.id.desc()).limit(ROWS))
    return Counted(tuple(NCItem(n.ref, n.kind, n.detail, n.state, n.at, n.due_at, n.owner_id,
                                f"REL-{n.release_id}" if n.release_id else None) for n in rows), total)


def _mine(session, user_id: str) -> Counted:
    """The viewer's own requests that are not over: live, in flight or stabilising, newest window first."""
    where = and_(Release.requester_id == user_id, Release.state.not_in((CLOSED, CANCELLED)))
    total = session.scalar(select(func.count()).select_from(Release).where(where)) or 0
    rows = session.scalars(select(Release).where(where).order_by(Release.start_at.desc(), Release.id.desc())
                           .limit(ROWS))
    return Counted(tuple(rows), total)


def _blackouts(session, now: datetime) -> tuple[BlackoutItem, ...]:
    # Long occurrences are stored in pieces; the whole occurrence is kept beside each, so pieces of one
    # occurrence are shown once.
    rows = session.execute(select(Blackout.id, Blackout.name, BlackoutOccurrence)
                           .join(Blackout, BlackoutOccurrence.blackout_id == Blackout.id)
                           .where(Blackout.removed_at.is_(None), BlackoutOccurrence.end_at > now)
                           .order_by(BlackoutOccurrence.start_at, BlackoutOccurrence.id).limit(BLACKOUTS * 8))
    seen, out = set(), []
    for bid, name, occ in rows:
        name = occ.summary or name
        start, end = occ.occurrence_start or occ.start_at, occ.occurrence_end or occ.end_at
        if (bid, start) in seen:
            continue
        seen.add((bid, start))
        out.append(BlackoutItem(name, start, end))
        if len(out) == BLACKOUTS:
            break
    return tuple(out)
