"""iCalendar (RFC 5545) in and out.

In: a subscribed calendar's events, recurrences expanded with RECURRENCE-ID
overrides applied and cancelled instances dropped (recurring-ical-events does
the expansion, a bounded step at a time). Someone else's calendar gets the caps
our own rules have: at most MAX_OCCURRENCES up to the horizon, and a rule dense
enough to cost more than that is dropped; either way the calendar is "cut short".
Errors never quote the calendar: they are shown in the release channel. Out: a feed Google Calendar and Outlook can subscribe to, with
stable UIDs, SEQUENCE, STATUS:CANCELLED, refresh hints and a rule-based VTIMEZONE for every TZID.
"""
from __future__ import annotations

import re

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from math import prod
from typing import Iterable

import recurring_ical_events
from icalendar import Calendar, Event, vDuration, vRecur

from calendars.recurrence import MAX_OCCURRENCES, local_to_utc
from calendars.timeparse import zone
from calendars.vtimezone import vtimezone

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


def _rules(ev) -> list:
    rules = ev.get("RRULE")
    return [] if rules is None else rules if isinstance(rules, list) else [rules]


def _per_day(rule) -> float:
    """How many occurrences a day a rule makes at most (roughly: every BY list multiplies)."""
    period = _PERIOD[str(rule.get("FREQ", ["DAILY"])[0]).upper()] * int(rule.get("INTERVAL", [1])[0])
    if period <= timedelta(0):
        raise ValueError("INTERVAL")
    return prod(len(rule[k]) for k in _BY if k in rule) * (timedelta(days=1) / period)


def _too_dense(ev, start: datetime, tz: str) -> bool:
    """More than MAX_OCCURRENCES a day, or more than MAX_RULE_STEPS to walk before `start`."""
    if ev.get("DTSTART") is None:
        return False
    for rule in _rules(ev):
        try:
            per_day = _per_day(rule)
            count = int(rule["COUNT"][0]) if "COUNT" in rule else None
            began = _utc(ev["DTSTART"].dt, tz)
        except (KeyError, ValueError, TypeError, IndexError, CalendarError):
            continue  # the expansion names a broken rule
        steps = max(start - began, timedelta(0)) / timedelta(days=1) * per_day
        if per_day > MAX_OCCURRENCES or (steps > MAX_RULE_STEPS and (count is None or count > MAX_RULE_STEPS)):
            return True
    return False


def _density(cal: Calendar) -> float:
    total = 0.0
    for ev in cal.walk("VEVENT"):
        for rule in _rules(ev):
            try:
                total += _per_day(rule)
            except (KeyError, ValueError, TypeError, IndexError):
                pass
    return max(total, 1.0)


def occurrences(text: str, start: datetime, end: datetime, tz: str = "UTC") -> list[ImportedEvent]:
    return expand_calendar(text, start, end, tz).events


def expand_calendar(text: str, start: datetime, end: datetime, tz: str = "UTC",
                    cap: int = MAX_OCCURRENCES) -> Expansion:
    """Events overlapping [start, end), in start order, at most `cap` of them.

    The range is walked in steps sized so one step of the calendar's rules makes about `cap`
    occurrences (a holiday calendar: one step; a minutely rule: three and a half days), and the
    walk stops at the cap. (recurring-ical-events' after() iterator doubles its span over empty
    stretches, so a dense rule after a quiet month arrives in one huge batch; hence our own steps.)"""
    cal = parse(text)
    dense = [ev for ev in cal.walk("VEVENT") if _too_dense(ev, start, tz)]
    for ev in dense:
        _remove(cal, ev)
    step = max(timedelta(hours=1), min(end - start, timedelta(days=1) * (cap / _density(cal))))
    out, seen, capped, at = [], set(), False, start
    try:
        query = recurring_ical_events.of(cal)
        while at < end and not capped:
            upto = min(at + step, end)
            batch = [got for got in map(lambda ev: _imported(ev, tz), query.between(at, upto)) if got is not None]
            for got in sorted(batch, key=lambda x: x.start):
                key = (got.uid, got.start, got.end, got.summary)  # an event spanning two steps comes twice
                if key in seen or got.end <= start or got.start >= end:
                    continue
                if len(out) >= cap:
                    capped = True
                    break
                seen.add(key)
                out.append(got)
            at = upto
    except CalendarError:
        raise
    except Exception:  # noqa: BLE001 - a broken RRULE in someone else's feed; not quoted
        raise CalendarError(CANNOT_EXPAND) from None
    out.sort(key=lambda x: x.start)
    return Expansion(out, capped or bool(dense))


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
    return ImportedEvent(str(ev.get("UID", "")), _clean(str(ev.get("SUMMARY", ""))) or "event", s, e)


# NUL and unpaired surrogates are not text (PostgreSQL refuses NUL outright); line breaks and other
# control characters in a name would break the one-line messages and logs it is shown in. The
# noncharacters U+FDD0-U+FDEF make the bot's time marker (commands.text.when): a name never carries one.
_NOT_TEXT = re.compile("[\x00\ud800-\udfff\ufdd0-\ufdef]")
_CONTROL = re.compile("[\x01-\x1f\x7f-\x9f]+")


def _clean(summary: str) -> str:
    return " ".join(_CONTROL.sub(" ", _NOT_TEXT.sub("", summary)).split())[:500]


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


def feed(events: Iterable[FeedEvent], name: str = "Releases", refresh: timedelta = timedelta(hours=1),
         horizon: datetime | None = None) -> bytes:
    """An RFC 5545 calendar without METHOD: a published feed, not a scheduling message.

    `refresh` is how often clients should fetch it again (REFRESH-INTERVAL, RFC 7986, and Outlook's
    X-PUBLISHED-TTL). Each TZID gets a rule-based VTIMEZONE (calendars.vtimezone) for the span its
    events use; a recurring event's zone is written to `horizon` (UTC), the feed's far end."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", name)
    cal.add("refresh-interval", refresh, parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", vDuration(refresh))
    spans: dict[str, list[datetime]] = {}
    for fe in events:
        z = zone(fe.tz)
        ev = Event()
        ev.add("uid", fe.uid)
        ev.add("dtstamp", fe.stamp.astimezone(UTC))
        start, end = fe.start_local.replace(tzinfo=z), fe.end_local.replace(tzinfo=z)
        ev.add("dtstart", start)
        ev.add("dtend", end)
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
        span = spans.setdefault(fe.tz, [start.astimezone(UTC), end.astimezone(UTC)])
        far = max(end.astimezone(UTC), horizon or end) if fe.rrule else end.astimezone(UTC)
        span[0], span[1] = min(span[0], start.astimezone(UTC)), max(span[1], far)
    # Before the events that use them: a reader that resolves a TZID as it meets it (vobject) then
    # knows the zone, instead of falling back to a zone database or to UTC.
    cal.subcomponents[:0] = [vtimezone(tzid, *spans[tzid]) for tzid in sorted(cal.get_used_tzids())]
    return cal.to_ical()
