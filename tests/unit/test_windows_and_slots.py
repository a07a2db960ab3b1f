"""calendars.windows: allowed deployment windows (local time, across DST) and the free-slot search."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest

from calendars.timeparse import TimeInputError
from calendars.windows import DeploymentWindows, free_slots, parse_clock, parse_days

UTC = timezone.utc
HOUR = timedelta(hours=1)
# Mon–Thu 09:00–16:00 London
LONDON = DeploymentWindows(frozenset({0, 1, 2, 3}), time(9), time(16), "Europe/London")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- parse_days / parse_clock -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,days", [
    ("Mon-Thu", {0, 1, 2, 3}),
    ("Mon–Thu", {0, 1, 2, 3}),  # an en dash, as people type it
    ("mon - thu", {0, 1, 2, 3}),
    ("Monday-Thursday", {0, 1, 2, 3}),
    ("Fri-Mon", {4, 5, 6, 0}),  # wraps over the weekend
    ("Sun-Sun", {6}),
    ("Mon,Wed,Fri", {0, 2, 4}),
    ("Mon-Wed, Sat", {0, 1, 2, 5}),
    ("Tue,", {1}),
    ("Mon-Fri", {0, 1, 2, 3, 4}),
])
def test_parse_days(text, days):
    assert parse_days(text) == frozenset(days)


@pytest.mark.parametrize("text,message", [
    ("", "no days given"),
    (" , ", "no days given"),
    ("Funday", "'funday' is not a day like Mon"),
    ("Mon-Xyz", "'mon-xyz' is not a range of days like Mon-Thu"),
    ("Mon-", "is not a range of days"),
    ("1-4", "is not a range of days"),
])
def test_parse_days_refuses_bad_input(text, message):
    with pytest.raises(TimeInputError, match=message):
        parse_days(text)


def test_parse_clock():
    assert parse_clock(" 09:00 ") == time(9)
    assert parse_clock("16:30") == time(16, 30)
    for bad in ("9am", "25:00", "", "09:00:00"):
        with pytest.raises(TimeInputError, match="is not a time of day like 09:00"):
            parse_clock(bad)


# --- DeploymentWindows ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("start,end,inside", [
    # winter (GMT): 09:00–16:00 London is 09:00–16:00 UTC
    (utc(2026, 3, 23, 9), utc(2026, 3, 23, 10), True),
    (utc(2026, 3, 23, 8), utc(2026, 3, 23, 9), False),
    (utc(2026, 3, 26, 15), utc(2026, 3, 26, 16), True),  # Thursday, ends exactly at the close
    (utc(2026, 3, 26, 15), utc(2026, 3, 26, 16, 1), False),  # runs past the close
    (utc(2026, 3, 27, 10), utc(2026, 3, 27, 11), False),  # Friday
    # summer (BST), after 29 March: 09:00–16:00 London is 08:00–15:00 UTC
    (utc(2026, 3, 30, 8), utc(2026, 3, 30, 9), True),
    (utc(2026, 3, 30, 7, 59), utc(2026, 3, 30, 9), False),
    (utc(2026, 3, 30, 14), utc(2026, 3, 30, 15), True),
    (utc(2026, 3, 30, 15), utc(2026, 3, 30, 16), False),
    # winter again after 25 October
    (utc(2026, 10, 26, 8), utc(2026, 10, 26, 9), False),
    (utc(2026, 10, 26, 9), utc(2026, 10, 26, 10), True),
    # a Thursday window that runs into Friday is not inside Thursday's window
    (utc(2026, 11, 26, 15), utc(2026, 11, 27, 10), False),
])
def test_contains_follows_local_time_across_dst(start, end, inside):
    assert LONDON.contains(start, end) is inside


def test_contains_in_new_york_across_dst():
    ny = DeploymentWindows(frozenset({0, 1, 2, 3, 4}), time(9), time(17), "America/New_York")
    assert ny.contains(utc(2026, 3, 6, 14), utc(2026, 3, 6, 15))  # 09:00 EST
    assert not ny.contains(utc(2026, 3, 9, 12), utc(2026, 3, 9, 13))  # 08:00 EDT
    assert ny.contains(utc(2026, 3, 9, 13), utc(2026, 3, 9, 14))  # 09:00 EDT
    assert ny.contains(utc(2026, 11, 2, 14), utc(2026, 11, 2, 22))  # 09:00–17:00 EST, the whole window


def test_openings_start_after_the_given_time():
    # Thursday 26 November 16:30 London: today's window is over; next is Monday
    gen = LONDON.openings(utc(2026, 11, 26, 16, 30))
    assert next(gen) == (utc(2026, 11, 30, 9), utc(2026, 11, 30, 16))
    assert next(gen) == (utc(2026, 12, 1, 9), utc(2026, 12, 1, 16))
    # a window still open is the first opening
    assert next(LONDON.openings(utc(2026, 11, 26, 15))) == (utc(2026, 11, 26, 9), utc(2026, 11, 26, 16))


def test_openings_across_spring_forward():
    gen = LONDON.openings(utc(2026, 3, 26, 16, 30))
    assert next(gen) == (utc(2026, 3, 30, 8), utc(2026, 3, 30, 15))


def test_describe():
    assert LONDON.describe() == "Mon,Tue,Wed,Thu 09:00–16:00 Europe/London"


# --- free_slots --------------------------------------------------------------------------------------------------

def assert_well_formed(slots, duration, step=timedelta(minutes=15)):
    for s in slots:
        assert int(s.timestamp()) % int(step.total_seconds()) == 0, f"{s} is not step-aligned"
    for a, b in zip(slots, slots[1:]):
        assert a + duration <= b, f"{a} and {b} overlap"


def test_free_slots_with_nothing_busy_start_at_the_next_quarter_hour():
    slots = free_slots(utc(2026, 12, 1, 10, 7), HOUR, [], None)
    assert slots == [utc(2026, 12, 1, 10, 15), utc(2026, 12, 1, 11, 15), utc(2026, 12, 1, 12, 15)]
    assert_well_formed(slots, HOUR)


def test_free_slots_start_exactly_at_an_aligned_earliest():
    assert free_slots(utc(2026, 12, 1, 10), HOUR, [], None, count=1) == [utc(2026, 12, 1, 10)]


def test_free_slots_never_start_before_earliest():
    # BUG (calendars/windows.py _align): int(t.timestamp()) drops the fraction of a second, so an
    # earliest just past a quarter hour "rounds up" to the quarter hour before it. next_free_slots
    # passes now + lead time, and a real clock has microseconds. (With a busy interval ending a
    # fraction past a quarter hour, the same truncation makes free_slots loop forever.)
    earliest = utc(2026, 12, 1, 10, 0, 0, 500_000)
    slots = free_slots(earliest, HOUR, [], None)
    assert slots[0] >= earliest
    assert slots[0] == utc(2026, 12, 1, 10, 15)


def test_free_slots_skip_busy_intervals():
    busy = [(utc(2026, 12, 1, 10, 15), utc(2026, 12, 1, 11, 40)),
            (utc(2026, 12, 1, 12, 50), utc(2026, 12, 1, 13, 0))]
    slots = free_slots(utc(2026, 12, 1, 10), HOUR, busy, None)
    # 10:00 would run into the first; 11:45 fits; 12:45 would touch the second; it ends at 13:00
    assert slots == [utc(2026, 12, 1, 11, 45), utc(2026, 12, 1, 13), utc(2026, 12, 1, 14)]
    for s in slots:
        assert all(not (s < e and b < s + HOUR) for b, e in busy)
    assert_well_formed(slots, HOUR)


def test_free_slots_skip_an_interval_that_began_before_earliest():
    busy = [(utc(2026, 11, 30), utc(2026, 12, 1, 12, 10))]
    assert free_slots(utc(2026, 12, 1, 10), HOUR, busy, None, count=1) == [utc(2026, 12, 1, 12, 15)]


def test_free_slots_accept_unsorted_and_overlapping_busy_intervals():
    busy = [(utc(2026, 12, 1, 11), utc(2026, 12, 1, 13)), (utc(2026, 12, 1, 10), utc(2026, 12, 1, 11, 30)),
            (utc(2026, 12, 1, 12), utc(2026, 12, 1, 12, 30))]
    assert free_slots(utc(2026, 12, 1, 10), HOUR, busy, None, count=2) == [utc(2026, 12, 1, 13),
                                                                             utc(2026, 12, 1, 14)]


def test_free_slots_touching_busy_intervals_do_not_block():
    busy = [(utc(2026, 12, 1, 9), utc(2026, 12, 1, 10)), (utc(2026, 12, 1, 11), utc(2026, 12, 1, 12))]
    assert free_slots(utc(2026, 12, 1, 10), HOUR, busy, None) == [utc(2026, 12, 1, 10), utc(2026, 12, 1, 12),
                                                                  utc(2026, 12, 1, 13)]


def test_free_slots_respect_deployment_windows():
    # Thursday 26 November 15:30: an hour no longer fits before 16:00, Friday to Sunday are closed
    slots = free_slots(utc(2026, 11, 26, 15, 30), HOUR, [], LONDON)
    assert slots == [utc(2026, 11, 30, 9), utc(2026, 11, 30, 10), utc(2026, 11, 30, 11)]
    assert all(LONDON.contains(s, s + HOUR) for s in slots)


def test_free_slots_in_windows_follow_dst():
    # Thursday 26 March (GMT) after hours, to Monday 30 March (BST): the window opens at 08:00 UTC
    slots = free_slots(utc(2026, 3, 26, 15, 30), 2 * HOUR, [], LONDON)
    assert slots == [utc(2026, 3, 30, 8), utc(2026, 3, 30, 10), utc(2026, 3, 30, 12)]
    assert all(LONDON.contains(s, s + 2 * HOUR) for s in slots)


def test_free_slots_fill_the_end_of_a_window_then_move_to_the_next_day():
    busy = [(utc(2026, 11, 30, 9), utc(2026, 11, 30, 14))]
    slots = free_slots(utc(2026, 11, 30, 8), 90 * timedelta(minutes=1), busy, LONDON)
    # 14:00–15:30 fits Monday; 15:30–17:00 does not; Tuesday opens at 09:00
    assert slots == [utc(2026, 11, 30, 14), utc(2026, 12, 1, 9), utc(2026, 12, 1, 10, 30)]
    assert all(LONDON.contains(s, s + timedelta(minutes=90)) for s in slots)
    assert_well_formed(slots, timedelta(minutes=90))


def test_free_slots_skip_busy_time_inside_a_window():
    busy = [(utc(2026, 11, 30, 8, 30), utc(2026, 11, 30, 9, 10))]
    slots = free_slots(utc(2026, 11, 30, 8), HOUR, busy, LONDON)
    assert slots == [utc(2026, 11, 30, 9, 15), utc(2026, 11, 30, 10, 15), utc(2026, 11, 30, 11, 15)]


def test_free_slots_none_when_the_duration_never_fits_a_window():
    assert free_slots(utc(2026, 11, 30, 8), 8 * HOUR, [], LONDON) == []


def test_free_slots_step_alignment():
    step = timedelta(hours=1)
    slots = free_slots(utc(2026, 12, 1, 10, 7), timedelta(minutes=20), [], None, step=step)
    assert slots == [utc(2026, 12, 1, 11), utc(2026, 12, 1, 12), utc(2026, 12, 1, 13)]
    assert_well_formed(slots, timedelta(minutes=20), step)
    # a blocker ending off the grid pushes to the next grid point, not to its end
    busy = [(utc(2026, 12, 1, 11), utc(2026, 12, 1, 11, 5))]
    assert free_slots(utc(2026, 12, 1, 10, 7), timedelta(minutes=20), busy, None, step=step,
                      count=1) == [utc(2026, 12, 1, 12)]


def test_free_slots_count():
    assert len(free_slots(utc(2026, 12, 1, 10), HOUR, [], None, count=5)) == 5
    assert free_slots(utc(2026, 12, 1, 10), HOUR, [], None, count=0) == []


def test_free_slots_stop_at_the_horizon():
    busy = [(utc(2026, 12, 1, 10), utc(2026, 12, 1, 12, 30))]
    # a three-hour horizon from 10:00: only a slot starting before 13:00 counts
    assert free_slots(utc(2026, 12, 1, 10), HOUR, busy, None, horizon=3 * HOUR) == [utc(2026, 12, 1, 12, 30)]
    # everything busy up to the horizon: no slot at all
    assert free_slots(utc(2026, 12, 1, 10), HOUR, [(utc(2026, 12, 1), utc(2026, 12, 2))], None,
                      horizon=3 * HOUR) == []


def test_free_slots_horizon_with_windows():
    # Friday 27 November: the next window is Monday, three days away, past a two-day horizon
    assert free_slots(utc(2026, 11, 27, 10), HOUR, [], LONDON, horizon=timedelta(days=2)) == []
    assert free_slots(utc(2026, 11, 27, 10), HOUR, [], LONDON, horizon=timedelta(days=3),
                      count=3) == [utc(2026, 11, 30, 9)]


def test_free_slots_jump_long_busy_runs_quickly():
    # a thousand back-to-back busy quarter-hours: the search jumps to the end of each one
    first = utc(2026, 12, 1, 10)
    busy = [(first + i * timedelta(minutes=15), first + (i + 1) * timedelta(minutes=15)) for i in range(1000)]
    assert free_slots(first, HOUR, busy, None, count=1) == [first + 1000 * timedelta(minutes=15)]
