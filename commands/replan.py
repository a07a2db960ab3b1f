"""Re-planning releases already planned when the calendar changes under them (QMS §4.4 step 1, §5.1).

A blackout added, moved or removed, or a release cancelled or moved, changes
what the planning checks say about other live releases. Each one touched is
re-checked here, in the transaction that made the change, and its thread is
told what changed; an approved release that gains a flag falls back to pending.

Two rules keep the re-check from becoming a bypass: a blackout flag clears only
when an executive removed the blackout (or the release moved to a clean
window), never because a calendar refresh stopped covering it; and the re-check
after a release is cancelled or moved only clears the conflict flags that named
it, and raises nothing new on anyone else.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import Session

from commands import announce, planning
from commands.policy import Policy
from commands.states import LIVE_STATES
from storage import audit
from storage.db import is_postgres
from calendars.recurrence import Occurrence
from commands.planning import coalesced_utc
from storage.models import Blackout, BlackoutOccurrence, Release, ReleaseFlag, UTCDateTime

SYSTEM = "releasebot"  # the audit actor of a change no person made (a calendar refresh)


def _flag_list(flags: list[ReleaseFlag]) -> list[dict]:
    return [{"kind": f.kind, "detail": f.detail, "ref": f.ref} for f in flags]


def _lock(session: Session, release: Release) -> None:
    """Take the release's row lock, as a decision on it does, and read it afresh: a vote settling it
    at the same moment must see the flag raised here (PostgreSQL; SQLite already serialises writers).
    Callers go in release id order, so two re-plans cannot deadlock each other."""
    if is_postgres(session.get_bind()):
        session.execute(select(Release.id).where(Release.id == release.id).with_for_update())
        session.refresh(release)


def _flagged(session: Session, *refs: str, kind: str = "blackout") -> list[Release]:
    """Live releases with an open flag of this kind naming one of refs, in id order."""
    ids = select(ReleaseFlag.release_id).where(ReleaseFlag.kind == kind, ReleaseFlag.ref.in_(refs),
                                               ReleaseFlag.cleared_at.is_(None))
    return list(session.scalars(select(Release).where(Release.id.in_(ids), Release.state.in_(LIVE_STATES))
                                .order_by(Release.id)))


def covered_releases(session: Session, blackout_id: int) -> list[Release]:
    """Live releases whose window the blackout, as stored now, covers in its scope, or that carry its flag."""
    b = session.get(Blackout, blackout_id)
    found: dict[int, Release] = {}
    pieces = session.execute(select(BlackoutOccurrence.start_at, BlackoutOccurrence.end_at)
                             .where(BlackoutOccurrence.blackout_id == blackout_id)).all()
    for start, end in pieces:
        for r in planning.releases_over_all(session, start, end):
            if r.state in LIVE_STATES and planning.applies(b, r.service, r.environment):
                found[r.id] = r
    for r in _flagged(session, f"blackout:{blackout_id}"):
        found[r.id] = r
    return sorted(found.values(), key=lambda r: r.id)


def held_occurrences(session: Session, blackout: Blackout, new: list[tuple[Occurrence, str | None]]
                     ) -> tuple[list[tuple[Occurrence, str | None]], list[Release]]:
    """The stored occurrences a refresh may not drop: those over a live release that carries this
    blackout's flag, when none of the new ones covers it any more. And the releases they hold."""
    ref = f"blackout:{blackout.id}"
    flagged = _flagged(session, ref)
    if not flagged:
        return [], []
    utc = UTCDateTime()
    stored = {(coalesced_utc(utc, s), coalesced_utc(utc, e), summary) for s, e, summary in session.execute(
        select(func.coalesce(BlackoutOccurrence.occurrence_start, BlackoutOccurrence.start_at),
               func.coalesce(BlackoutOccurrence.occurrence_end, BlackoutOccurrence.end_at),
               BlackoutOccurrence.summary).where(BlackoutOccurrence.blackout_id == blackout.id))}
    held: dict[tuple, tuple[Occurrence, str | None]] = {}
    holding = []
    for r in flagged:
        if any(o.start < r.end_at and o.end > r.start_at for o, _ in new):
            continue
        old = [(s, e, summary) for s, e, summary in stored if s < r.end_at and e > r.start_at]
        for s, e, summary in old:
            held[(s, e, summary)] = (Occurrence(s, e), summary)
        if old:
            holding.append(r)
    return list(held.values()), holding


def announce_held(session: Session, blackout: Blackout, releases: list[Release], who: str,
                  now: datetime) -> list[str]:
    """Say once per flag why a blackout that no longer covers a release still flags it; the refs told now."""
    ref = f"blackout:{blackout.id}"
    told = []
    for r in releases:
        flag = next((f for f in planning.open_flags(session, r.id) if f.ref == ref), None)
        if flag is None or not announce.note(session, r, "blackout_held", now, key_suffix=str(flag.id),
                                             blackout=blackout.id, name=_name(flag)):
            continue
        audit.record(session, actor=who, action="blackout_held", release_id=r.id, at=now,
                     after={"blackout": blackout.id, "flag": flag.detail},
                     reason="the blackout no longer covers this window, but shortening a blackout over a live "
                            "release needs an executive: the flag stands")
        told.append(r.ref)
    return told


