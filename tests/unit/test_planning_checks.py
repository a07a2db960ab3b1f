"""Planning checks (lead time, blackouts, conflicts) against the real database, the next free slots,
and what a flag means for approval: overrides by the right role, and rescheduling."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, select

from commands import planning
from commands.blackout import add_blackout, remove_blackout
from commands.errors import CouldNotCheck, InputError
from commands.outcome import Actor
from commands.policy import Policy
from commands.classification import Answers
from commands.release import accept_misclassification, cancel_release, edit_release, override_flags
from commands.vote import cast_vote
from conftest import ROLES, START, actor
from storage.models import ReleaseFlag
from unit_support import actions, counts, dev, events, new_release, release, request
from bot.times import iso_times

UTC = timezone.utc
HOUR = timedelta(hours=1)
SOON = dict(start="2026-11-25 14:00", tz="UTC")  # two days and five hours after START: too soon for a minor
LEAD_DETAIL = "starts 2d5h after it was planned; a minor release needs at least 7d (QMS 3.7)"


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def with_calendar(**calendar) -> Policy:
    return Policy.from_mapping({"roles": ROLES, "calendar": calendar}, source="test policy")


def blackout(db, clock, policy, **raw) -> int:
    raw = {"name": "Peak trading", "start": "2026-11-30 00:00", "end": "2026-12-02 00:00", "tz": "Europe/London",
           **raw}
    out = add_blackout(db, actor("U0RM"), raw, clock, policy)
    assert out.changed
    return out.data["blackout"]


def open_flags(db, rid) -> list[ReleaseFlag]:
    with Session(db, expire_on_commit=False) as s:
        return planning.open_flags(s, rid)


def all_flags(db, rid) -> list[ReleaseFlag]:
    with Session(db, expire_on_commit=False) as s:
        return list(s.exec(select(ReleaseFlag).where(ReleaseFlag.release_id == rid).order_by(ReleaseFlag.id)))


def kinds(db, rid) -> list[tuple[str, str | None]]:
    return [(f.kind, f.ref) for f in open_flags(db, rid)]


def check(db, policy, **kw) -> list[planning.Flag]:
    args = dict(service="payments", environment="production", release_type="minor", start=utc(2026, 12, 1, 14),
                end=utc(2026, 12, 1, 15), requested_at=START)
    with Session(db) as s:
        return planning.check(s, policy, **{**args, **kw})


def slots(db, policy, now=START, **kw) -> list[datetime]:
    args = dict(service="payments", environment="production", release_type="patch", duration=HOUR)
    with Session(db) as s:
        return planning.next_free_slots(s, policy, now=now, **{**args, **kw})


def go(db, clock, user, rid):
    assert cast_vote(db, actor(user), rid, "go", clock).changed


# --- the checks, as recorded at request time ------------------------------------------------------------------------

def test_a_clean_window_raises_no_flag(db, clock, policy):
    out = request(db, clock, policy)
    assert "flagged" not in out.message
    assert all_flags(db, out.release.id) == []
    assert "planning_checked" not in actions(db, out.release.id)


def test_lead_time_flag_is_recorded_and_named(db, clock, policy):
    out = request(db, clock, policy, **SOON)
    rid = out.release.id
    [flag] = open_flags(db, rid)
    assert (flag.kind, flag.detail, flag.ref, flag.raised_at) == ("lead_time", LEAD_DETAIL, None, START)
    assert flag.cleared_at is None and flag.overridden_at is None
    assert "Planning checks flagged it" in out.message and LEAD_DETAIL in out.message
    assert release(db, rid).state == "pending"  # a flag does not reject the request
    [ev] = events(db, rid, "planning_checked")
    assert ev.reason == LEAD_DETAIL
    assert ev.after == {"flags": [{"kind": "lead_time", "detail": LEAD_DETAIL, "ref": None}]}


@pytest.mark.parametrize("start,flagged", [
    ("2026-11-25 09:00", None),  # exactly two days: enough for a patch
    ("2026-11-25 08:45", "starts 1d23h45m after it was planned; a patch release needs at least 2d (QMS 3.7)"),
])
def test_lead_time_boundary_for_a_patch(db, clock, policy, start, flagged):
    rid = new_release(db, clock, policy, type="patch", start=start, tz="UTC")
    assert [f.detail for f in open_flags(db, rid)] == ([flagged] if flagged else [])


def test_lead_time_follows_the_type(db, clock, policy):
    assert check(db, policy, release_type="major")[0].detail == (
        "starts 8d5h after it was planned; a major release needs at least 14d (QMS 3.7)")
    assert check(db, policy, release_type="minor") == []
    assert [f.kind for f in check(db, policy, release_type="minor", requested_at=utc(2026, 11, 25))] == ["lead_time"]


def test_blackout_flag_names_the_blackout(db, clock, policy):
    bid = blackout(db, clock, policy)
    out = request(db, clock, policy)
    [flag] = open_flags(db, out.release.id)
    assert (flag.kind, flag.ref) == ("blackout", f"blackout:{bid}")
    assert iso_times(flag.detail) == "falls in blackout 'Peak trading' (2026-11-30T00:00:00Z–2026-12-02T00:00:00Z)"
    assert "Peak trading" in out.message


def test_a_recurring_blackout_flags_the_occurrence_the_window_falls_in(db, clock, policy):
    blackout(db, clock, policy, name="Weekend", start="2026-11-27 16:00", end="2026-11-30 08:00",
             repeat="FREQ=WEEKLY;BYDAY=FR")
    [flag] = check(db, policy, start=utc(2026, 12, 5, 10), end=utc(2026, 12, 5, 11))  # a Saturday
    assert iso_times(flag.detail) == "falls in blackout 'Weekend' (2026-12-04T16:00:00Z–2026-12-07T08:00:00Z)"
    assert check(db, policy, start=utc(2026, 12, 7, 8), end=utc(2026, 12, 7, 9)) == []  # Monday, as it ends
    assert check(db, policy, start=utc(2026, 12, 4, 15), end=utc(2026, 12, 4, 16)) == []  # Friday, as it begins
    # a week-long release touching two occurrences is flagged once per blackout
    assert [f.kind for f in check(db, policy, start=utc(2026, 12, 3), end=utc(2026, 12, 10))] == ["blackout"]


@pytest.mark.parametrize("services,environments,service,environment,flagged", [
    ("", "", "payments", "production", True),  # empty = every service and environment
    ("payments", "", "payments", "staging", True),
    ("search", "", "payments", "production", False),
    ("payments,search", "", "search", "production", True),
    ("", "staging", "payments", "production", False),
    ("", "staging,production", "payments", "production", True),
    ("payments", "staging", "payments", "production", False),
    ("payments", "staging", "search", "staging", False),
    ("payments", "staging", "payments", "staging", True),
])
def test_a_blackout_applies_to_its_services_and_environments(db, clock, policy, services, environments, service,
                                                             environment, flagged):
    blackout(db, clock, policy, services=services, environments=environments)
    got = check(db, policy, service=service, environment=environment)
    assert [f.kind for f in got] == (["blackout"] if flagged else [])


def test_a_removed_blackout_no_longer_flags(db, clock, policy):
    bid = blackout(db, clock, policy)
    assert [f.kind for f in check(db, policy)] == ["blackout"]
    remove_blackout(db, actor("U0RM"), bid, clock)
    assert check(db, policy) == []


def test_a_release_overlapping_another_of_the_same_service_names_it(db, clock, policy):
    new_release(db, clock, policy)  # REL-1 payments production 14:00–15:00 UTC
    rid = new_release(db, clock, policy, env="staging", start="2026-12-01 14:30", version="2.3.2")
    [flag] = open_flags(db, rid)
    assert (flag.kind, flag.ref) == ("conflict", "REL-1")
    assert iso_times(flag.detail) == ("overlaps REL-1 (payments 2.3.1, pending, 2026-12-01T14:00:00Z–"
                                      "2026-12-01T15:00:00Z)")


def test_touching_windows_do_not_conflict(db, clock, policy):
    new_release(db, clock, policy)
    assert open_flags(db, new_release(db, clock, policy, start="2026-12-01 15:00")) == []
    assert open_flags(db, new_release(db, clock, policy, start="2026-12-01 13:00")) == []


def test_production_holds_one_release_at_a_time_by_default(db, clock, policy):
    new_release(db, clock, policy)  # REL-1 payments
    rid = new_release(db, clock, policy, service="search", start="2026-12-01 14:30")
    [flag] = open_flags(db, rid)
    assert (flag.kind, flag.ref) == ("conflict", "env:production")
    assert flag.detail == "production already has as many releases in that window as policy allows (1): REL-1"
    # the same service in the same environment fails both conflict checks
    rid = new_release(db, clock, policy, start="2026-12-01 14:45")
    assert kinds(db, rid) == [("conflict", "REL-1"), ("conflict", "env:production")]
    assert open_flags(db, rid)[1].detail.endswith("allows (1): REL-1, REL-2")


def test_environments_without_a_limit_take_any_number(db, clock, policy):
    for service in ("a", "b", "c"):
        assert open_flags(db, new_release(db, clock, policy, service=service, env="staging")) == []


def test_a_custom_limit_counts_releases_running_at_once(db, clock):
    policy = with_calendar(max_concurrent={"staging": 2})
    assert dict(policy.calendar.max_concurrent) == {"production": 1, "staging": 2}
    a = new_release(db, clock, policy, service="a", env="staging")  # 14:00–15:00
    b = new_release(db, clock, policy, service="b", env="staging", start="2026-12-01 14:30")  # 14:30–15:30
    assert open_flags(db, a) == [] and open_flags(db, b) == []
    c = new_release(db, clock, policy, service="c", env="staging", start="2026-12-01 14:45")
    [flag] = open_flags(db, c)
    assert (flag.kind, flag.ref) == ("conflict", "env:staging")
    assert flag.detail == "staging already has as many releases in that window as policy allows (2): REL-1, REL-2"


def test_a_custom_limit_is_about_the_peak_not_the_total(db, clock):
    policy = with_calendar(max_concurrent={"staging": 2})
    new_release(db, clock, policy, service="a", env="staging", start="2026-12-01 14:00")  # 14:00–15:00
    new_release(db, clock, policy, service="b", env="staging", start="2026-12-01 15:00")  # 15:00–16:00
    # overlaps both, but only one of them at any moment
    c = new_release(db, clock, policy, service="c", env="staging", start="2026-12-01 14:30")
    assert open_flags(db, c) == []


def test_cancelled_releases_do_not_conflict(db, clock, policy):
    first = new_release(db, clock, policy)
    cancel_release(db, dev(), first, "postponed", clock)
    assert open_flags(db, new_release(db, clock, policy)) == []
    assert open_flags(db, new_release(db, clock, policy, service="search", start="2026-12-09 14:00")) == []


def test_a_release_does_not_conflict_with_itself(db, clock, policy):
    rid = new_release(db, clock, policy)
    assert [f.ref for f in check(db, policy)] == ["REL-1", "env:production"]
    assert check(db, policy, exclude=rid) == []
    # moving it by half an hour overlaps its old window, which is itself
    assert edit_release(db, dev(), rid, {"start": "2026-12-01 14:30"}, clock, policy).changed
    assert open_flags(db, rid) == []


# --- next free slots ------------------------------------------------------------------------------------------------

def test_next_free_slots_start_after_the_lead_time(db, clock, policy):
    # a patch needs two days: from Wednesday 25 November 09:00 on
    assert slots(db, policy) == [utc(2026, 11, 25, 9), utc(2026, 11, 25, 10), utc(2026, 11, 25, 11)]
    assert slots(db, policy, release_type="minor", count=1) == [utc(2026, 11, 30, 9)]


def test_next_free_slots_skip_blackouts_and_conflicts(db, clock, policy):
    blackout(db, clock, policy, start="2026-11-25 00:00", end="2026-11-25 12:00", services="payments")
    assert slots(db, policy) == [utc(2026, 11, 25, 12), utc(2026, 11, 25, 13), utc(2026, 11, 25, 14)]
    assert slots(db, policy, service="search")[0] == utc(2026, 11, 25, 9)  # the blackout is not search's
    new_release(db, clock, policy, type="patch", start="2026-11-25 12:00", tz="UTC")  # payments 12:00–13:00
    new_release(db, clock, policy, type="patch", service="search", start="2026-11-25 13:00", tz="UTC",
                duration="90m")  # production is full 13:00–14:30
    # 16:30-17:30 would run past the default working hours (Mon-Fri 09:00-17:00 in the release's zone)
    assert slots(db, policy) == [utc(2026, 11, 25, 14, 30), utc(2026, 11, 25, 15, 30), utc(2026, 11, 26, 9)]
    # staging has no limit: only payments' own release and the blackout are in the way
    assert slots(db, policy, environment="staging") == [utc(2026, 11, 25, 13), utc(2026, 11, 25, 14),
                                                        utc(2026, 11, 25, 15)]


def test_next_free_slots_pass_every_check(db, clock, policy):
    blackout(db, clock, policy, start="2026-11-25 00:00", end="2026-11-25 12:00")
    new_release(db, clock, policy, type="patch", service="search", start="2026-11-25 12:30", tz="UTC")
    for start in slots(db, policy, duration=timedelta(minutes=45)):
        assert check(db, policy, release_type="patch", start=start, end=start + timedelta(minutes=45)) == []


def test_next_free_slots_respect_deployment_windows(db, clock):
    policy = with_calendar(windows={"production": {"days": "Mon-Thu", "start": "09:00", "end": "16:00",
                                                   "tz": "Europe/London"}})
    # Monday 30 November is a blackout in production; Tuesday is busy until 14:00
    blackout(db, clock, policy, start="2026-11-30 00:00", end="2026-12-01 00:00", environments="production")
    new_release(db, clock, policy, service="search", start="2026-12-01 09:00", duration="5h")
    got = slots(db, policy, release_type="minor")
    assert got == [utc(2026, 12, 1, 14), utc(2026, 12, 1, 15), utc(2026, 12, 2, 9)]
    assert all(policy.calendar.windows["production"].contains(s, s + HOUR) for s in got)
    # staging has no windows and no blackout: the first minutes after the lead time
    assert slots(db, policy, environment="staging", release_type="minor") == [
        utc(2026, 11, 30, 9), utc(2026, 11, 30, 10), utc(2026, 11, 30, 11)]


def test_next_free_slots_in_summer_windows_are_in_local_time(db, clock):
    policy = with_calendar(windows={"production": {"days": "Mon-Thu", "start": "09:00", "end": "16:00",
                                                   "tz": "Europe/London"}})
    clock.set(utc(2027, 6, 1, 9))  # a Tuesday in BST
    assert slots(db, policy, now=clock.now(), duration=2 * HOUR) == [
        utc(2027, 6, 3, 9), utc(2027, 6, 3, 11), utc(2027, 6, 3, 13)]  # Thursday 10:00, 12:00, 14:00 BST


def test_next_free_slots_for_a_reschedule_ignore_the_release_itself(db, clock, policy):
    rid = new_release(db, clock, policy, type="patch", start="2026-11-25 09:00", tz="UTC")
    assert slots(db, policy, count=1) == [utc(2026, 11, 25, 10)]
    assert slots(db, policy, count=1, exclude=rid) == [utc(2026, 11, 25, 9)]


# --- overrides ----------------------------------------------------------------------------------------------------

def flagged_three_ways(db, clock, policy) -> int:
    """A minor release too soon, in a blackout and overlapping REL-1: lead_time, blackout and conflict flags."""
    blackout(db, clock, policy, start="2026-11-25 00:00", end="2026-11-26 00:00")
    new_release(db, clock, policy, **SOON)
    rid = new_release(db, clock, policy, start="2026-11-25 14:30", tz="UTC")
    assert sorted({f.kind for f in open_flags(db, rid)}) == ["blackout", "conflict", "lead_time"]
    return rid


@pytest.mark.parametrize("kind,user", [("lead_time", "U0RM"), ("conflict", "U0RM"), ("blackout", "U0EXEC")])
def test_the_right_role_overrides_a_flag(db, clock, policy, kind, user):
    rid = flagged_three_ways(db, clock, policy)
    revision = release(db, rid).revision
    clock.advance(hours=1)
    out = override_flags(db, actor(user), rid, kind, "  agreed with the business  ", clock, policy)
    assert out.changed and not out.refused
    assert out.message == f"The {kind} flag on REL-2 is overridden; your reason is recorded."
    flags = [f for f in open_flags(db, rid) if f.kind == kind]
    assert flags and all((f.overridden_by, f.override_reason, f.overridden_at, f.cleared_at)
                         == (user, "agreed with the business", clock.now(), None) for f in flags)
    others = [f for f in open_flags(db, rid) if f.kind != kind]
    assert others and all(f.overridden_at is None for f in others)  # only that kind
    [ev] = events(db, rid, "flag_overridden")
    assert (ev.actor, ev.reason) == (user, "agreed with the business")
    assert ev.after == {"kind": kind, "role": policy.calendar.OVERRIDE_ROLE[kind], "flags": [f.detail for f in flags]}
    assert release(db, rid).revision == revision + 1


@pytest.mark.parametrize("kind,user,needed", [
    ("blackout", "U0RM", "executive"),
    ("blackout", "U0CAB1", "executive"),
    ("lead_time", "U0EXEC", "release_manager"),
    ("conflict", "U0EXEC", "release_manager"),
    ("conflict", "U0QA", "release_manager"),
])
def test_the_wrong_role_is_refused_and_audited(db, clock, policy, kind, user, needed):
    rid = flagged_three_ways(db, clock, policy)
    before = counts(db)
    out = override_flags(db, actor(user), rid, kind, "please", clock, policy)
    assert out.refused and not out.changed
    assert out.message.startswith(f"Overriding a {kind} flag needs the {needed} role")
    assert ("VP-level" in out.message) == (kind == "blackout")
    [ev] = events(db, rid, "override_refused")
    assert (ev.actor, ev.after, ev.reason) == (user, {"code": "wrong_role", "kind": kind}, out.message)
    assert all(f.overridden_at is None for f in open_flags(db, rid))
    assert counts(db)[2] == before[2] + 1  # the refusal is the only thing written


@pytest.mark.parametrize("kind,needed", [("lead_time", "release_manager"), ("blackout", "executive")])
def test_an_override_slack_could_not_check_asks_to_try_again_and_writes_nothing(db, clock, policy, kind, needed):
    """The override role may come through a user group Slack could not list just now: we do not know
    that the person lacks it, so it is "try again", not an audited refusal."""
    rid = flagged_three_ways(db, clock, policy)
    before = counts(db)
    with pytest.raises(CouldNotCheck) as info:
        override_flags(db, Actor("U0X", frozenset({"qa_lead"}), frozenset({needed})), rid, kind, "please", clock,
                       policy)
    assert needed in info.value.message and "try again" in info.value.message
    assert counts(db) == before
    assert events(db, rid, "override_refused") == []


@pytest.mark.parametrize("kind,user", [("lead_time", "U0RM"), ("blackout", "U0EXEC")])
def test_the_requester_cannot_override_their_own_release(db, clock, policy, kind, user):
    blackout(db, clock, policy, start="2026-11-25 00:00", end="2026-11-26 00:00")
    rid = new_release(db, clock, policy, requester=actor(user), **SOON)
    out = override_flags(db, actor(user), rid, kind, "trust me", clock, policy)
    assert out.refused
    assert out.message == "You requested this release, so you cannot override its checks."
    [ev] = events(db, rid, "override_refused")
    assert ev.after == {"code": "requester", "kind": kind}
    assert all(f.overridden_at is None for f in open_flags(db, rid))


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_an_override_needs_a_written_reason(db, clock, policy, reason):
    rid = new_release(db, clock, policy, **SOON)
    before = counts(db)
    with pytest.raises(InputError) as exc:
        override_flags(db, actor("U0RM"), rid, "lead_time", reason, clock, policy)
    assert exc.value.field == "reason"
    assert counts(db) == before
    assert open_flags(db, rid)[0].overridden_at is None


def test_an_unknown_kind_is_refused(db, clock, policy):
    rid = new_release(db, clock, policy, **SOON)
    with pytest.raises(InputError) as exc:
        override_flags(db, actor("U0RM"), rid, "weather", "sunny", clock, policy)
    assert exc.value.field == "kind"


def test_overriding_a_flag_that_is_not_there_is_refused(db, clock, policy):
    rid = new_release(db, clock, policy, **SOON)
    out = override_flags(db, actor("U0EXEC"), rid, "blackout", "why not", clock, policy)
    assert out.refused and out.message == "REL-1 has no open blackout flag to override."
    assert override_flags(db, actor("U0RM"), rid, "lead_time", "ok", clock, policy).changed
    again = override_flags(db, actor("U0RM"), rid, "lead_time", "again", clock, policy)
    assert again.refused and "no open lead_time flag" in again.message
    assert [e.after["code"] for e in events(db, rid, "override_refused")] == ["no_flag", "no_flag"]


def test_votes_do_not_approve_a_flagged_release_until_the_override(db, clock, policy):
    rid = new_release(db, clock, policy, **SOON)
    go(db, clock, "U0RM", rid)
    go(db, clock, "U0QA", rid)
    assert release(db, rid).state == "pending"
    assert "approved" not in actions(db, rid)
    override_flags(db, actor("U0RM"), rid, "lead_time", "customer commitment", clock, policy)
    assert release(db, rid).state == "approved"
    assert actions(db, rid)[-2:] == ["flag_overridden", "approved"]


def test_only_the_override_of_the_last_blocking_flag_approves(db, clock, policy):
    blackout(db, clock, policy, start="2026-11-25 00:00", end="2026-11-26 00:00")
    rid = new_release(db, clock, policy, **SOON)
    go(db, clock, "U0RM", rid)
    go(db, clock, "U0QA", rid)
    override_flags(db, actor("U0RM"), rid, "lead_time", "customer commitment", clock, policy)
    assert release(db, rid).state == "pending"
    override_flags(db, actor("U0EXEC"), rid, "blackout", "VP approved by email", clock, policy)
    assert release(db, rid).state == "approved"


def test_an_override_before_the_votes_lets_the_votes_approve(db, clock, policy):
    rid = new_release(db, clock, policy, **SOON)
    override_flags(db, actor("U0RM"), rid, "lead_time", "customer commitment", clock, policy)
    assert release(db, rid).state == "pending"
    go(db, clock, "U0RM", rid)
    go(db, clock, "U0QA", rid)
    assert release(db, rid).state == "approved"


# --- rescheduling -------------------------------------------------------------------------------------------------

def test_rescheduling_into_a_clean_window_clears_flags_and_overrides(db, clock, policy):
    rid = new_release(db, clock, policy, **SOON)
    override_flags(db, actor("U0RM"), rid, "lead_time", "customer commitment", clock, policy)
    clock.advance(hours=1)
    out = edit_release(db, dev(), rid, {"start": "2026-12-09 14:00"}, clock, policy)
    assert out.changed
    assert open_flags(db, rid) == []
    [old] = all_flags(db, rid)
    assert old.cleared_at == clock.now() and old.overridden_by == "U0RM"  # kept as history
    ev = events(db, rid, "planning_checked")[-1]
    assert ev.before == {"flags": [{"kind": "lead_time", "detail": LEAD_DETAIL}]}
    assert ev.after == {"flags": []} and ev.reason == "window passes every planning check"
    go(db, clock, "U0RM", rid)
    go(db, clock, "U0QA", rid)
    assert release(db, rid).state == "approved"


def test_an_override_does_not_carry_over_to_a_new_window(db, clock, policy):
    rid = new_release(db, clock, policy, **SOON)
    override_flags(db, actor("U0RM"), rid, "lead_time", "customer commitment", clock, policy)
    edit_release(db, dev(), rid, {"start": "2026-11-26 14:00"}, clock, policy)  # still too soon
    [flag] = open_flags(db, rid)
    assert (flag.kind, flag.overridden_at) == ("lead_time", None)
    assert flag.detail == "starts 3d5h after it was planned; a minor release needs at least 7d (QMS 3.7)"
    go(db, clock, "U0RM", rid)
    go(db, clock, "U0QA", rid)
    assert release(db, rid).state == "pending"


def test_rescheduling_an_approved_release_into_a_blackout_flags_it(db, clock, policy):
    rid = new_release(db, clock, policy)
    go(db, clock, "U0RM", rid)
    go(db, clock, "U0QA", rid)
    assert release(db, rid).state == "approved"
    blackout(db, clock, policy, start="2026-12-09 00:00", end="2026-12-10 00:00")
    edit_release(db, dev(), rid, {"start": "2026-12-09 14:00", "reason": "ops asked"}, clock, policy)
    assert kinds(db, rid) == [("blackout", "blackout:1")]
    assert release(db, rid).state == "pending"
    go(db, clock, "U0RM", rid)
    go(db, clock, "U0QA", rid)
    assert release(db, rid).state == "pending"  # new votes, but the blackout still blocks


def test_lead_time_on_a_reschedule_counts_from_the_reschedule(db, clock, policy):
    rid = new_release(db, clock, policy, start="2026-12-09 14:00", tz="UTC")
    assert open_flags(db, rid) == []
    clock.set(utc(2026, 12, 3, 14))
    edit_release(db, dev(), rid, {"start": "2026-12-09 15:00"}, clock, policy)
    [flag] = open_flags(db, rid)
    assert flag.detail == "starts 6d1h after it was planned; a minor release needs at least 7d (QMS 3.7)"


def test_editing_other_fields_keeps_the_flags(db, clock, policy):
    rid = new_release(db, clock, policy, **SOON)
    [before] = open_flags(db, rid)
    edit_release(db, dev(), rid, {"risk": "low"}, clock, policy)
    assert [f.id for f in open_flags(db, rid)] == [before.id]


# --- accepting a misclassification re-runs the lead-time check for the type that now applies ------------------------

def test_accepting_a_misclassification_rechecks_lead_time_from_the_request(db, clock, policy):
    # requested as a patch, but the answers make it minor: five days is too soon for a minor
    rid = new_release(db, clock, policy, type="patch", answers=Answers(feature=True), start="2026-11-28 14:00",
                      tz="UTC")
    assert [f.detail for f in open_flags(db, rid)] == [
        "starts 5d5h after it was planned; a minor+patch release needs at least 7d (QMS 3.7)"]
    clock.set(utc(2026, 11, 27, 11))
    out = accept_misclassification(db, actor("U0RM"), rid, "really a patch", clock, policy)
    assert out.changed
    assert open_flags(db, rid) == []  # as a patch, planned 5d5h ahead: enough


def test_an_edit_that_leaves_the_window_alone_does_not_move_the_planning_time(db, clock, policy):
    # BUG (commands/release.py _planned_at): it takes the time of the last "edited" audit event of any
    # kind, so fixing a typo in the risk field a day before the window "re-plans" it, and accepting the
    # misclassification then flags a lead-time breach that never happened. Only an edit that moved
    # start_at/end_at (before != after) should count.
    rid = new_release(db, clock, policy, type="patch", answers=Answers(feature=True), start="2026-11-28 14:00",
                      tz="UTC")
    clock.set(utc(2026, 11, 27, 10))
    assert edit_release(db, dev(), rid, {"risk": "low"}, clock, policy).changed  # the window is unchanged
    assert [f.kind for f in open_flags(db, rid)] == ["lead_time"]  # still the minor's flag, from the request
    clock.set(utc(2026, 11, 27, 11))
    accept_misclassification(db, actor("U0RM"), rid, "really a patch", clock, policy)
    assert open_flags(db, rid) == []


def test_after_a_reschedule_lead_time_counts_from_the_reschedule_on_acceptance(db, clock, policy):
    rid = new_release(db, clock, policy, type="patch", answers=Answers(feature=True), start="2026-12-09 14:00",
                      tz="UTC")
    assert open_flags(db, rid) == []
    clock.set(utc(2026, 12, 2, 14))
    edit_release(db, dev(), rid, {"start": "2026-12-03 14:00"}, clock, policy)  # one day ahead: too soon
    assert [f.kind for f in open_flags(db, rid)] == ["lead_time"]
    clock.set(utc(2026, 12, 2, 15))
    accept_misclassification(db, actor("U0RM"), rid, "really a patch", clock, policy)
    assert [f.detail for f in open_flags(db, rid)] == [
        "starts 1d after it was planned; a patch release needs at least 2d (QMS 3.7)"]


def test_accepting_a_misclassification_keeps_an_override_of_the_unchanged_window(db, clock, policy):
    # BUG (commands/release.py accept_misclassification → recheck → planning.record_flags): the window
    # has not moved, yet every open flag is cleared and raised afresh, so the executive's written
    # blackout override silently disappears and the release is blocked again. record_flags' own
    # docstring limits "judged afresh" to a new window.
    blackout(db, clock, policy, start="2026-12-09 00:00", end="2026-12-10 00:00")
    rid = new_release(db, clock, policy, type="patch", answers=Answers(feature=True), start="2026-12-09 14:00",
                      tz="UTC")
    assert kinds(db, rid) == [("blackout", "blackout:1")]
    override_flags(db, actor("U0EXEC"), rid, "blackout", "VP approved: regulatory deadline", clock, policy)
    accept_misclassification(db, actor("U0RM"), rid, "really a patch", clock, policy)
    [flag] = open_flags(db, rid)
    assert flag.kind == "blackout"
    assert (flag.overridden_by, flag.override_reason) == ("U0EXEC", "VP approved: regulatory deadline")
    go(db, clock, "U0EL", rid)
    go(db, clock, "U0QA", rid)
    assert release(db, rid).state == "approved"


def test_a_blackout_flag_names_the_blackouts_own_period_not_a_storage_piece(db, clock, policy):
    # BUG (commands/planning.py check): blackouts longer than MAX_OCCURRENCE (35 days) are stored as
    # consecutive pieces, and the flag quotes the piece it hit: a 1 December–30 January freeze is
    # reported as "2027-01-05 00:00–2027-01-30 00:00".
    blackout(db, clock, policy, name="Year end", start="2026-12-01 00:00", end="2027-01-30 00:00", tz="UTC")
    [flag] = check(db, policy, start=utc(2027, 1, 10, 14), end=utc(2027, 1, 10, 15))
    assert iso_times(flag.detail) == "falls in blackout 'Year end' (2026-12-01T00:00:00Z–2027-01-30T00:00:00Z)"


# --- deployment windows (policy [calendar.windows]) are a check, not only a hint for the slots ----------------------

WINDOWED = dict(windows={"production": {"days": "Mon-Thu", "start": "09:00", "end": "16:00", "tz": "Europe/London"}})
WINDOW_DETAIL = "falls outside the production deployment windows (Mon,Tue,Wed,Thu 09:00–16:00 Europe/London)"


def test_a_request_outside_the_deployment_windows_is_flagged_and_blocks_approval(db, clock):
    policy = with_calendar(**WINDOWED)
    rid = new_release(db, clock, policy, start="2026-12-01 17:00")  # a Tuesday, after 16:00 London
    assert [(f.kind, f.ref, f.detail) for f in open_flags(db, rid)] == [("window", "window:production",
                                                                         WINDOW_DETAIL)]
    go(db, clock, "U0RM", rid)
    go(db, clock, "U0QA", rid)
    assert release(db, rid).state == "pending"
    out = override_flags(db, actor("U0RM"), rid, "window", "customer asked for the evening", clock, policy)
    assert out.changed and release(db, rid).state == "approved"


def test_inside_the_deployment_windows_or_in_another_environment_nothing_is_flagged(db, clock):
    policy = with_calendar(**WINDOWED)
    assert open_flags(db, new_release(db, clock, policy, start="2026-12-01 14:00")) == []
    assert open_flags(db, new_release(db, clock, policy, start="2026-12-05 14:00", env="staging")) == []  # Saturday


def test_a_window_flag_is_overridden_only_by_a_release_manager(db, clock):
    policy = with_calendar(**WINDOWED)
    rid = new_release(db, clock, policy, start="2026-12-05 10:00")  # a Saturday
    out = override_flags(db, actor("U0EXEC"), rid, "window", "please", clock, policy)
    assert out.refused and out.message.startswith("Overriding a window flag needs the release_manager role")
    assert policy.calendar.OVERRIDE_ROLE["window"] == "release_manager"


def test_a_reschedule_outside_the_windows_is_flagged_and_back_inside_clears(db, clock):
    policy = with_calendar(**WINDOWED)
    rid = new_release(db, clock, policy, start="2026-12-01 14:00")
    edit_release(db, dev(), rid, {"start": "2026-12-01 15:30"}, clock, policy)  # runs past 16:00
    assert kinds(db, rid) == [("window", "window:production")]
    edit_release(db, dev(), rid, {"start": "2026-12-02 10:00"}, clock, policy)
    assert open_flags(db, rid) == []


def test_an_override_whose_role_slack_could_not_check_writes_nothing(db, clock, policy):
    from commands.errors import CouldNotCheck
    from commands.outcome import Actor
    blackout(db, clock, policy, start="2026-11-25 00:00", end="2026-11-26 00:00")
    rid = new_release(db, clock, policy, **SOON)
    before = counts(db)
    with pytest.raises(CouldNotCheck):
        override_flags(db, Actor("U0MAYBE", frozenset(), frozenset({"executive"})), rid, "blackout", "VP said so",
                       clock, policy)
    assert counts(db) == before
