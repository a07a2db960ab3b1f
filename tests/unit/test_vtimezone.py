"""A zone's changes of UTC offset, found two days at a time (calendars.vtimezone), are the ones the day-by-day
scan found, kept here as the oracle: for zones with a change undone within a week (Brazil's one-week daylight
time of October 2000, Gaza's of 2040), half-hour and two-hour daylight time, a skipped day, Ramadan breaks and
the zones of the feed's own tests, from 1970 to 2040. (All 599 zones of the zone database matched when the
scan changed; this keeps the ones most likely to break.)"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from calendars import vtimezone

UTC = timezone.utc
ZONES = ["America/Boa_Vista", "America/Noronha", "Asia/Gaza", "America/Argentina/Tucuman", "Africa/Casablanca",
         "Africa/Cairo", "Australia/Lord_Howe", "Antarctica/Troll", "Pacific/Apia", "America/Sao_Paulo",
         "Europe/London", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "Asia/Tokyo"]


def daily_changes(tzid: str, year: int) -> list[tuple]:
    """The scan as it was: the offset compared day by day, a change bisected to the second."""
    tz = ZoneInfo(tzid)

    def offset(t: datetime) -> timedelta:
        return t.astimezone(tz).utcoffset()

    out, at, end = [], datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    while at < end:
        nxt = min(at + timedelta(days=1), end)
        if offset(at) != offset(nxt):
            lo, hi = at, nxt
            while hi - lo > timedelta(seconds=1):
                mid = (lo + (hi - lo) / 2).replace(microsecond=0)
                if offset(mid) == offset(lo):
                    lo = mid
                else:
                    hi = mid
            local = hi.astimezone(tz)
            out.append((hi, offset(lo), offset(hi), bool(local.dst()), local.tzname() or ""))
        at = nxt
    return out


@pytest.mark.parametrize("tzid", ZONES)
def test_changes_are_the_day_by_day_scans(tzid):
    for year in range(1970, 2041):
        found = [(t.at, t.before, t.after, t.dst, t.name) for t in vtimezone._year(tzid, year)]
        assert found == daily_changes(tzid, year), (tzid, year)


def test_a_change_undone_within_a_week_is_seen():
    """Brazil's daylight time of 8-15 October 2000 in Boa Vista: both changes, a week less an hour apart."""
    changes = [(t.at, t.after) for t in vtimezone._year("America/Boa_Vista", 2000)]
    assert changes[1:] == [(datetime(2000, 10, 8, 4, tzinfo=UTC), timedelta(hours=-3)),
                           (datetime(2000, 10, 15, 3, tzinfo=UTC), timedelta(hours=-4))]
