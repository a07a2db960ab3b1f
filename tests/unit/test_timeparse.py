"""Durations, zones and local wall-clock times across DST (2026: London 29 Mar / 25 Oct, New York 8 Mar / 1 Nov)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from calendars.timeparse import TimeInputError, Window, format_duration, parse_duration, parse_local, zone

UTC = timezone.utc


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- durations ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, minutes", [
    ("45m", 45), ("2h", 120), ("1h30m", 90), ("3d", 3 * 1440), ("1w", 7 * 1440),
    ("90", 90), ("5", 5),                       # a bare number is minutes
    ("1H30M", 90), (" 1h 30m ", 90), ("2d4h", 2 * 1440 + 240), ("0h30m", 30), ("01h", 60),
    ("1 hour", 60), ("90min", 90), ("2 hours 30 minutes", 150), ("1hr", 60), ("30 mins", 30), ("1 day", 1440),
    ("1 hour and 30 min", 90), ("2 weeks", 2 * 7 * 1440),
])
def test_durations(text, minutes):
    assert parse_duration(text) == timedelta(minutes=minutes)


@pytest.mark.parametrize("text", ["0", "0m", "0h0m", "00"])
def test_zero_is_refused(text):
    with pytest.raises(TimeInputError, match="positive"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["", "  ", "soon", "h", "m30", "1.5h", "-30m", "-5", "1h30", "30 mins ago",
                                  "1s", "1y", "PT1H", "1h-30m", "+5"])
def test_garbage_is_refused(text):
    with pytest.raises(TimeInputError):
        parse_duration(text)


@pytest.mark.parametrize("text", ["²", "³h", "99999999999999d", "9999999999999999999", "999999999999w"])
def test_odd_input_is_a_time_input_error_not_a_crash(text):
    # Anything a person can type must come back as TimeInputError, which callers turn into a field error.
    with pytest.raises(TimeInputError):
        parse_duration(text)


@pytest.mark.parametrize("minutes, text", [(45, "45m"), (120, "2h"), (90, "1h30m"), (3 * 1440, "3d"),
                                           (1440 + 61, "1d1h1m"), (0, "0m")])
def test_format_duration(minutes, text):
    assert format_duration(timedelta(minutes=minutes)) == text
    if minutes:
        assert parse_duration(text) == timedelta(minutes=minutes)


# --- zones -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Europe/London", "America/New_York", "UTC", " Asia/Tokyo "])
def test_known_zones(name):
    assert zone(name).key == name.strip()


@pytest.mark.parametrize("name", ["", "Mars/Olympus", "../../etc/passwd", "/etc/localtime", "utc",
                                  "Europe/London\x00", "London"])
def test_unknown_zones(name):
    with pytest.raises(TimeInputError, match="IANA"):
        zone(name)


@pytest.mark.parametrize("name", ["Europe", "America", "a" * 300])
def test_zone_typos_that_name_a_folder_or_are_too_long_are_refused_cleanly(name):
    # "Europe" is a directory in the zone database; reading it must not escape as IsADirectoryError.
    with pytest.raises(TimeInputError):
        zone(name)


# --- local times -------------------------------------------------------------------------------------------------

def test_winter_london_is_utc_and_summer_is_bst():
    assert parse_local("2026-12-01 14:00", "Europe/London") == utc(2026, 12, 1, 14, 0)
    assert parse_local("2026-07-01 14:00", "Europe/London") == utc(2026, 7, 1, 13, 0)


def test_result_is_aware_utc():
    got = parse_local("2026-07-01 14:00", "America/New_York")
    assert got.tzinfo is UTC
    assert got == utc(2026, 7, 1, 18, 0)


def test_t_separator_is_accepted():
    assert parse_local("2026-12-01T14:00", "UTC") == utc(2026, 12, 1, 14, 0)


@pytest.mark.parametrize("text", ["2026-12-01", "14:00", "01/12/2026 14:00", "2026-12-01 14:00:00",
                                  "2026-02-30 10:00", "2026-12-01 24:00", "tomorrow 2pm", ""])
def test_bad_date_times(text):
    with pytest.raises(TimeInputError, match="YYYY-MM-DD HH:MM"):
        parse_local(text, "Europe/London")


def test_bad_zone_in_parse_local():
    with pytest.raises(TimeInputError, match="IANA"):
        parse_local("2026-12-01 14:00", "Europe/Lodnon")


# London springs forward at 01:00 GMT on 29 March 2026: 01:00-01:59 does not exist.
@pytest.mark.parametrize("text", ["2026-03-29 01:00", "2026-03-29 01:30", "2026-03-29 01:59"])
def test_london_spring_gap_is_refused(text):
    with pytest.raises(TimeInputError, match="does not exist in Europe/London"):
        parse_local(text, "Europe/London")


def test_london_either_side_of_the_spring_gap():
    assert parse_local("2026-03-29 00:59", "Europe/London") == utc(2026, 3, 29, 0, 59)
    assert parse_local("2026-03-29 02:00", "Europe/London") == utc(2026, 3, 29, 1, 0)
    assert parse_local("2026-03-28 01:30", "Europe/London") == utc(2026, 3, 28, 1, 30)


def test_london_autumn_repeat_takes_the_first_occurrence():
    # 01:30 happens twice on 25 October 2026: first in BST (00:30 UTC), then in GMT (01:30 UTC).
    assert parse_local("2026-10-25 01:30", "Europe/London") == utc(2026, 10, 25, 0, 30)
    assert parse_local("2026-10-25 01:00", "Europe/London") == utc(2026, 10, 25, 0, 0)
    assert parse_local("2026-10-25 00:59", "Europe/London") == utc(2026, 10, 24, 23, 59)
    assert parse_local("2026-10-25 02:00", "Europe/London") == utc(2026, 10, 25, 2, 0)


# New York springs forward at 02:00 EST on 8 March 2026: 02:00-02:59 does not exist.
@pytest.mark.parametrize("text", ["2026-03-08 02:00", "2026-03-08 02:30"])
def test_new_york_spring_gap_is_refused(text):
    with pytest.raises(TimeInputError, match="does not exist in America/New_York"):
        parse_local(text, "America/New_York")


def test_new_york_either_side_of_the_spring_gap():
    assert parse_local("2026-03-08 01:59", "America/New_York") == utc(2026, 3, 8, 6, 59)
    assert parse_local("2026-03-08 03:00", "America/New_York") == utc(2026, 3, 8, 7, 0)
    # London has not changed yet on 8 March
    assert parse_local("2026-03-08 02:30", "Europe/London") == utc(2026, 3, 8, 2, 30)


def test_new_york_autumn_repeat_takes_the_first_occurrence():
    # 01:30 happens twice on 1 November 2026: first in EDT (05:30 UTC), then EST (06:30 UTC).
    assert parse_local("2026-11-01 01:30", "America/New_York") == utc(2026, 11, 1, 5, 30)
    assert parse_local("2026-11-01 02:00", "America/New_York") == utc(2026, 11, 1, 7, 0)
    assert parse_local("2026-11-01 00:30", "America/New_York") == utc(2026, 11, 1, 4, 30)


def test_same_wall_clock_means_different_utc_across_the_change():
    before = parse_local("2026-10-24 14:00", "Europe/London")
    after = parse_local("2026-10-26 14:00", "Europe/London")
    assert after - before == timedelta(days=2, hours=1)


@pytest.mark.parametrize("text, tz", [("9999-12-31 23:30", "America/New_York"),
                                      ("0001-01-01 00:10", "Asia/Tokyo")])
def test_times_at_the_edge_of_the_calendar_are_refused_cleanly(text, tz):
    with pytest.raises(TimeInputError):
        parse_local(text, tz)


# --- windows -----------------------------------------------------------------------------------------------------

def test_window_overlap_is_half_open():
    a = Window(utc(2026, 12, 1, 14), utc(2026, 12, 1, 15), "Europe/London")
    b = Window(utc(2026, 12, 1, 15), utc(2026, 12, 1, 16), "UTC")
    c = Window(utc(2026, 12, 1, 14, 30), utc(2026, 12, 1, 14, 45), "UTC")
    assert not a.overlaps(b) and not b.overlaps(a)
    assert a.overlaps(c) and c.overlaps(a)


def test_window_local_start_keeps_the_planning_zone():
    w = Window(utc(2026, 7, 1, 13), utc(2026, 7, 1, 14), "Europe/London")
    local = w.local_start()
    assert (local.hour, local.minute) == (14, 0)
    assert local.utcoffset() == timedelta(hours=1)