def blackout_changed(session: Session, blackout_id: int, who: str, now: datetime, *, may_clear: bool,
                     releases: list[Release] | None = None, reason: str | None = None) -> list[str]:
    """Re-check the live releases this blackout touches; the refs whose flags changed.

    may_clear: an executive removed or shortened the blackout, so a flag it no
    longer justifies clears. Otherwise such a flag stands, and the thread is told why."""
    from commands.release import settle, touch
    ref = f"blackout:{blackout_id}"
    changed = []
    for r in releases if releases is not None else covered_releases(session, blackout_id):
        _lock(session, r)
        if r.state not in LIVE_STATES:
            continue
        hit = next((h for h in planning.blackouts_over(session, r.start_at, r.end_at, r.service, r.environment)
                    if h.blackout_id == blackout_id), None)
        mine = [f for f in planning.open_flags(session, r.id) if f.kind == "blackout" and f.ref == ref]
        before = _flag_list(planning.open_flags(session, r.id))
        payload: dict = {"blackout": blackout_id}
        if hit is not None:
            payload.update(name=hit.name, start=hit.start.isoformat(), end=hit.end.isoformat())
            detail = planning.blackout_detail(hit)
            if not mine:
                session.add(ReleaseFlag(release_id=r.id, kind="blackout", detail=detail, ref=ref, raised_at=now))
                event = "blackout_flagged"
            elif mine[0].detail != detail:
                mine[0].detail = detail
                event = "blackout_moved"
            else:
                continue
        elif mine and may_clear:
            for f in mine:
                f.cleared_at = now
            payload.update(name=_name(mine[0]), by=who, reason=reason or "")
            event = "blackout_cleared"
        elif mine:
            # e.g. an occurrence that has aged out of the stored range: the flag stands, said once
            changed += announce_held(session, session.get(Blackout, blackout_id), [r], who, now)
            continue
        else:
            continue
        session.flush()
        touch(r, now)
        after = planning.open_flags(session, r.id)
        ev = audit.record(session, actor=who, action="planning_checked", release_id=r.id, at=now,
                          before={"flags": before}, after={"flags": _flag_list(after)},
                          reason=f"blackout {blackout_id} changed" + (f": {reason}" if reason else ""))
        announce.approval_update(session, r, now, ev)
        moved = settle(session, r, who, now)
        announce.note(session, r, event, now, key_suffix=str(ev.id), revoked=moved == "revoked",
                      approved=moved == "approved", **payload)
        changed.append(r.ref)
    return changed


def _name(flag: ReleaseFlag) -> str:
    """The name as the flag recorded it (planning.blackout_detail): for a subscribed calendar, the event's."""
    text, prefix = flag.detail, "falls in blackout '"
    return text[len(prefix):text.rindex("' (")] if text.startswith(prefix) and "' (" in text else text


def release_moved(session: Session, moved: Release, who: str, now: datetime, policy: Policy | None) -> list[str]:
    """`moved` was cancelled or rescheduled: clear the conflict flags on other live releases that it
    caused and that no longer hold. Nothing new is raised on them; the refs whose flags cleared.

    Without the policy (a caller that has none) only the same-service overlap, which does not depend
    on it, is judged: an environment's limit is the operator's to set."""
    from commands.release import _planned_at, settle, touch
    refs = (moved.ref, f"env:{moved.environment}") if policy is not None else (moved.ref,)
    policy = policy or Policy.default()
    how = "moved" if moved.state in LIVE_STATES else "cancelled"
    cleared_on = []
    for r in _flagged(session, *refs, kind="conflict"):
        if r.id == moved.id:
            continue
        _lock(session, r)
        if r.state not in LIVE_STATES:
            continue
        fresh = {(f.kind, f.ref) for f in planning.check(
            session, policy, service=r.service, environment=r.environment, release_type=r.effective_type,
            start=r.start_at, end=r.end_at, requested_at=_planned_at(session, r), exclude=r.id)}
        before = planning.open_flags(session, r.id)
        gone = [f for f in before if f.kind == "conflict" and f.ref in refs and (f.kind, f.ref) not in fresh]
        if not gone:
            continue
        snapshot_before = _flag_list(before)
        for f in gone:
            f.cleared_at = now
        touch(r, now)
        ev = audit.record(session, actor=who, action="planning_checked", release_id=r.id, at=now,
                          before={"flags": snapshot_before},
                          after={"flags": _flag_list(planning.open_flags(session, r.id))},
                          reason=f"{moved.ref} was {how}; " + "; ".join(f"cleared: {f.detail}" for f in gone))
        announce.approval_update(session, r, now, ev)
        state = settle(session, r, who, now)
        announce.note(session, r, "conflict_cleared", now, key_suffix=str(ev.id), other=moved.ref,
                      how=how,
                      details=[f.detail for f in gone], approved=state == "approved")
        cleared_on.append(r.ref)
    return cleared_on


def reschedule_to_slot(db, actor, release_id: int, slot: str, clock, policy: Policy):
    """The "Reschedule to <slot>" button: the same reschedule decision as `/release reschedule`
    (commands.release.edit_release: owner or release manager, live, every planning check again,
    audited), to the start `slot` names (epoch seconds, UTC). A second click finds the release
    already there and changes nothing."""
    from calendars.timeparse import zone
    from commands.errors import InputError
    from commands.release import edit_release, load
    from storage.db import read
    if not (slot.isascii() and slot.isdigit() and len(slot) <= 11):
        raise InputError("that slot is not a time; use /release reschedule REL-12 start=\"YYYY-MM-DD HH:MM\"")
    start = datetime.fromtimestamp(int(slot), tz=zone("UTC"))
    with read(db) as session:
        tz = load(session, release_id).tz
    # the window keeps its zone: the start is given as its wall-clock time there
    local = start.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M")
    return edit_release(db, actor, release_id, {"start": local}, clock, policy)
