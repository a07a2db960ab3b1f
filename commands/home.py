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

from sqlalchemy import and_, bindparam, func
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


@dataclass(frozen=True, slots=True)
class Brief:
    """The columns of a release the Home shows and the vote rules read (commands.vote.go_check): whole
    Release rows (summary, answers, every text) cost most of the read at 200 live releases."""
    id: int
    service: str
    version: str
    environment: str
    effective_type: str
    state: str
    start_at: datetime
    end_at: datetime
    requester_id: str
    round: int
    required_roles: dict
    approver_sets: list | None

    @property
    def ref(self) -> str:
        return f"REL-{self.id}"


_BRIEF = (Release.id, Release.service, Release.version, Release.environment, Release.effective_type, Release.state,
          Release.start_at, Release.end_at, Release.requester_id, Release.round, Release.required_roles,
          Release.approver_sets)
# Built once (as commands.release does): the Home is read on every open past its one-minute cache.
_LIVE = select(*_BRIEF).where(Release.state.in_(LIVE_STATES)).order_by(Release.start_at, Release.id)
# Only the columns used: on SQLite each timestamp read is a parse, and whole rows carry many of them.
_LIVE_VOTES = (select(Vote.release_id, Vote.voter_id, Vote.role, Vote.decision, Vote.note).join(Release, and_(Vote.release_id == Release.id, Vote.round == Release.round))
               .where(Release.state.in_(LIVE_STATES)).order_by(Vote.id))
_LIVE_FLAGS = (select(ReleaseFlag.release_id, ReleaseFlag.kind, ReleaseFlag.detail).join(Release, ReleaseFlag.release_id == Release.id)
               .where(Release.state.in_(LIVE_STATES), ReleaseFlag.cleared_at.is_(None),
                      ReleaseFlag.overridden_at.is_(None)).order_by(ReleaseFlag.id))
_LIVE_EMERGENCIES = select(Emergency).join(Release, Emergency.release_id == Release.id).where(
    Release.state.in_(LIVE_STATES))
_MINE_WHERE = and_(Release.requester_id == bindparam("user"), Release.state.not_in((CLOSED, CANCELLED)))
_MINE_COUNT = select(func.count()).select_from(Release).where(_MINE_WHERE)
_MINE = select(*_BRIEF).where(_MINE_WHERE).order_by(Release.start_at.desc(), Release.id.desc()).limit(ROWS)


@dataclass(frozen=True)
class VoteItem:
    release: Brief
    missing: str  # what the release still needs, in words
    role: str | None = None  # the role the viewer's Go would fill
    why_not: str = ""  # why the viewer cannot vote Go on it now (vote.go_check's sentence)
    flagged: bool = False  # a planning flag holds approval until rescheduled or overridden


@dataclass(frozen=True)
class DeployItem:
    release: Brief
    open_now: bool  # its window is open now (else it opens within NEAR)
    voted_as: str | None = None  # the viewer voted on it: another deployer must run it (QMS 3.4)


@dataclass(frozen=True)
class BlockedItem:
    release: Brief
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
        # someone with no role sees only their own requests and the blackouts: the live ones are not read
        live = [Brief(*row) for row in session.execute(_LIVE)] if approver or deployer or manager else []
        votes: dict[int, list] = {}  # rows of (release_id, voter_id, role, decision, note)
        flags: dict[int, list] = {}  # rows of (release_id, kind, detail)
        ems: dict[int, Emergency] = {}
        if live:
            for v in session.execute(_LIVE_VOTES):
                votes.setdefault(v.release_id, []).append(v)
            for f in session.execute(_LIVE_FLAGS):
                flags.setdefault(f.release_id, []).append(f)
            if any(r.effective_type == "emergency" for r in live):
                ems = {em.release_id: em for em in session.scalars(_LIVE_EMERGENCIES)}
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


def _status(r: Brief, votes: list[Vote]) -> ApprovalStatus:
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
_TASKS = (select(Task.release_id, Task.kind, Task.due_at, Task.owner_id).where(Task.done_at.is_(None))
          .where((Task.due_at < bindparam("now")) | Task.kind.in_(_DEFERRED)).order_by(Task.due_at, Task.id))
_NC_WHERE = NonConformance.state.not_in(NC_OPEN)
_NC_COUNT = select(func.count()).select_from(NonConformance).where(_NC_WHERE)
_NCS = select(NonConformance.id, NonConformance.kind, NonConformance.detail, NonConformance.state,
              NonConformance.at, NonConformance.due_at, NonConformance.owner_id, NonConformance.release_id).where(_NC_WHERE).order_by(NonConformance.at.desc(), NonConformance.id.desc()).limit(ROWS)


def _tasks(session, now: datetime) -> list[TaskItem]:
    """Overdue tasks, and every open deferred step of an emergency (each is a deadline that becomes a
    non-conformance when it passes)."""
    return [TaskItem(f"REL-{t.release_id}", t.kind, deferred.LABELS.get(t.kind) or TASKS.get(t.kind, t.kind),
                     t.due_at, t.owner_id, t.due_at < now, t.kind in _DEFERRED)
            for t in session.execute(_TASKS, {"now": now})]


def _nonconformances(session) -> Counted:
    total = session.scalar(_NC_COUNT) or 0
    return Counted(tuple(NCItem(f"NC-{n.id}", n.kind, n.detail, n.state, n.at, n.due_at, n.owner_id,
                                f"REL-{n.release_id}" if n.release_id else None) for n in session.execute(_NCS)),
                   total)


def _mine(session, user_id: str) -> Counted:
    """The viewer's own requests that are not over: live, in flight or stabilising, newest window first."""
    total = session.scalar(_MINE_COUNT, {"user": user_id}) or 0
    return Counted(tuple(Brief(*row) for row in session.execute(_MINE, {"user": user_id})), total)


# Long occurrences are stored in pieces; the whole occurrence is kept beside each, so pieces of one
# occurrence are shown once.
_BLACKOUTS = (select(Blackout.id, Blackout.name, BlackoutOccurrence)
              .join(Blackout, BlackoutOccurrence.blackout_id == Blackout.id)
              .where(Blackout.removed_at.is_(None), BlackoutOccurrence.end_at > bindparam("now"))
              .order_by(BlackoutOccurrence.start_at, BlackoutOccurrence.id).limit(BLACKOUTS * 8))


def _blackouts(session, now: datetime) -> tuple[BlackoutItem, ...]:
    rows = session.execute(_BLACKOUTS, {"now": now})
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
