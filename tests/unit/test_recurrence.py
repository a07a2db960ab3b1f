"""calendars.recurrence: one-off and RFC 5545 recurring windows expanded into UTC occurrences.

Local wall-clock start times hold across DST changes; every occurrence is as long (in UTC)
as the first one (RFC 5545 §3.8.5.3 exact duration)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from calendars.recurrence import Occurrence, expand, local_to_utc, parse_rrule
from calendars.timeparse import TimeInputError

UTC = timezone.utc
FRIDAY = 4


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- DST: a weekly Friday 16:00 → Monday 08:00 blackout across both 2026 changes ----------------------------------

ZONES = [
    # zone, first Friday (winter), spring change, autumn change, UTC hour of 16:00 local in winter
    pytest.param("Europe/London", datetime(2026, 3, 13, 16), utc(2026, 3, 29, 1), utc(2026, 10, 25, 1), 16,
                 id="london"),
    pytest.param("America/New_York", datetime(2026, 2, 27, 16), utc(2026, 3, 8, 7), utc(2026, 11, 1, 6), 21,
                 id="new_york"),
]


@pytest.mark.parametrize("tz,first,spring,autumn,winter_hour", ZONES)
def test_weekly_blackout_keeps_its_local_start_across_both_dst_changes(tz, first, spring, autumn, winter_hour):
    z = ZoneInfo(tz)
    occs = expand(first, first + timedelta(days=2, hours=16), tz, "FREQ=WEEKLY;BYDAY=FR",
                  utc(2026, 1, 1), utc(2026, 12, 1))
    first_length = occs[0].end - occs[0].start
    assert occs[0].start == first.replace(tzinfo=z).astimezone(UTC)
    # every Friday from the first one to the end of November, none missing, none doubled
    assert len(occs) == (datetime(2026, 11, 27) - first.replace(hour=0)).days // 7 + 1
    for occ in occs:
        local = occ.start.astimezone(z)
        assert (local.weekday(), local.hour, local.minute) == (FRIDAY, 16, 0)
        assert occ.end - occ.start == first_length  # counted in UTC, the same every week
        summer = spring <= occ.start < autumn
        assert occ.start.hour == (winter_hour - 1 if summer else winter_hour)
    # both halves of the year occur, so the UTC start really did move by an hour and back
    hours = [o.start.hour for o in occs]
    assert hours[0] == winter_hour and hours[-1] == winter_hour and winter_hour - 1 in hours


@pytest.mark.parametrize("tz,first,spring,autumn,winter_hour", ZONES)
def test_an_occurrence_spanning_a_change_is_as_long_as_the_first(tz, first, spring, autumn, winter_hour):
    z = ZoneInfo(tz)
    length = timedelta(days=2, hours=16)
    occs = expand(first, first + length, tz, "FREQ=WEEKLY;BYDAY=FR", utc(2026, 1, 1), utc(2026, 12, 1))
    across_spring = next(o for o in occs if o.start < spring < o.end)
    across_autumn = next(o for o in occs if o.start < autumn < o.end)
    for occ in (across_spring, across_autumn):
        assert occ.end - occ.start == length
    # exact duration: the Monday end is 09:00 local after spring forward and 07:00 after fall back
    assert across_spring.end.astimezone(z).hour == 9
    assert across_autumn.end.astimezone(z).hour == 7


def test_a_first_occurrence_spanning_a_change_sets_the_length_for_the_rest():
    # Friday 6 March 16:00 EST to Monday 9 March 08:00 EDT is 2d15h in UTC; so is every later one.
    occs = expand(datetime(2026, 3, 6, 16), datetime(2026, 3, 9, 8), "America/New_York", "FREQ=WEEKLY;COUNT=3",
                  utc(2026, 1, 1), utc(2026, 12, 1))
    assert [(o.start, o.end) for o in occs] == [
        (utc(2026, 3, 6, 21), utc(2026, 3, 9, 12)),
        (utc(2026, 3, 13, 20), utc(2026, 3, 16, 11)),
        (utc(2026, 3, 20, 20), utc(2026, 3, 23, 11)),
    ]


# --- one-off windows ------------------------------------------------------------------------------------------------

def test_a_one_off_is_one_occurrence_in_utc():
    occs = expand(datetime(2026, 7, 1, 9), datetime(2026, 7, 1, 17), "Europe/London", None,
                  utc(2026, 6, 1), utc(2026, 8, 1))
    assert occs == [Occurrence(utc(2026, 7, 1, 8), utc(2026, 7, 1, 16))]


def test_a_one_off_outside_the_window_is_not_returned():
    args = (datetime(2026, 7, 1, 9), datetime(2026, 7, 1, 17), "Europe/London", None)
    assert expand(*args, utc(2026, 7, 2), utc(2026, 8, 1)) == []
    assert expand(*args, utc(2026, 6, 1), utc(2026, 7, 1, 8)) == []  # window ends as it starts
    assert expand(*args, utc(2026, 7, 1, 16), utc(2026, 8, 1)) == []  # window starts as it ends
    # one that began before the window and runs into it is returned whole
    assert expand(*args, utc(2026, 7, 1, 15), utc(2026, 8, 1)) == [
        Occurrence(utc(2026, 7, 1, 8), utc(2026, 7, 1, 16))]


def test_an_empty_rrule_means_a_one_off():
    occs = expand(datetime(2026, 7, 1, 9), datetime(2026, 7, 1, 10), "UTC", "", utc(2026, 1, 1), utc(2027, 1, 1))
    assert occs == [Occurrence(utc(2026, 7, 1, 9), utc(2026, 7, 1, 10))]


# --- filtering a recurrence by the window ----------------------------------------------------------------------------

def test_a_weekly_occurrence_that_started_before_the_window_is_included():
    # Fridays 16:00 to Mondays 08:00 London (winter: UTC = local)
    start, end = datetime(2026, 11, 6, 16), datetime(2026, 11, 9, 8)
    occs = expand(start, end, "Europe/London", "FREQ=WEEKLY;BYDAY=FR", utc(2026, 11, 28, 12), utc(2026, 12, 5, 12))
    assert occs == [Occurrence(utc(2026, 11, 27, 16), utc(2026, 11, 30, 8)),
                    Occurrence(utc(2026, 12, 4, 16), utc(2026, 12, 7, 8))]


def test_window_bounds_are_half_open_for_recurrences():
    start, end = datetime(2026, 11, 6, 16), datetime(2026, 11, 9, 8)
    # the window opens as one occurrence ends and closes as the next begins
    assert expand(start, end, "Europe/London", "FREQ=WEEKLY", utc(2026, 11, 30, 8), utc(2026, 12, 4, 16)) == []
    occs = expand(start, end, "Europe/London", "FREQ=WEEKLY", utc(2026, 11, 30, 7, 59), utc(2026, 12, 4, 16, 1))
    assert [o.start for o in occs] == [utc(2026, 11, 27, 16), utc(2026, 12, 4, 16)]


def test_no_occurrence_before_the_rule_starts():
    occs = expand(datetime(2026, 11, 27, 16), datetime(2026, 11, 27, 18), "UTC", "FREQ=DAILY",
                  utc(2026, 11, 1), utc(2026, 11, 29))
    assert [o.start for o in occs] == [utc(2026, 11, 27, 16), utc(2026, 11, 28, 16)]


def test_count_limits_the_occurrences():
    occs = expand(datetime(2026, 11, 27, 16), datetime(2026, 11, 27, 18), "UTC", "FREQ=WEEKLY;COUNT=3",
                  utc(2026, 1, 1), utc(2028, 1, 1))
    assert [o.start for o in occs] == [utc(2026, 11, 27, 16), utc(2026, 12, 4, 16), utc(2026, 12, 11, 16)]


def test_the_rrule_prefix_is_accepted():
    occs = expand(datetime(2026, 11, 27, 16), datetime(2026, 11, 27, 18), "UTC", "RRULE:FREQ=DAILY;COUNT=2",
                  utc(2026, 1, 1), utc(2028, 1, 1))
    assert len(occs) == 2


@pytest.mark.parametrize("freq", ["MINUTELY", "HOURLY", "SECONDLY"])
def test_sub_daily_rules_are_refused(freq):
    # A freeze that repeats every minute is a typo, and would cost thousands of occurrences.
    with pytest.raises(TimeInputError, match="at most daily"):
        expand(datetime(2026, 1, 1), datetime(2026, 1, 1, 0, 1), "UTC", f"FREQ={freq}",
               utc(2026, 1, 1), utc(2027, 1, 1))


def test_until_in_local_time_is_inclusive():
    occs = expand(datetime(2026, 11, 27, 16), datetime(2026, 11, 27, 18), "Europe/London",
                  "FREQ=WEEKLY;UNTIL=20261211T160000", utc(2026, 1, 1), utc(2028, 1, 1))
    assert [o.start for o in occs] == [utc(2026, 11, 27, 16), utc(2026, 12, 4, 16), utc(2026, 12, 11, 16)]


def test_until_in_utc_as_rfc_5545_requires_with_a_zoned_start_is_accepted():
    # RFC 5545 §3.3.10: with a DTSTART in a time zone, UNTIL MUST be given in UTC ("...Z").
    # BUG: dateutil refuses a UTC UNTIL next to the naive local dtstart, and parse_rrule turns
    # that into "is not an RFC 5545 RRULE".
    occs = expand(datetime(2026, 11, 27, 16), datetime(2026, 11, 27, 18), "Europe/London",
                  "FREQ=WEEKLY;BYDAY=FR;UNTIL=20261211T160000Z", utc(2026, 1, 1), utc(2028, 1, 1))
    assert [o.start for o in occs] == [utc(2026, 11, 27, 16), utc(2026, 12, 4, 16), utc(2026, 12, 11, 16)]


@pytest.mark.parametrize("rule", ["FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "FREQ=YEARLY;BYMONTH=4,6;BYMONTHDAY=31"])
def test_a_rule_that_never_occurs_is_refused_at_once(rule):
    # 30 February never comes; dateutil would search to the year 9999 (seconds of CPU) to find that out.
    with pytest.raises(TimeInputError, match="never occurs"):
        expand(datetime(2026, 11, 27, 16), datetime(2026, 11, 27, 17), "Europe/London", rule,
               utc(2026, 11, 1), utc(2027, 12, 1))


# --- errors -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", ["FREQ=SOMETIMES", "BYDAY=FR", "hello", "FREQ=WEEKLY;BYDAY=XX",
                                  "FREQ=WEEKLY;INTERVAL=x", "FREQ=WEEKLY;FOO=1"])
def test_an_invalid_rrule_is_a_time_input_error(rule):
    with pytest.raises(TimeInputError, match="is not an RFC 5545 RRULE"):
        expand(datetime(2026, 11, 27, 16), datetime(2026, 11, 27, 18), "UTC", rule, utc(2026, 1, 1),
               utc(2027, 1, 1))
    with pytest.raises(TimeInputError, match="FREQ=WEEKLY;BYDAY=FR"):  # the message shows the form
        parse_rrule(rule, datetime(2026, 11, 27, 16))


@pytest.mark.parametrize("rule", [None, "FREQ=WEEKLY"])
@pytest.mark.parametrize("end", [datetime(2026, 11, 27, 16), datetime(2026, 11, 27, 15)])
def test_an_end_not_after_the_start_is_refused(rule, end):
    with pytest.raises(TimeInputError, match="must end after it starts"):
        expand(datetime(2026, 11, 27, 16), end, "Europe/London", rule, utc(2026, 1, 1), utc(2027, 1, 1))


def test_an_unknown_zone_is_refused():
    with pytest.raises(TimeInputError, match="IANA time zone"):
        expand(datetime(2026, 11, 27, 16), datetime(2026, 11, 27, 18), "Europe/Londn", None, utc(2026, 1, 1),
               utc(2027, 1, 1))


# --- local times the clocks skip or repeat --------------------------------------------------------------------------

@pytest.mark.parametrize("tz,naive,expected", [
    # 01:30 does not exist in London on 29 March 2026; RFC 5545 §3.3.5 reads it with the offset
    # before the gap (GMT), i.e. 01:30Z = 02:30 BST: moved forward by the gap.
    ("Europe/London", datetime(2026, 3, 29, 1, 30), utc(2026, 3, 29, 1, 30)),
    # 02:30 does not exist in New York on 8 March 2026: with EST that is 07:30Z = 03:30 EDT.
    ("America/New_York", datetime(2026, 3, 8, 2, 30), utc(2026, 3, 8, 7, 30)),
])
def test_a_start_in_the_spring_forward_gap_moves_forward(tz, naive, expected):
    # BUG (calendars/recurrence.py local_to_utc): it re-reads a gap time with fold=1, which is the
    # offset *after* the transition, and so moves it back an hour (00:30 GMT / 01:30 EST).
    got = local_to_utc(naive, tz)
    assert got == expected
    assert got.astimezone(ZoneInfo(tz)).replace(tzinfo=None) > naive


def test_a_one_off_starting_in_the_gap_starts_after_it():
    # 01:30–03:00 London on 29 March: starts 02:30 BST (01:30Z), ends 03:00 BST (02:00Z)
    occs = expand(datetime(2026, 3, 29, 1, 30), datetime(2026, 3, 29, 3), "Europe/London", None,
                  utc(2026, 3, 1), utc(2026, 4, 1))
    assert occs == [Occurrence(utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 2))]


def test_a_weekly_occurrence_falling_in_the_gap_moves_forward():
    # Sundays 01:30 for two hours, London. On 29 March 01:30 is skipped: that one starts 02:30 BST.
    occs = expand(datetime(2026, 3, 22, 1, 30), datetime(2026, 3, 22, 3, 30), "Europe/London", "FREQ=WEEKLY",
                  utc(2026, 3, 20), utc(2026, 4, 6))
    assert [(o.start, o.end) for o in occs] == [
        (utc(2026, 3, 22, 1, 30), utc(2026, 3, 22, 3, 30)),
        (utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 3, 30)),
        (utc(2026, 4, 5, 0, 30), utc(2026, 4, 5, 2, 30)),
    ]


@pytest.mark.parametrize("tz,naive,expected", [
    ("Europe/London", datetime(2026, 10, 25, 1, 30), utc(2026, 10, 25, 0, 30)),  # 01:30 BST, not GMT
    ("America/New_York", datetime(2026, 11, 1, 1, 30), utc(2026, 11, 1, 5, 30)),  # 01:30 EDT, not EST
])
def test_a_repeated_autumn_time_takes_its_first_occurrence(tz, naive, expected):
    assert local_to_utc(naive, tz) == expected


def test_ordinary_local_times_convert_exactly():
    assert local_to_utc(datetime(2026, 7, 1, 9), "Europe/London") == utc(2026, 7, 1, 8)
    assert local_to_utc(datetime(2026, 12, 1, 9), "Europe/London") == utc(2026, 12, 1, 9)
    assert local_to_utc(datetime(2026, 7, 1, 9), "America/New_York") == utc(2026, 7, 1, 13)


def test_occurrence_overlap_is_half_open():
    occ = Occurrence(utc(2026, 1, 1, 10), utc(2026, 1, 1, 11))
    assert occ.overlaps(utc(2026, 1, 1, 10, 59), utc(2026, 1, 1, 12))
    assert occ.overlaps(utc(2026, 1, 1, 9), utc(2026, 1, 1, 10, 1))
    assert not occ.overlaps(utc(2026, 1, 1, 11), utc(2026, 1, 1, 12))
    assert not occ.overlaps(utc(2026, 1, 1, 9), utc(2026, 1, 1, 10))


@pytest.mark.parametrize("rule", [
    "FREQ=DAILY;BYHOUR=" + ",".join(map(str, range(24))) + ";BYMINUTE=0,10,20,30,40,50",
    "FREQ=DAILY;BYHOUR=9,17",
    "FREQ=WEEKLY;BYDAY=FR;BYMINUTE=0,30",
    "FREQ=DAILY;BYSECOND=0,1",
    "RRULE:freq=daily;byhour=1,2",
    "FREQ=Hourly",
    "INTERVAL=2;FREQ=MINUTELY",
])
def test_rules_more_often_than_daily_are_refused_whatever_their_form(rule):
    with pytest.raises(TimeInputError, match="at most daily"):
        parse_rrule(rule, datetime(2026, 1, 1))


@pytest.mark.parametrize("rule", ["FREQ=DAILY;BYHOUR=9;BYMINUTE=30", "FREQ=WEEKLY;BYDAY=MO,FR;BYHOUR=16",
                                  "FREQ=DAILY;BYHOUR=9,17;BYSETPOS=1"])
def test_one_time_of_day_is_still_fine(rule):
    parse_rrule(rule, datetime(2026, 1, 1))


def test_the_refusal_says_what_to_do():
    from commands.blackout import parse_blackout
    from commands.errors import FieldErrors
    from commands.policy import Policy
    raw = {"name": "x", "start": "2026-12-01 00:00", "end": "2026-12-01 00:05", "tz": "UTC",
           "repeat": "FREQ=DAILY;BYHOUR=" + ",".join(map(str, range(24))) + ";BYMINUTE=0,10,20,30,40,50"}
    with pytest.raises(FieldErrors) as err:
        parse_blackout(raw, Policy.default(), datetime(2026, 11, 23, tzinfo=timezone.utc))
    assert "at most daily" in err.value.errors["repeat"] and "BYHOUR" in err.value.errors["repeat"]
