"""The non-conformance register (QMS 6.2): each NC's corrective action, from open to closed.

open -> action_planned -> actioned -> verified -> closed.
- plan: a release manager names the owner and the corrective action (and may re-plan, owner or
  action, until it is actioned). Kept to release managers: they own the register (QMS 6.2), and
  an NC with no release has no one else to ask.
- done: the owner records the evidence of the fix.
- verify, close: a release manager who is not the owner (separation of duties). A repeat (the same
  kind for the same service within the repeat window) needs a formal corrective action: its
  root_cause, given on plan or on done, must be written before it can be closed.

Every change is one decision, written once here as commands/decision.py writes it for releases:
lock the NC -> answer a replay -> check -> on a refusal audit `nonconformance_<verb>_refused` and
say why -> change -> audit `nonconformance_<done>` -> queue what Slack is told, one transaction.

Overdue: past its due date and not yet actioned. The due date is for the documented corrective
action (QMS 6.2), and an actioned NC has it, with evidence; verification is the release managers'
part and is not the owner's lateness.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from commands import announce
from commands.clock import Clock
from commands.errors import InputError, NotFound, Refused
from commands.nonconformance import zone_of
from commands.outcome import Actor, Outcome
from commands.text import check_text, when
from commands.usage import USAGE
from storage import audit, outbox
from storage.db import read, transaction
from storage.models import NonConformance, Release

OPEN, PLANNED, ACTIONED, VERIFIED, CLOSED = "open", "action_planned", "actioned", "verified", "closed"
STATES = (OPEN, PLANNED, ACTIONED, VERIFIED, CLOSED)
NOT_ACTIONED = (OPEN, PLANNED)
LISTS = ("open", "overdue", "mine")
RM = "release_manager"
NC_NOTE = "nc_note"  # an outbox kind: a register change, in the release's thread or (no release) the channel
TEXT_MAX = 3000  # a Slack text input's most
# As Slack sends a mention with escaping on (<@U123|name>), without a name, or the bare member id.
_MENTION = re.compile(r"^(?:<@([UW][A-Z0-9]{2,20})(?:\|[^<>]*)?>|@?([UW][A-Z0-9]{2,20}))\Z", re.ASCII)


def parse_owner(text: str | None) -> str:
    m = _MENTION.match((text or "").strip())
    if not m:
        raise InputError("owner is a person, as a mention (owner=@alice picked from Slack's list) or their "
                         "member id (owner=U012ABC)", field="owner", form=USAGE["nc"])
    return m.group(1) or m.group(2)


def _text(args: dict[str, str], key: str, needed: str | None) -> str | None:
    value = (args.get(key) or "").strip()
    check_text(value, key, USAGE["nc"])
    if not value:
        if needed:
            raise InputError(needed, field=key, form=USAGE["nc"])
        return None
    if len(value) > TEXT_MAX:
        raise InputError(f"{key} is too long ({len(value)} characters; at most {TEXT_MAX})", field=key,
                         form=USAGE["nc"])
    return value


def snapshot(nc: NonConformance) -> dict[str, Any]:
    return {"state": nc.state, "owner": nc.owner_id, "action": nc.action, "evidence": nc.evidence,
            "root_cause": nc.root_cause, "due_at": nc.due_at, "repeat": nc.repeat, "repeat_of": nc.repeat_of}


def load(session: Session, nc_id: int, lock: bool = False) -> NonConformance:
    query = select(NonConformance).where(NonConformance.id == nc_id)
    nc = session.exec(query.with_for_update() if lock else query).first()
    if nc is None:
        raise NotFound(f"NC-{nc_id} does not exist; /release nc list shows the register", form=USAGE["nc"])
    return nc


# ---- the one shape of a register decision -----------------------------------------------------

@dataclass
class NcDecision:
    session: Session
    nc: NonConformance
    who: str
    now: datetime
    before: dict[str, Any] = field(default_factory=dict)

    def record(self, action: str, reason: str | None = None) -> int:
        """Audit the change; returns the event's id (what the change's Slack note is keyed by)."""
        return audit.record(self.session, actor=self.who, action=f"nonconformance_{action}", release_id=self.nc.release_id,
                     at=self.now, before={"nonconformance": self.nc.id, **self.before},
                     after={"nonconformance": self.nc.id, **snapshot(self.nc)}, reason=reason).id  # type: ignore[return-value]


def refuse(session: Session, nc: NonConformance, who: str, verb: str, exc: Refused, now: datetime) -> Outcome:
    """Say no, and keep the refusal in the audit log."""
    audit.record(session, actor=who, action=f"nonconformance_{verb}_refused", release_id=nc.release_id, at=now,
                 after={"code": exc.code, "nonconformance": nc.id, "state": nc.state}, reason=exc.message)
    return Outcome(exc.message, refused=True,
                   data={"nc": nc.id, **({"needs_roles": list(exc.roles)} if exc.roles else {})})


def decide(db: Engine, nc_id: int, who: str, verb: str, now: datetime, *,
           check: Callable[[NcDecision], None], change: Callable[[NcDecision], Outcome],
           replay: Callable[[NcDecision], Outcome | None] | None = None) -> Outcome:
    with transaction(db) as session:
        nc = load(session, nc_id, lock=True)
        d = NcDecision(session, nc, who, now)
        if replay is not None:
            again = replay(d)
            if again is not None:
                return again
        try:
            check(d)
        except Refused as exc:
            return refuse(session, nc, who, verb, exc, now)
        d.before = snapshot(nc)
        return change(d)


def _require_rm(actor: Actor, what: str) -> None:
    actor.require((RM,), f"Only a release manager can {what} a non-conformance (QMS 6.2: they own the register).")


def _not_owner(actor: Actor, nc: NonConformance, what: str) -> None:
    if nc.owner_id and actor.user_id == nc.owner_id:
        raise Refused(f"You own {nc.ref}'s corrective action, so another release manager must {what} it "
                      "(separation of duties).", "owner_cannot_" + what)


def _state(nc: NonConformance, allowed: tuple[str, ...], doing: str) -> None:
    if nc.state not in allowed:
        hint = {OPEN: "a release manager plans it first (/release nc plan)",
                PLANNED: "its owner records the fix first (/release nc done)",
                ACTIONED: "a release manager verifies it first (/release nc verify)",
                VERIFIED: "it is verified; what is left is closing it (/release nc close)",
                CLOSED: "it is closed"}[nc.state]
        raise Refused(f"{nc.ref} is {nc.state.replace('_', ' ')}, so it cannot be {doing}: {hint}.", "wrong_state")


def _note(d: NcDecision, event: str, cause: int, **payload: Any) -> None:
    """What Slack is told, queued with the change: in the release's thread (its stream keeps the order),
    or in the release channel for an NC that names no release."""
    nc = d.nc
    release = d.session.get(Release, nc.release_id) if nc.release_id else None
    outbox.enqueue(d.session, key=f"nc-note:{nc.id}:{event}:{cause}", kind=NC_NOTE,
                   release_id=nc.release_id, at=d.now, stream=announce.stream(release) if release else None,
                   payload={"nc": nc.id, "event": event, "by": d.who, **payload})


# ---- the use cases -----------------------------------------------------------------------------

def plan(db: Engine, actor: Actor, nc_id: int, args: dict[str, str], clock: Clock) -> Outcome:
    owner = parse_owner(args.get("owner")) if (args.get("owner") or "").strip() else None
    if owner is None:
        raise InputError("plan needs owner=@person: who carries out the corrective action", field="owner",
                         form=USAGE["nc"])
    action = _text(args, "action", 'plan needs action="…": the corrective action, in words')
    root_cause = _text(args, "root_cause", None)
    now = clock.now()

    def replay(d: NcDecision) -> Outcome | None:
        nc = d.nc
        if nc.state == PLANNED and (nc.owner_id, nc.action) == (owner, action) and \
                (root_cause is None or root_cause == nc.root_cause):
            return Outcome(f"{nc.ref} is already planned like that; nothing changed.", data={"nc": nc.id})
        return None

    def check(d: NcDecision) -> None:
        _require_rm(actor, "plan")
        _state(d.nc, NOT_ACTIONED, "planned")

    def change(d: NcDecision) -> Outcome:
        nc = d.nc
        replanned = nc.state == PLANNED
        nc.state, nc.owner_id, nc.action = PLANNED, owner, action
        nc.planned_by, nc.planned_at = actor.user_id, d.now
        if root_cause is not None:
            nc.root_cause = root_cause
        d.session.add(nc)
        d.session.flush()
        cause = d.record("replanned" if replanned else "planned")
        _note(d, "planned", cause, owner=owner, action=action, due=when(nc.due_at, _tz(d)), replanned=replanned)
        tail = " It is a repeat: its root cause must be written before it can be closed." \
            if nc.repeat and not nc.root_cause else ""
        return Outcome(f"{nc.ref}'s corrective action is {'re-planned' if replanned else 'planned'}: owner "
                       f"{_who(owner)}, due {when(nc.due_at, _tz(d))}.{tail}", changed=True, data={"nc": nc.id})

    return decide(db, nc_id, actor.user_id, "plan", now, check=check, change=change, replay=replay)


def done(db: Engine, actor: Actor, nc_id: int, args: dict[str, str], clock: Clock) -> Outcome:
    evidence = _text(args, "evidence", 'done needs evidence="…": what shows the fix is in (a link, a ticket)')
    root_cause = _text(args, "root_cause", None)
    now = clock.now()

    def replay(d: NcDecision) -> Outcome | None:
        if d.nc.state == ACTIONED and d.nc.evidence == evidence and d.nc.owner_id == actor.user_id:
            return Outcome(f"{d.nc.ref} is already recorded as actioned; nothing changed.", data={"nc": d.nc.id})
        return None

    def check(d: NcDecision) -> None:
        nc = d.nc
        if nc.state == PLANNED and nc.owner_id != actor.user_id:
            raise Refused(f"Only {nc.ref}'s owner, {_who(nc.owner_id)}, records its corrective action as done.",
                          "not_owner")
        _state(nc, (PLANNED,), "recorded as done")

    def change(d: NcDecision) -> Outcome:
        nc = d.nc
        nc.state, nc.evidence, nc.actioned_by, nc.actioned_at = ACTIONED, evidence, actor.user_id, d.now
        if root_cause is not None:
            nc.root_cause = root_cause
        d.session.add(nc)
        d.session.flush()
        cause = d.record("actioned")
        _note(d, "actioned", cause, evidence=evidence)
        late = " (after its due date)" if nc.due_at and d.now > nc.due_at else ""
        return Outcome(f"{nc.ref}'s corrective action is recorded as done{late}. A release manager other than "
                       "you verifies it next.", changed=True, data={"nc": nc.id})

    return decide(db, nc_id, actor.user_id, "done", now, check=check, change=change, replay=replay)


def verify(db: Engine, actor: Actor, nc_id: int, clock: Clock) -> Outcome:
    now = clock.now()

    def replay(d: NcDecision) -> Outcome | None:
        if d.nc.state in (VERIFIED, CLOSED) and RM in actor.roles:
            return Outcome(f"{d.nc.ref} is already verified; nothing changed.", data={"nc": d.nc.id})
        return None

    def check(d: NcDecision) -> None:
        _require_rm(actor, "verify")
        _not_owner(actor, d.nc, "verify")
        _state(d.nc, (ACTIONED,), "verified")

    def change(d: NcDecision) -> Outcome:
        nc = d.nc
        nc.state, nc.verified_by, nc.verified_at = VERIFIED, actor.user_id, d.now
        d.session.add(nc)
        d.session.flush()
        cause = d.record("verified")
        _note(d, "verified", cause)
        tail = (f" It is a repeat without a root cause yet: close it with /release nc close {nc.ref} "
                'root_cause="…".' if nc.repeat and not nc.root_cause else "")
        return Outcome(f"{nc.ref}'s corrective action is verified.{tail}", changed=True, data={"nc": nc.id})

    return decide(db, nc_id, actor.user_id, "verify", now, check=check, change=change, replay=replay)


def close(db: Engine, actor: Actor, nc_id: int, clock: Clock, root_cause: str | None = None) -> Outcome:
    root_cause = _text({"root_cause": root_cause or ""}, "root_cause", None)
    now = clock.now()

    def replay(d: NcDecision) -> Outcome | None:
        if d.nc.state == CLOSED and RM in actor.roles:
            return Outcome(f"{d.nc.ref} is already closed; nothing changed.", data={"nc": d.nc.id})
        return None

    def check(d: NcDecision) -> None:
        nc = d.nc
        _require_rm(actor, "close")
        _not_owner(actor, nc, "close")
        _state(nc, (VERIFIED,), "closed")
        if nc.repeat and not (nc.root_cause or root_cause):
            raise Refused(f"{nc.ref} is a repeat of NC-{nc.repeat_of}: a formal corrective action, whose root cause "
                          f"must be written before it is closed (QMS 6.2). Close it with root_cause=\"…\".",
                          "root_cause_missing")

    def change(d: NcDecision) -> Outcome:
        nc = d.nc
        if root_cause is not None:
            nc.root_cause = root_cause
        nc.state, nc.closed_by, nc.closed_at = CLOSED, actor.user_id, d.now
        d.session.add(nc)
        d.session.flush()
        cause = d.record("closed")
        _note(d, "closed", cause)
        return Outcome(f"{nc.ref} is closed.", changed=True, data={"nc": nc.id})

    return decide(db, nc_id, actor.user_id, "close", now, check=check, change=change, replay=replay)


def _tz(d: NcDecision) -> str:
    return zone_of(d.session.get(Release, d.nc.release_id) if d.nc.release_id else None)


def _who(user: str | None) -> str:
    # commands/ speaks plain text (the bot escapes it), so a person is named by their Slack id, not a mention
    return user or "nobody yet"


# ---- reading the register ----------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    nc: NonConformance
    release_ref: str | None
    overdue: bool


def _filter(query, which: str | None, user: str, now: datetime):
    if which == "overdue":
        return query.where(NonConformance.state.in_(NOT_ACTIONED), NonConformance.due_at <= now)
    query = query.where(NonConformance.state != CLOSED)
    if which == "mine":
        query = query.where(NonConformance.owner_id == user)
    return query


def listing(db: Engine, user: str, which: str | None, now: datetime, limit: int,
            state: str | None = None) -> tuple[list[Entry], int]:
    """The NCs of one list (open: not closed; overdue; mine: not closed and mine), oldest first, at most
    `limit`, and how many there are in all (so a page can say what it leaves out). `state` (the CLI's
    --state) lists one state instead."""
    if which not in (None, *LISTS):
        raise InputError(f"nc list takes {', '.join(LISTS)}", form=USAGE["nc"])
    if state is not None and state not in STATES:
        raise InputError(f"a state is one of {', '.join(STATES)}", form=USAGE["nc"])
    with read(db) as session:
        def scoped(query):
            return query.where(NonConformance.state == state) if state else _filter(query, which, user, now)
        total = session.exec(scoped(select(func.count()).select_from(NonConformance))).one()
        rows = list(session.exec(scoped(select(NonConformance, Release.id))
                                 .join(Release, Release.id == NonConformance.release_id, isouter=True)
                                 .order_by(NonConformance.id).limit(limit)))
    return [Entry(nc, f"REL-{rid}" if rid else None, is_overdue(nc, now)) for nc, rid in rows], int(total)


def is_overdue(nc: NonConformance, now: datetime) -> bool:
    return nc.state in NOT_ACTIONED and nc.due_at is not None and nc.due_at <= now


def show(db: Engine, nc_id: int, now: datetime) -> Entry:
    with read(db) as session:
        nc = load(session, nc_id)
        return Entry(nc, f"REL-{nc.release_id}" if nc.release_id else None, is_overdue(nc, now))


# ---- reminders, judged when due ------------------------------------------------------------------

@dataclass(frozen=True)
class Notice:
    nc: NonConformance
    release: Release | None  # its thread, or (None) the release channel
    what: str
    users: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    tz: str = "UTC"


@dataclass(frozen=True)
class Skip:
    reason: str


def reminder_due(session: Session, row) -> Notice | Skip:
    """Before the due date and at it: the owner (the release managers while it has none). After it, once:
    the release managers. An NC actioned by then is not chased."""
    what = row.payload.get("reminder", "")
    nc = session.get(NonConformance, row.payload.get("nc"))
    if nc is None:
        return Skip("no such non-conformance")
    if nc.state not in NOT_ACTIONED:
        return Skip(f"{nc.ref} is {nc.state}")
    release = session.get(Release, nc.release_id) if nc.release_id else None
    tz = zone_of(release)
    if what == "nc_escalation":
        return Notice(nc, release, what, roles=(RM,), tz=tz)
    if what in ("nc_soon", "nc_due"):
        if nc.owner_id:
            return Notice(nc, release, what, users=(nc.owner_id,), tz=tz)
        return Notice(nc, release, what, roles=(RM,), tz=tz)
    return Skip(f"unknown reminder '{what}'")


def escalated(session: Session, nc_id: int, now: datetime) -> None:
    """The escalation went out: say so on the NC (shown, and in the record)."""
    nc = session.get(NonConformance, nc_id)
    if nc is not None and nc.escalated_at is None:
        nc.escalated_at = now
        session.add(nc)
        audit.record(session, actor="releasebot", action="nonconformance_escalated", release_id=nc.release_id,
                     at=now, after={"nonconformance": nc.id, "due_at": nc.due_at, "state": nc.state},
                     reason="corrective action not documented by its due date (QMS 6.2)")
