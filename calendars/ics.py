"""iCalendar (RFC 5545) in and out.

In: a subscribed calendar's events, recurrences expanded with RECURRENCE-ID
overrides applied and cancelled instances dropped (recurring-ical-events does
the expansion, lazily, in time order). Someone else's calendar gets the caps our
own rules have: at most MAX_OCCURRENCES up to the horizon, and a rule dense
enough to cost more than that is dropped; either way the calendar is "cut short".
Errors never quote the calendar: they are shown in the release channel. Out: a feed Google Calendar and Outlook can subscribe to, with
stable UIDs, SEQUENCE, STATUS:CANCELLED and a VTIMEZONE for every TZID.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from math import prod
from typing import Iterable

import recurring_ical_events
from icalendar import Calendar, Event, vRecur

from calendars.recurrence import MAX_OCCURRENCES, local_to_utc
from calendars.timeparse import zone

UTC = timezone.utc
PRODID = "-//releasebot//release calendar//EN"
NOT_A_CALENDAR = "not an iCalendar file"
CANNOT_EXPAND = "cannot expand its recurrences"
# dateutil walks a rule from its DTSTART, so a dense rule that began long ago costs
# its whole past before the first occurrence we want; beyond this many steps it is dropped.
MAX_RULE_STEPS = 200_000
_PERIOD = {"SECONDLY": timedelta(seconds=1), "MINUTELY": timedelta(minutes=1), "HOURLY": timedelta(hours=1),
           "DAILY": timedelta(days=1), "WEEKLY": timedelta(weeks=1), "MONTHLY": timedelta(days=28),
           "YEARLY": timedelta(days=365)}
_BY = ("BYSECOND", "BYMINUTE", "BYHOUR", "BYDAY", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO", "BYMONTH", "BYSETPOS")


class CalendarError(ValueError):
    pass


@dataclass(frozen=True)
class ImportedEvent:
    uid: str
    summary: str
    start: datetime  # UTC
    end: datetime  # UTC


@dataclass(frozen=True)
class Expansion:
    events: list[ImportedEvent]
    cut_short: bool  # the cap was reached or a too-dense rule was dropped: some events are missing


def parse(text: str) -> Calendar:
    try:
        cal = Calendar.from_ical(text)
    except Exception:  # noqa: BLE001 - whatever it is, it is not a calendar; the text is not quoted
        raise CalendarError(NOT_A_CALENDAR) from None
    if getattr(cal, "name", None) != "VCALENDAR":
        raise CalendarError(NOT_A_CALENDAR)
    return cal


def _utc(value, tz: str) -> datetime:
    """DATE values (all-day) and floating times are read in `tz`; zoned times keep their zone."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return local_to_utc(value, tz)
        return value.astimezone(UTC)
    if isinstance(value, date):
        return local_to_utc(datetime.combine(value, time()), tz)
    raise CalendarError(NOT_A_CALENDAR)


def _too_dense(ev, start: datetime, tz: str) -> bool:
    """More than MAX_OCCURRENCES a day, or more than MAX_RULE_STEPS before `start`."""
    rules = ev.get("RRULE")
    if rules is None or ev.get("DTSTART") is None:
        return False
    for rule in rules if isinstance(rules, list) else [rules]:
        try:
            period = _PERIOD[str(rule.get("FREQ", ["DAILY"])[0]).upper()] * int(rule.get("INTERVAL", [1])[0])
            per_period = prod(len(rule[k]) for k in _BY if k in rule)
            count = int(rule["COUNT"][0]) if "COUNT" in rule else None
            began = _utc(ev["DTSTART"].dt, tz)
        except (KeyError, ValueError, TypeError, IndexError):
            continue  # the expansion names a broken rule
        if period <= timedelta(0):
            continue
        if per_period * (timedelta(days=1) / period) > MAX_OCCURRENCES:
            return True
        steps = max(start - began, timedelta(0)) / period * per_period
        if steps > MAX_RULE_STEPS and (count is None or count > MAX_RULE_STEPS):
            return True
    return False


def occurrences(text: str, start: datetime, end: datetime, tz: str = "UTC") -> list[ImportedEvent]:
    return expand_calendar(text, start, end, tz).events


def expand_calendar(text: str, start: datetime, end: datetime, tz: str = "UTC",
                    cap: int = MAX_OCCURRENCES) -> Expansion:
    """Events overlapping [start, end), in start order, at most `cap` of them."""
    cal = parse(text)
    dense = [ev for ev in cal.walk("VEVENT") if _too_dense(ev, start, tz)]
    for ev in dense:
        _remove(cal, ev)
    out, cut_short = [], bool(dense)
    try:
        # after() yields in start order, computing a little at a time; the loop stops at the horizon or
        # the cap, so a rule that would make millions of occurrences makes no more than we keep.
        for ev in recurring_ical_events.of(cal).after(start):
            if len(out) >= cap:
                cut_short = True
                break
            got = _imported(ev, tz)
            if got is None:
                continue
            if got.start >= end:
                break
            if got.end > start:
                out.append(got)
    except CalendarError:
        raise
    except Exception:  # noqa: BLE001 - a broken RRULE in someone else's feed; not quoted
        raise CalendarError(CANNOT_EXPAND) from None
    out.sort(key=lambda x: x.start)
    return Expansion(out, cut_short)


def _remove(cal: Calendar, component) -> None:
    for parent in cal.walk():
        if component in parent.subcomponents:
            parent.subcomponents.remove(component)
            return


def _imported(ev, tz: str) -> ImportedEvent | None:
    if str(ev.get("STATUS", "")).upper() == "CANCELLED":
        return None
    dtstart = ev.get("DTSTART")
    if dtstart is None:
        return None
    s = _utc(dtstart.dt, tz)
    if ev.get("DTEND") is not None:
        e = _utc(ev["DTEND"].dt, tz)
    elif ev.get("DURATION") is not None:
        e = s + ev["DURATION"].dt
    else:  # RFC 5545: a DATE event with neither lasts one day; a DATE-TIME one is an instant
        e = s + (timedelta(days=1) if not isinstance(dtstart.dt, datetime) else timedelta(0))
    if e <= s:
        return None
    return ImportedEvent(str(ev.get("UID", "")), str(ev.get("SUMMARY", "")) or "event", s, e)


# --- out ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FeedEvent:
    uid: str
    summary: str
    description: str
    start_local: datetime  # naive wall-clock time in tz
    end_local: datetime
    tz: str
    sequence: int
    stamp: datetime  # UTC, when this version was made
    cancelled: bool = False
    rrule: str | None = None
    categories: tuple[str, ...] = ()


def feed(events: Iterable[FeedEvent], name: str = "Releases") -> bytes:
    """An RFC 5545 calendar without METHOD: a published feed, not a scheduling message."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", name)
    for fe in events:
        z = zone(fe.tz)
        ev = Event()
        ev.add("uid", fe.uid)
        ev.add("dtstamp", fe.stamp.astimezone(UTC))
        ev.add("dtstart", fe.start_local.replace(tzinfo=z))
        ev.add("dtend", fe.end_local.replace(tzinfo=z))
        ev.add("summary", fe.summary)
        if fe.description:
            ev.add("description", fe.description)
        ev.add("sequence", fe.sequence)
        ev.add("status", "CANCELLED" if fe.cancelled else "CONFIRMED")
        if fe.categories:
            ev.add("categories", list(fe.categories))
        if fe.rrule:
            ev.add("rrule", vRecur.from_ical(fe.rrule.removeprefix("RRULE:")))
        cal.add_component(ev)
    cal.add_missing_timezones()
    return cal.to_ical()
