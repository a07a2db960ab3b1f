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
from functools import lru_cache
from datetime import date, datetime, time, timedelta, timezone
from math import prod
from typing import Iterable
from zoneinfo import ZoneInfo

import recurring_ical_events
from icalendar import Calendar, vDuration, vRecur
from icalendar.timezone.tzid import tzid_from_tzinfo

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
    events use; a recurring event's zone is written to `horizon` (UTC), the feed's far end.

    The VEVENTs are written as text here, not built as icalendar objects: for 10,000 events icalendar's
    Component.add and to_ical took 3.5 s of a 4 s export (per-property parameter dicts, timezone-id
    lookups and a character-by-character fold). What is per calendar, zone or rule (the calendar's own
    properties, the TZID icalendar would name, the VTIMEZONE, RRULE) is still icalendar's; tests/unit/ics_reference.py
    keeps the old all-icalendar feed, and tests/unit/test_feed_writer.py compares the two."""
    cal = Calendar()  # the calendar's own properties, once: icalendar writes them
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", name)
    cal.add("refresh-interval", refresh, parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", vDuration(refresh))
    head = cal.to_ical().removesuffix(b"END:VCALENDAR\r\n")
    body: list[bytes] = []
    spans: dict[str, list[datetime]] = {}
    for fe in events:
        tzid, z = _tzid(fe.tz)
        start, end = fe.start_local.replace(tzinfo=z), fe.end_local.replace(tzinfo=z)
        at = f";TZID={tzid}:" if tzid else ":"
        lines = [f"SUMMARY:{escape_text(fe.summary)}",
                 f"DTSTART{at}{_stamp(fe.start_local)}{'' if tzid else 'Z'}",
                 f"DTEND{at}{_stamp(fe.end_local)}{'' if tzid else 'Z'}",
                 f"DTSTAMP:{_stamp(fe.stamp.astimezone(UTC))}Z",
                 f"UID:{escape_text(fe.uid)}",
                 f"SEQUENCE:{int(fe.sequence)}"]
        if fe.rrule:
            lines.append("RRULE:" + _rrule(fe.rrule))
        if fe.categories:
            lines.append("CATEGORIES:" + ",".join(escape_text(c) for c in fe.categories))
        if fe.description:
            lines.append("DESCRIPTION:" + escape_text(fe.description))
        lines.append(f"STATUS:{'CANCELLED' if fe.cancelled else 'CONFIRMED'}")
        body.append(b"BEGIN:VEVENT\r\n")
        body.extend(map(fold, lines))
        body.append(b"END:VEVENT\r\n")
        if tzid:
            s_utc, e_utc = start.astimezone(UTC), end.astimezone(UTC)
            span = spans.setdefault(tzid, [s_utc, e_utc])
            far = max(e_utc, horizon or e_utc) if fe.rrule else e_utc
            span[0], span[1] = min(span[0], s_utc), max(span[1], far)
    # Before the events that use them: a reader that resolves a TZID as it meets it (vobject) then
    # knows the zone, instead of falling back to a zone database or to UTC.
    zones = [vtimezone(tzid, *spans[tzid]).to_ical() for tzid in sorted(spans)]
    return b"".join([head, *zones, *body, b"END:VCALENDAR\r\n"])


def escape_text(text: str) -> str:
    """RFC 5545 §3.3.11 TEXT: backslash, semicolon and comma escaped, every line break as \\n."""
    if not _SPECIAL.search(text):
        return text
    return (text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\r", "\\n").replace("\n", "\\n"))


_SPECIAL = re.compile(r"[\\;,\r\n]")


def fold(line: str) -> bytes:
    """One content line as UTF-8 with CRLF, folded (RFC 5545 §3.1) so no physical line is longer than 75
    octets: a cut never falls inside a UTF-8 sequence, nor between a backslash and the character it
    escapes (some clients do not join those back)."""
    b = line.encode()
    if len(b) <= 75:
        return b + b"\r\n"
    parts, at, limit = [], 0, 75
    while len(b) - at > limit:
        cut = at + limit
        while b[cut] & 0xC0 == 0x80:  # a continuation byte: the cut would split a character
            cut -= 1
        run = 0  # backslashes ending the piece: an odd run ends with the first half of an escape
        while run < cut - at - 1 and b[cut - 1 - run] == 0x5C:
            run += 1
        cut -= run % 2
        parts.append(b[at:cut])
        at, limit = cut, 74  # a continuation line starts with one space
    parts.append(b[at:])
    return b"\r\n ".join(parts) + b"\r\n"


def _stamp(dt: datetime) -> str:
    """RFC 5545 DATE-TIME digits (no zone mark), seconds cut: 2026-12-01T14:00:00 -> 20261201T140000."""
    return dt.isoformat()[:19].replace("-", "").replace(":", "")


@lru_cache(maxsize=1024)
def _tzid(tz: str) -> tuple[str | None, ZoneInfo]:
    """The TZID icalendar names this zone by (None for UTC and its equals, written with Z), and the zone."""
    z = zone(tz)
    tzid = tzid_from_tzinfo(z)
    return (None if tzid == "UTC" else tzid), z


@lru_cache(maxsize=1024)
def _rrule(rule: str) -> str:
    return vRecur.from_ical(rule.removeprefix("RRULE:")).to_ical().decode()
