"""calendars.business.add_business_days: working days (Mon–Fri) counted on local dates, local wall-clock time kept."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from calendars.business import add_business_days

UTC = timezone.utc


def local(tz: str, *args) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz))


@pytest.mark.parametrize("start, days, expected", [
    (datetime(2026, 11, 23, 9, 0, tzinfo=UTC), 5, datetime(2026, 11, 30, 9, 0, tzinfo=UTC)),  # Mon -> Mon
    (datetime(2026, 11, 23, 9, 0, tzinfo=UTC), 4, datetime(2026, 11, 27, 9, 0, tzinfo=UTC)),  # Mon -> Fri
    (datetime(2026, 11, 25, 9, 0, tzinfo=UTC), 5, datetime(2026, 12, 2, 9, 0, tzinfo=UTC)),  # Wed -> Wed
    (datetime(2026, 11, 26, 9, 0, tzinfo=UTC), 2, datetime(2026, 11, 30, 9, 0, tzinfo=UTC)),  # Thu -> Mon
    (datetime(2026, 11, 27, 9, 0, tzinfo=UTC), 1, datetime(2026, 11, 30, 9, 0, tzinfo=UTC)),  # Fri -> Mon
    (datetime(2026, 11, 27, 9, 0, tzinfo=UTC), 5, datetime(2026, 12, 4, 9, 0, tzinfo=UTC)),  # Fri -> Fri
    (datetime(2026, 11, 28, 9, 0, tzinfo=UTC), 1, datetime(2026, 11, 30, 9, 0, tzinfo=UTC)),  # Sat -> Mon
    (datetime(2026, 11, 29, 9, 0, tzinfo=UTC), 1, datetime(2026, 11, 30, 9, 0, tzinfo=UTC)),  # Sun -> Mon
    (datetime(2026, 11, 28, 9, 0, tzinfo=UTC), 5, datetime(2026, 12, 4, 9, 0, tzinfo=UTC)),  # Sat -> Fri
    (datetime(2026, 11, 23, 9, 0, tzinfo=UTC), 10, datetime(2026, 12, 7, 9, 0, tzinfo=UTC)),  # two weeks
])
def test_weekends_are_skipped(start, days, expected):
    assert add_business_days(start, days, "UTC") == expected


def test_a_friday_start_lands_on_the_next_friday_not_the_wednesday():
    friday = datetime(2026, 11, 27, 16, 45, tzinfo=UTC)
    assert add_business_days(friday, 5, "UTC") == datetime(2026, 12, 4, 16, 45, tzinfo=UTC)
    assert add_business_days(friday, 5, "UTC") != friday + timedelta(days=5)


def test_the_result_is_aware_utc():
    out = add_business_days(local("Europe/Berlin", 2026, 11, 23, 9, 0), 1, "Europe/Berlin")
    assert out.tzinfo is not None and out.utcoffset() == timedelta(0)
    assert out == datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def test_seconds_are_kept():
    start = datetime(2026, 11, 23, 9, 15, 42, 123000, tzinfo=UTC)
    assert add_business_days(start, 1, "UTC") == datetime(2026, 11, 24, 9, 15, 42, 123000, tzinfo=UTC)


def test_local_time_is_kept_across_the_end_of_summer_time():
    # Europe/London: Friday 2026-10-23 09:00 BST (08:00 UTC); the clocks go back on Sunday 25 October.
    start = datetime(2026, 10, 23, 8, 0, tzinfo=UTC)
    out = add_business_days(start, 5, "Europe/London")
    assert out == datetime(2026, 10, 30, 9, 0, tzinfo=UTC)  # 09:00 GMT
    assert out.astimezone(ZoneInfo("Europe/London")).strftime("%a %H:%M") == "Fri 09:00"
    assert out - start == timedelta(days=7, hours=1)  # not simply a week later


def test_local_time_is_kept_across_the_start_of_summer_time():
    # Europe/London: Friday 2026-03-27 09:00 GMT; the clocks go forward on Sunday 29 March.
    start = datetime(2026, 3, 27, 9, 0, tzinfo=UTC)
    assert add_business_days(start, 5, "Europe/London") == datetime(2026, 4, 3, 8, 0, tzinfo=UTC)  # 09:00 BST


def test_local_time_is_kept_across_a_southern_hemisphere_change():
    # Pacific/Auckland: daylight time ends on Sunday 2026-04-05 (NZDT +13 -> NZST +12).
    start = local("Pacific/Auckland", 2026, 4, 3, 9, 0)  # Friday 09:00 NZDT = Thursday 20:00 UTC
    out = add_business_days(start, 5, "Pacific/Auckland")
    assert out == datetime(2026, 4, 9, 21, 0, tzinfo=UTC)  # Friday 10 April 09:00 NZST
    assert out.astimezone(ZoneInfo("Pacific/Auckland")).strftime("%a %d %H:%M") == "Fri 10 09:00"


def test_days_are_counted_on_local_dates_in_auckland():
    # Friday 20:00 UTC is already Saturday 09:00 in Auckland: the count starts from Saturday there.
    start = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)
    out = add_business_days(start, 5, "Pacific/Auckland")
    assert out == datetime(2026, 12, 3, 20, 0, tzinfo=UTC)  # Friday 2026-12-04 09:00 NZDT
    assert out != add_business_days(start, 5, "UTC")  # counted on UTC dates it would be 2026-12-04 20:00 UTC


def test_monday_morning_in_auckland_is_still_sunday_in_utc():
    start = local("Pacific/Auckland", 2026, 11, 30, 9, 0)  # Monday 09:00 NZDT = Sunday 20:00 UTC
    assert add_business_days(start, 1, "Pacific/Auckland") == datetime(2026, 11, 30, 20, 0, tzinfo=UTC)  # Tue 09:00
    assert add_business_days(start, 5, "Pacific/Auckland") == datetime(2026, 12, 6, 20, 0, tzinfo=UTC)  # Mon 09:00


def test_friday_evening_west_of_utc_is_saturday_in_utc():
    start = local("America/Los_Angeles", 2026, 11, 27, 17, 30)  # Friday 17:30 PST = Saturday 01:30 UTC
    out = add_business_days(start, 1, "America/Los_Angeles")
    assert out.astimezone(ZoneInfo("America/Los_Angeles")) == local("America/Los_Angeles", 2026, 11, 30, 17, 30)
    assert out == datetime(2026, 12, 1, 1, 30, tzinfo=UTC)


def test_the_start_may_be_given_in_any_zone():
    a = add_business_days(datetime(2026, 11, 27, 20, 0, tzinfo=UTC), 5, "Pacific/Auckland")
    b = add_business_days(local("Pacific/Auckland", 2026, 11, 28, 9, 0), 5, "Pacific/Auckland")
    c = add_business_days(local("America/New_York", 2026, 11, 27, 15, 0), 5, "Pacific/Auckland")
    assert a == b == c
