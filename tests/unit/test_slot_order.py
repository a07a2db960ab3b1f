"""Free slots in the order people want them: the nearest at or after the requested start, inside the
deployment windows, or where policy sets none, inside working hours in the release's own zone."""
from __future__ import annotations

import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlmodel import Session

from commands import planning
from commands.policy import Policy, PolicyError
from conftest import ROLES, START

UTC = timezone.utc
HOUR = timedelta(hours=1)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def policy_with(**calendar) -> Policy:
    return Policy.from_mapping({"roles": ROLES, "calendar": calendar}, source="test policy")


def slots(db, policy, **kw) -> list[datetime]:
    args = dict(service="payments", environment="production", release_type="patch", duration=HOUR, now=START)
    with Session(db) as s:
        return planning.next_free_slots(s, policy, **{**args, **kw})


def test_slots_start_at_the_requested_start_not_days_before_it(db):
    # START is Monday 23 November 09:00 UTC; a patch's lead time allows Wednesday, but it was asked for Friday 14:00
    got = slots(db, Policy.default(), not_before=utc(2026, 11, 27, 14), tz="UTC")
    assert got == [utc(2026, 11, 27, 14), utc(2026, 11, 27, 15), utc(2026, 11, 27, 16)]


def test_the_lead_time_still_wins_over_a_requested_start_too_soon(db):
    got = slots(db, Policy.default(), not_before=START + HOUR, tz="UTC", count=1)
    assert got == [utc(2026, 11, 25, 9)]  # two days after START, not an hour


def test_a_requested_start_off_the_quarter_hour_gives_the_next_quarter_hour(db):
    got = slots(db, Policy.default(), not_before=utc(2026, 11, 27, 10, 5), tz="UTC", count=1)
    assert got == [utc(2026, 11, 27, 10, 15)]


def test_without_windows_slots_keep_to_working_hours_in_the_release_zone(db):
    # Wednesday 25 November 06:00 UTC is 01:00 in New York: the first slot is 09:00 there (14:00 UTC),
    # the last one that ends by 17:00 is 16:00 (21:00 UTC), then Thursday 09:00
    got = slots(db, Policy.default(), not_before=utc(2026, 11, 25, 6), tz="America/New_York", count=9)
    assert got[0] == utc(2026, 11, 25, 14)
    assert got[7] == utc(2026, 11, 25, 21)
    assert got[8] == utc(2026, 11, 26, 14)
    hours = Policy.default().calendar.slot_windows("production", "America/New_York")
    assert all(hours.contains(s, s + HOUR) for s in got)


def test_working_hours_skip_the_weekend(db):
    got = slots(db, Policy.default(), not_before=utc(2026, 11, 27, 16, 30), tz="Europe/London", count=1)
    assert got == [utc(2026, 11, 30, 9)]  # Friday 16:30 + 1h is past 17:00: Monday 09:00 (GMT)


def test_explicit_deployment_windows_win_over_working_hours(db):
    policy = policy_with(windows={"production": {"days": "Sat-Sun", "start": "06:00", "end": "08:00", "tz": "UTC"}})
    assert slots(db, policy, not_before=utc(2026, 11, 25, 9), tz="America/New_York") == [
        utc(2026, 11, 28, 6), utc(2026, 11, 28, 7), utc(2026, 11, 29, 6)]
    # staging has no windows: working hours in the release's zone
    assert slots(db, policy, environment="staging", not_before=utc(2026, 11, 25, 9), tz="UTC", count=1) == [
        utc(2026, 11, 25, 9)]


def test_working_hours_come_from_policy(db):
    policy = policy_with(default_hours={"days": "Sun-Thu", "start": "07:00", "end": "15:00"})
    got = slots(db, policy, not_before=utc(2026, 11, 27, 9), tz="Asia/Jerusalem", count=2)
    assert got == [utc(2026, 11, 29, 5), utc(2026, 11, 29, 6)]  # Friday and Saturday are off; 07:00 is 05:00 UTC


def test_an_emergency_alone_is_not_held_to_working_hours(db):
    # Its window opens when requested (QMS 4.6), and check() does not hold it to windows either
    got = slots(db, Policy.default(), release_type="emergency", now=utc(2026, 11, 28, 2), tz="UTC", count=1)
    assert got == [utc(2026, 11, 28, 3)]  # Saturday 03:00: now + the 1h lead time of the policy


def test_the_shipped_policy_spells_out_the_default_hours():
    data = tomllib.loads((Path(__file__).resolve().parents[2] / "policy.toml").read_text())
    assert data["calendar"]["default_hours"] == {"days": "Mon-Fri", "start": "09:00", "end": "17:00"}
    shipped = Policy.from_mapping(data, source="policy.toml").calendar.default_hours
    assert shipped == Policy.default().calendar.default_hours
    assert (sorted(shipped.days), f"{shipped.start:%H:%M}", f"{shipped.end:%H:%M}") == ([0, 1, 2, 3, 4], "09:00",
                                                                                        "17:00")


@pytest.mark.parametrize("hours,problem", [
    ({"days": "Mon-Fri", "start": "17:00", "end": "09:00"}, "end must be after start"),
    ({"days": "Mon-Fri", "start": "9am", "end": "17:00"}, "not a time of day"),
    ({"days": "Mon-Fri", "start": "09:00", "end": "17:00", "tz": "UTC"}, "in each release's own zone"),
    ({"days": "Someday", "start": "09:00", "end": "17:00"}, "not a day"),
])
def test_bad_default_hours_are_refused_with_the_right_form(hours, problem):
    with pytest.raises(PolicyError) as info:
        policy_with(default_hours=hours)
    assert info.value.key == "calendar.default_hours" and problem in info.value.problem
