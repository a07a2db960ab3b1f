"""iCalendar (RFC 5545) in and out.

In: a subscribed calendar's events, recurrences expanded with RECURRENCE-ID
overrides applied and cancelled instances dropped (recurring-ical-events does
the expansion). Out: a feed Google Calendar and Outlook can subscribe to, with
stable UIDs, SEQUENCE, STATUS:CANCELLED and a VTIMEZONE for every TZID.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterable

import recurring_ical_events
from icalendar import Calendar, Event, vRecur

from calendars.recurrence import local_to_utc
from calendars.timeparse import zone

UTC = timezone.utc
PRODID = "-//releasebot//release calendar//EN"


class CalendarError(ValueError):
    pass


@dataclass(frozen=True)
class ImportedEvent:
    uid: str
    summary: str
    start: datetime  # UTC
    end: datetime  # UTC


def parse(text: str) -> Calendar:
    try:
        cal = Calendar.from_ical(text)
    except (ValueError, IndexError, KeyError) as exc:
        raise CalendarError(f"not an iCalendar file: {exc}") from None
    if cal.name != "VCALENDAR":
        raise CalendarError("not an iCalendar file: no VCALENDAR")
    return cal


def _utc(value, tz: str) -> datetime:
    """DATE values (all-day) and floating times are read in `tz`; zoned times keep their zone."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return local_to_utc(value, tz)
        return value.astimezone(UTC)
    if isinstance(value, date):
        return local_to_utc(datetime.combine(value, time()), tz)
    raise CalendarError(f"unsupported date value {value!r}")


def occurrences(text: str, start: datetime, end: datetime, tz: str = "UTC") -> list[ImportedEvent]:
    cal = parse(text)
    try:
        events = recurring_ical_events.of(cal).between(start, end)
    except Exception as exc:  # noqa: BLE001 - a broken RRULE in someone else's feed
        raise CalendarError(f"cannot expand the calendar's recurrences: {exc}") from None
    out = []
    for ev in events:
        if str(ev.get("STATUS", "")).upper() == "CANCELLED":
            continue
        dtstart = ev.get("DTSTART")
        if dtstart is None:
            continue
        s = _utc(dtstart.dt, tz)
        if ev.get("DTEND") is not None:
            e = _utc(ev["DTEND"].dt, tz)
        elif ev.get("DURATION") is not None:
            e = s + ev["DURATION"].dt
        else:  # RFC 5545: a DATE event with neither lasts one day; a DATE-TIME one is an instant
            e = s + (timedelta(days=1) if not isinstance(dtstart.dt, datetime) else timedelta(0))
        if e <= s:
            continue
        out.append(ImportedEvent(str(ev.get("UID", "")), str(ev.get("SUMMARY", "")) or "event", s, e))
    out.sort(key=lambda x: x.start)
    return out


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
