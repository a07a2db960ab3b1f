"""Blackouts hold after approval (QMS 5.1): a blackout added, removed or moved re-checks the live releases it
touches and says so in their threads; removing one that covers a live release needs an executive; a release
cancelled or moved clears the conflict flags that named it, and raises nothing new."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlmodel import Session, select

from commands import planning
from commands.blackout import add_blackout, fetched, remove_blackout, subscribe
from commands.errors import CouldNotCheck, InputError
from commands.outcome import Actor
from commands.release import cancel_release, edit_release, override_flags
from commands.vote import cast_vote
from conftest import actor
from storage.models import AuditEvent, Blackout, ReleaseFlag
from unit_support import counts, dev, events, new_release, outbox, release

UTC = timezone.utc
RM, EXEC = "U0RM", "U0EXEC"
# REL windows default to 2026-12-01 14:00–15:00 UTC (unit_support.RAW)
DEC_1 = {"name": "Peak trading", "start": "2026-12-01 00:00", "end": "2026-12-02 00:00", "tz": "UTC"}


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def add(db, clock, policy, **raw) -> int:
    out = add_blackout(db, actor(RM), {**DEC_1, **raw}, clock, policy)
    assert out.changed, out.message
    return out.data["blackout"]


def approved(db, clock, policy, **fields) -> int:
    rid = new_release(db, clock, policy, **fields)
    for user in ("U0RM", "U0QA"):
        assert cast_vote(db, actor(user), rid, "go", clock).changed
    assert release(db, rid).state == "approved"
    return rid


def flags(db, rid) -> list[ReleaseFlag]:
    with Session(db, expire_on_commit=False) as s:
        return planning.open_flags(s, rid)


def kinds(db, rid) -> list[tuple[str, str | None]]:
    return [(f.kind, f.ref) for f in flags(db, rid)]


def notes(db, rid, event) -> list:
    return [r for r in outbox(db) if r.key.startswith(f"note:{rid}:{event}:")]


def removed(db, bid) -> bool:
    with Session(db) as s:
        return s.get(Blackout, bid).removed_at is not None


# --- adding a blackout ----------------------------------------------------------------------------------------------

def test_a_new_blackout_flags_an_approved_release_and_it_falls_back_to_pending(db, clock, policy):
    rid = approved(db, clock, policy)
    clock.advance(hours=1)
    bid = add(db, clock, policy)
    assert kinds(db, rid) == [("blackout", f"blackout:{bid}")]
    assert release(db, rid).state == "pending"
    [note] = notes(db, rid, "blackout_flagged")
    assert note.payload["name"] == "Peak trading" and note.payload["revoked"] is True
    assert notes(db, rid, "approval_revoked")
    [ev] = events(db, rid, "planning_checked")[-1:]
    assert ev.after["flags"][0]["ref"] == f"blackout:{bid}"


def test_a_new_blackout_leaves_releases_it_does_not_cover_alone(db, clock, policy):
    rid = approved(db, clock, policy)
    add(db, clock, policy, services="search")
    add(db, clock, policy, start="2026-12-03 00:00", end="2026-12-04 00:00")
    assert kinds(db, rid) == [] and release(db, rid).state == "approved"
    assert notes(db, rid, "blackout_flagged") == []


# --- removing a blackout that covers a live release ---------------------------------------------------------------

def test_a_release_manager_alone_cannot_remove_a_blackout_covering_a_live_release(db, clock, policy):
    bid = add(db, clock, policy)
    rid = new_release(db, clock, policy)
    before = counts(db)
    out = remove_blackout(db, actor(RM), bid, clock, reason="no longer needed")
    assert out.refused and not out.changed
    assert "executive" in out.message and "REL-1" in out.message
    assert not removed(db, bid)
    assert kinds(db, rid) == [("blackout", f"blackout:{bid}")]
    [ev] = events(db, action="blackout_remove_refused")
    assert (ev.release_id, ev.actor, ev.reason) == (None, RM, out.message)
    assert ev.after == {"code": "covers_live_releases", "blackout": bid, "releases": ["REL-1"], "role": "executive"}
    assert counts(db)[2] == before[2] + 1  # only the refusal


def test_the_bypass_remove_then_reschedule_by_a_minute_no_longer_clears_the_flag(db, clock, policy):
    bid = add(db, clock, policy)
    rid = new_release(db, clock, policy)
    assert remove_blackout(db, actor(RM), bid, clock).refused
    edit_release(db, actor(RM), rid, {"start": "2026-12-01 14:01"}, clock, policy)
    assert kinds(db, rid) == [("blackout", f"blackout:{bid}")]
    for user in ("U0RM", "U0QA"):
        cast_vote(db, actor(user), rid, "go", clock)
    assert release(db, rid).state == "pending"


def test_an_executive_removes_it_with_a_reason_and_the_flags_clear(db, clock, policy):
    bid = add(db, clock, policy)
    rid = new_release(db, clock, policy)
    for user in ("U0RM", "U0QA"):
        cast_vote(db, actor(user), rid, "go", clock)
    assert release(db, rid).state == "pending"
    before = counts(db)
    with pytest.raises(InputError) as exc:
        remove_blackout(db, actor(EXEC), bid, clock, reason="  ")
    assert exc.value.field == "reason" and counts(db) == before
    out = remove_blackout(db, actor(EXEC), bid, clock, reason="trading freeze cancelled by the board")
    assert out.changed and removed(db, bid)
    assert kinds(db, rid) == []
    [note] = notes(db, rid, "blackout_cleared")
    assert note.payload["by"] == EXEC and note.payload["reason"] == "trading freeze cancelled by the board"
    assert release(db, rid).state == "approved"
    [ev] = events(db, action="blackout_removed")
    assert ev.reason == "trading freeze cancelled by the board" and ev.after["releases"] == ["REL-1"]


def test_removing_a_blackout_no_live_release_is_in_needs_only_a_release_manager(db, clock, policy):
    bid = add(db, clock, policy)
    rid = new_release(db, clock, policy)
    assert cancel_release(db, dev(), rid, "not needed", clock).changed
    out = remove_blackout(db, actor(RM), bid, clock)
    assert out.changed and removed(db, bid)


# --- a reschedule holds a blackout flag while the window is still in it ------------------------------------------

def test_a_reschedule_inside_the_blackout_keeps_the_flag_and_its_override(db, clock, policy):
    bid = add(db, clock, policy)
    rid = new_release(db, clock, policy)
    assert override_flags(db, actor(EXEC), rid, "blackout", "VP approved: regulator", clock, policy).changed
    [flag] = flags(db, rid)
    edit_release(db, dev(), rid, {"start": "2026-12-01 14:01"}, clock, policy)
    [kept] = flags(db, rid)
    assert (kept.id, kept.overridden_by, kept.override_reason) == (flag.id, EXEC, "VP approved: regulator")
    edit_release(db, dev(), rid, {"start": "2026-12-03 14:00"}, clock, policy)  # genuinely clean
    assert flags(db, rid) == []


# --- subscribed calendars -----------------------------------------------------------------------------------------

def _calendar(day: str) -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//test//EN\r\nBEGIN:VEVENT\r\n"
            "DTSTAMP:20260101T000000Z\r\nUID:offsite@test\r\n"
            f"DTSTART;VALUE=DATE:{day}\r\nDTEND;VALUE=DATE:{day[:-1]}{int(day[-1]) + 1}\r\n"
            "SUMMARY:Company offsite\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def test_a_calendar_refresh_that_adds_an_event_flags_the_release_and_one_that_moves_it_cannot_clear(db, clock,
                                                                                                    policy):
    sub = subscribe(db, actor(RM), {"url": "https://calendar.test/h.ics", "name": "Holidays", "tz": "UTC"},
                    clock, policy).data["subscription"]
    first = approved(db, clock, policy)  # 1 December
    third = new_release(db, clock, policy, service="search", start="2026-12-03 14:00")
    fetched(db, sub, clock.now(), policy, body=_calendar("20261201"), etag=None, last_modified=None)
    [(kind, ref)] = kinds(db, first)
    assert kind == "blackout" and release(db, first).state == "pending"
    assert notes(db, first, "blackout_flagged")
    clock.advance(hours=1)
    fetched(db, sub, clock.now(), policy, body=_calendar("20261203"), etag=None, last_modified=None)
    assert kinds(db, first) == [(kind, ref)]  # shortening needs an executive: the flag stands
    assert len(notes(db, first, "blackout_held")) == 1
    assert kinds(db, third) == [(kind, ref)]
    fetched(db, sub, clock.now(), policy, body=_calendar("20261203"), etag=None, last_modified=None)
    assert len(notes(db, first, "blackout_held")) == 1  # said once
    edit_release(db, actor(RM), first, {"start": "2026-12-01 14:01"}, clock, policy)  # nudging it clears nothing
    assert kinds(db, first) == [(kind, ref)]
    edit_release(db, actor(RM), first, {"start": "2026-12-02 14:00"}, clock, policy)  # genuinely clean
    assert kinds(db, first) == []


# --- a cancelled or moved release clears the conflict flags that named it -----------------------------------------

def test_cancelling_a_release_clears_the_conflict_flag_it_caused_and_raises_nothing_new(db, clock, policy):
    one = new_release(db, clock, policy)
    two = new_release(db, clock, policy, start="2026-12-01 14:30", tz="UTC")
    three = new_release(db, clock, policy, start="2026-12-01 15:00", tz="UTC")  # overlaps two, not one
    assert ("conflict", "REL-1") in kinds(db, two) and kinds(db, one) == []
    for user in ("U0RM", "U0QA"):
        cast_vote(db, actor(user), two, "go", clock)
    out = cancel_release(db, dev(), one, "superseded", clock)
    assert out.changed
    assert ("conflict", "REL-1") not in kinds(db, two)
    assert ("conflict", "REL-3") not in kinds(db, two)  # the re-check only clears
    [note] = notes(db, two, "conflict_cleared")
    assert note.payload["other"] == "REL-1"
    assert [e.actor for e in events(db, two, "planning_checked")][-1] == "U0DEV"
    assert three


def test_moving_a_release_clears_the_conflict_flag_it_caused(db, clock, policy):
    one = new_release(db, clock, policy)
    two = new_release(db, clock, policy, start="2026-12-01 14:30", tz="UTC")
    assert kinds(db, two) == [("conflict", "REL-1"), ("conflict", "env:production")]
    for user in ("U0RM", "U0QA"):
        cast_vote(db, actor(user), two, "go", clock)
    edit_release(db, dev(), one, {"start": "2026-12-03 14:00"}, clock, policy)
    assert kinds(db, two) == []
    assert notes(db, two, "conflict_cleared")
    assert release(db, two).state == "approved"


# --- who may manage blackouts (item 11) ---------------------------------------------------------------------------

@pytest.mark.parametrize("call", ["add", "remove", "subscribe"])
def test_a_non_member_is_refused_and_the_refusal_audited(db, clock, policy, call):
    bid = add(db, clock, policy)
    before = counts(db)
    who = actor("U0DEV")
    if call == "add":
        out = add_blackout(db, who, DEC_1, clock, policy)
    elif call == "remove":
        out = remove_blackout(db, who, bid, clock)
    else:
        out = subscribe(db, who, {"url": "https://calendar.test/h.ics", "name": "H"}, clock, policy)
    assert out.refused and not out.changed
    action = {"add": "blackout_add_refused", "remove": "blackout_remove_refused",
              "subscribe": "calendar_subscribe_refused"}[call]
    [ev] = events(db, action=action)
    assert (ev.release_id, ev.actor, ev.after["code"]) == (None, "U0DEV", "wrong_role")
    assert counts(db)[2] == before[2] + 1 and not removed(db, bid)


@pytest.mark.parametrize("call", ["add", "remove", "subscribe"])
def test_a_failed_group_lookup_writes_nothing(db, clock, policy, call):
    bid = add(db, clock, policy)
    before = counts(db)
    who = Actor("U0MAYBE", frozenset(), unresolved=frozenset({"release_manager", "executive"}))
    with pytest.raises(CouldNotCheck):
        if call == "add":
            add_blackout(db, who, DEC_1, clock, policy)
        elif call == "remove":
            remove_blackout(db, who, bid, clock)
        else:
            subscribe(db, who, {"url": "https://calendar.test/h.ics", "name": "H"}, clock, policy)
    assert counts(db) == before and not removed(db, bid)
    with Session(db) as s:
        assert len(list(s.exec(select(AuditEvent)))) == before[2]


def test_a_release_manager_whose_executive_group_could_not_be_checked_writes_nothing(db, clock, policy):
    bid = add(db, clock, policy)
    new_release(db, clock, policy)
    before = counts(db)
    who = Actor(RM, frozenset({"release_manager"}), unresolved=frozenset({"executive"}))
    with pytest.raises(CouldNotCheck):
        remove_blackout(db, who, bid, clock, reason="freeze lifted")
    assert counts(db) == before and not removed(db, bid)
