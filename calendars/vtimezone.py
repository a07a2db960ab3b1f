"""VTIMEZONE components written as rules, for the span a feed uses.

icalendar's own VTIMEZONE for a zoneinfo zone is a 1970 STANDARD followed by long RDATE
lists; vobject (and, reportedly, Outlook) read such a zone an hour off (London in December
as +01:00). So each zone is written the way the zone's rules are: a STANDARD and a DAYLIGHT
with a yearly RRULE (BYMONTH and BYDAY, e.g. the last Sunday of March). A zone whose rules
changed inside the span gets one component per period, each closed with UNTIL (UTC, as RFC
5545 §3.6.5 asks); a transition that fits no weekday rule is a component of its own; a zone
without DST in the span is one STANDARD, from its last change (or 1970). The transitions come
from zoneinfo, so the VTIMEZONE says what the events' own zone says.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from icalendar import Timezone, TimezoneDaylight, TimezoneStandard

UTC = timezone.utc
# Transitions are looked for this far either side of the span, so the state at its start is
# stated by an onset before it and a rule that goes on is seen again after the span's end (a
# yearly weekday rule's dates drift by up to a week, so a little more than a year).
MARGIN = timedelta(days=400)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


@dataclass(frozen=True)
class Transition:
    at: datetime  # UTC instant
    before: timedelta  # UTC offset until then
    after: timedelta
    dst: bool  # daylight time after it
    name: str  # abbreviation after it

    @property
    def onset(self) -> datetime:
        """The local wall-clock time it happens at, in the offset before it (RFC 5545 DTSTART)."""
        return (self.at + self.before).replace(tzinfo=None)

    @property
    def kind(self) -> tuple:
        return self.dst, self.before, self.after, self.name, self.onset.time()


def transitions(tzid: str, start: datetime, end: datetime) -> list[Transition]:
    """Every change of UTC offset in [start, end) (UTC instants)."""
    return [t for year in range(start.year, end.year + 1) for t in _year(tzid, year) if start <= t.at < end]


# Offsets are compared two days apart, and a change found is bisected to the second; the search goes on
# from that change, so a second one within the step is found too, unless it undoes the first. The closest
# such pair since 1970 is a week apart (Brazil's daylight time of 8-15 October 2000; Gaza's of 2040), and
# every zone of the zone database gives the changes the day-by-day scan gave, 1970-2040
# (tests/unit/test_vtimezone.py keeps that scan and compares the likeliest to differ). Day by day, the 413
# zone-years of a feed in seven zones took 0.43 s of CPU, most of a cold export's extra time; now 0.12 s.
STEP = timedelta(days=2)


@lru_cache(maxsize=4096)
def _year(tzid: str, year: int) -> tuple[Transition, ...]:
    """A year's changes of UTC offset, to the second (zone data does not change while we run)."""
    tz = ZoneInfo(tzid)

    def offset(t: datetime) -> timedelta:
        return t.astimezone(tz).utcoffset()

    out, at, end = [], datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    here = offset(at)
    while at < end:
        nxt = min(at + STEP, end)
        there = offset(nxt)
        if there == here:
            at = nxt
            continue
        lo, hi = at, nxt  # offset(lo) != offset(hi): bisect to the second it changes
        while hi - lo > timedelta(seconds=1):
            mid = (lo + (hi - lo) / 2).replace(microsecond=0)
            if offset(mid) == here:
                lo = mid
            else:
                hi = mid
        local = hi.astimezone(tz)
        after = local.utcoffset()
        out.append(Transition(hi, here, after, bool(local.dst()), local.tzname() or ""))
        at, here = hi, after
    return tuple(out)


def _byday(onset: datetime) -> set[str]:
    """The BYDAY values that name this date in its month: the n-th weekday, and "last" when it is."""
    wd = _DAYS[onset.weekday()]
    out = {f"{(onset.day - 1) // 7 + 1}{wd}"}
    if onset.day + 7 > calendar.monthrange(onset.year, onset.month)[1]:
        out.add(f"-1{wd}")
    return out


@dataclass
class _Period:
    first: Transition
    last: Transition
    byday: set[str]
    count: int = 1


def _periods(found: list[Transition]) -> list[_Period]:
    """Transitions grouped into yearly rules: same kind, one a year, the same weekday of the same month."""
    open_: dict[tuple, _Period] = {}
    out: list[_Period] = []
    for t in found:
        p = open_.get(t.kind)
        if (p is not None and t.onset.year == p.last.onset.year + 1 and t.onset.month == p.last.onset.month
                and p.byday & _byday(t.onset)):
            p.byday &= _byday(t.onset)
            p.last, p.count = t, p.count + 1
            continue
        p = _Period(t, t, _byday(t.onset))
        open_[t.kind] = p
        out.append(p)
    return out


def vtimezone(tzid: str, start: datetime, end: datetime) -> Timezone:
    """A VTIMEZONE for `tzid` correct for every instant in [start, end) (UTC).

    Rules are followed back to the year they began (from 1970 on), not cut at the span's start:
    vobject takes a zone whose offsets in 2000-2020 equal UTC's for UTC, so London's rules must be
    seen to have applied then. Rules that had ended a year before the span are left out."""
    found = transitions(tzid, min(EPOCH, start - MARGIN), end + MARGIN)
    periods = _periods(found)
    kept = [p for p in periods if p.last.at >= start - MARGIN]
    comp = Timezone()
    comp.add("tzid", tzid)
    if not any(p.first.at <= start for p in kept):
        # Nothing in the rules kept begins before the span: the offset it starts with is stated once, from
        # the last change before it (or 1970, for a zone that has not changed since).
        before = [t for t in found if t.at <= start]
        if before:
            t = before[-1]
            comp.add_component(_component(t.dst, t.name, t.before, t.after, t.onset))
        else:
            local = EPOCH.astimezone(ZoneInfo(tzid))
            offset = local.utcoffset()
            comp.add_component(_component(bool(local.dst()), local.tzname() or "", offset, offset,
                                          (EPOCH + offset).replace(tzinfo=None)))
    for p in kept:
        rule = None
        if p.count > 1 or p.last.at > end:
            rule = {"FREQ": "YEARLY", "BYMONTH": p.first.onset.month,
                    "BYDAY": sorted(p.byday, key=lambda d: d.startswith("-"))[-1]}
            if p.last.at <= end:  # the rule ended (the next year's transition differs or is gone)
                rule["UNTIL"] = p.last.at
        comp.add_component(_component(p.first.dst, p.first.name, p.first.before, p.first.after, p.first.onset,
                                      rule))
    return comp


def _component(dst: bool, name: str, before: timedelta, after: timedelta, onset: datetime, rule=None):
    c = TimezoneDaylight() if dst else TimezoneStandard()
    c.add("dtstart", onset)
    if rule:
        c.add("rrule", rule)
    c.add("tzoffsetfrom", before)
    c.add("tzoffsetto", after)
    if name:
        c.add("tzname", name)
    return c
