"""Parsing the times people type into UTC instants.

Everything leaving this module is timezone-aware UTC. The zone name the user
typed is kept alongside by callers, because a window like "14:00 London" has
to mean 14:00 London again after the clocks change.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = timezone.utc

# Unit words longest first, so "min" is not read as "m" followed by "in".
_DURATION_PART = re.compile(r"(\d+)(weeks|week|wks|wk|w|days|day|d|hours|hour|hrs|hr|h|minutes|minute|mins|min|m)"
                            r"(?![a-z])")
_UNIT = {"w": 7 * 24 * 60, "d": 24 * 60, "h": 60, "m": 1}
DURATION_FORM = "a duration like 45m, 90min, 1 hour, 1h30m or 3d"
ISO_FORM = 'YYYY-MM-DD HH:MM, e.g. "2026-12-01 14:00"'
START_FORM = ('YYYY-MM-DD HH:MM ("2026-12-01 14:00"), or "tomorrow 14:00", "next monday 9am", "in 2 days", '
              '"2pm", "dec 24 10:00" or "12/03 14:00" (read in your Slack locale)')


class TimeInputError(ValueError):
    """A time, date, zone or duration the user typed that cannot be understood."""


def parse_duration(text: str) -> timedelta:
    s = re.sub(r"\s+|,|\band\b", "", text.strip().lower())
    if not s:
        raise TimeInputError(f"empty duration; use {DURATION_FORM}")
    if s.isascii() and s.isdigit():  # bare number = minutes, the unit people mean for a deployment
        minutes = int(s)
    else:
        pos, minutes = 0, 0
        for m in _DURATION_PART.finditer(s):
            if m.start() != pos:
                break
            minutes += int(m.group(1)) * _UNIT[m.group(2)[0]]
            pos = m.end()
        if pos != len(s):
            raise TimeInputError(f"'{text}' is not a duration; use {DURATION_FORM}")
    if minutes <= 0:
        raise TimeInputError(f"'{text}' is not a positive duration; use {DURATION_FORM}")
    try:
        return timedelta(minutes=minutes)
    except OverflowError:
        raise TimeInputError(f"'{text}' is far too long; use {DURATION_FORM}") from None


def format_duration(d: timedelta) -> str:
    minutes = int(d.total_seconds() // 60)
    days, rem = divmod(minutes, 24 * 60)
    hours, mins = divmod(rem, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{mins}m" if mins else ""]
    return "".join(parts) or "0m"


def zone(name: str) -> ZoneInfo:
    name = name.strip()
    try:
        if not name or name.startswith("/") or ".." in name:
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: 'Europe' is a folder
        raise TimeInputError(
            f"'{name}' is not an IANA time zone; use a name like Europe/London, America/New_York or UTC"
        ) from None


def parse_local(text: str, tz_name: str) -> datetime:
    """'2026-12-01 14:00' in tz_name -> aware UTC.

    A wall-clock time that does not exist (skipped by a DST jump) is refused rather
    than silently shifted: a release window an hour off is worse than an error.
    An ambiguous time (repeated hour in autumn) takes the first occurrence.
    """
    tz = zone(tz_name)
    s = text.strip().replace("T", " ")
    try:
        naive = datetime.strptime(s, "%Y-%m-%d %H:%M")
    except ValueError:
        raise TimeInputError(f"'{text}' is not a date and time; use {ISO_FORM}") from None
    return localize(naive, tz_name)


def localize(naive: datetime, tz_name: str) -> datetime:
    """A wall-clock time in tz_name -> aware UTC, refusing one the clocks skip."""
    tz = zone(tz_name)
    s = f"{naive:%Y-%m-%d %H:%M}"
    try:
        as_utc = naive.replace(tzinfo=tz).astimezone(UTC)
        round_trip = as_utc.astimezone(tz).replace(tzinfo=None)
    except OverflowError:
        raise TimeInputError(f"{s} is outside the calendar this bot can plan in; use {ISO_FORM}") from None
    if round_trip != naive:
        raise TimeInputError(
            f"{s} does not exist in {tz_name} (the clocks skip it for daylight saving); pick another time"
        )
    return as_utc


# --- what people type for a start ------------------------------------------------------------------------------
# dateparser reads the phrases ("tomorrow 14:00", "next monday 9am", "dec 24"); the rules around it are ours:
# the anchor is the injected clock in the planning zone, a numeric day/month follows the reader's Slack locale,
# and anything it would guess at (a bare number, a duration, a zone inside the text) is refused instead.
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}\Z", re.ASCII)
_NUMERIC_DAY = re.compile(r"^(\d{1,2})[/.-](\d{1,2})(?:[/.-](\d{2}|\d{4}))?(?=\s|\Z)", re.ASCII)
_IN_CLOCK_TIME = re.compile(r"^in\s+(\d{1,4})\s*(minutes|minute|mins|min|m|hours|hour|hrs|hr|h)\Z")
_ZONE_IN_TEXT = re.compile(r"\b(utc|gmt|bst|cet|cest|eet|eest|est|edt|cst|cdt|mst|mdt|pst|pdt|ist|aest|aedt|z)\b"
                           r"|[+-]\d{2}:?\d{2}\Z")
# Slack's locales that write month before day (ja, ko, zh write year/month/day, so "12/03" is month first too).
_MONTH_FIRST = {"en-US", "ja-JP", "ko-KR", "zh-CN", "zh-TW", "es-US"}
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")


@dataclass(frozen=True)
class Start:
    """A start as typed, read: the UTC instant, its wall clock in the planning zone, and how it was read."""

    at: datetime
    local: datetime
    note: str | None = None  # which reading of an ambiguous day/month was taken


def needs_locale(text: str | None) -> bool:
    """Whether reading this start depends on the reader's locale (a day/month both 12 or under)."""
    m = _NUMERIC_DAY.match((text or "").strip())
    return bool(m) and int(m.group(1)) <= 12 and int(m.group(2)) <= 12 and m.group(1) != m.group(2)


def month_first(locale: str | None) -> bool:
    return (locale or "").replace("_", "-") in _MONTH_FIRST


def parse_start(text: str, tz_name: str, now: datetime, locale: str | None = None) -> Start:
    """What a person typed as a start, in tz_name, relative to now (aware): 'tomorrow 14:00', '2pm', …

    locale: the reader's Slack locale (users.info), for "12/03": en-US reads 3 December, en-GB 12 March.
    Without one, such a date is refused as ambiguous rather than guessed."""
    tz = zone(tz_name)
    s = " ".join((text or "").strip().split())
    if not s:
        raise TimeInputError(f"empty start; use {START_FORM}")
    if _ISO.match(s):
        return _start(parse_local(s, tz_name), tz)
    low = s.lower()
    m = _IN_CLOCK_TIME.match(low)
    if m:  # elapsed time, not wall clock: "in 3 hours" across a DST change is still three hours
        minutes = int(m.group(1)) * (60 if m.group(2).startswith("h") else 1)
        return _start((now + timedelta(minutes=minutes)).astimezone(UTC), tz)
    bad = f"'{text.strip()}' is not a start I can read; use {START_FORM}"
    if low.isdigit() or not re.search(r"[a-z:/.-]", low):
        raise TimeInputError(bad)
    if _ZONE_IN_TEXT.search(low):
        raise TimeInputError(f"'{text.strip()}' names a zone inside the time; give the zone as tz= "
                             f"(e.g. tz=Europe/London) and the time without it")
    try:
        parse_duration(low)
    except TimeInputError:
        pass
    else:
        raise TimeInputError(f"'{text.strip()}' is a duration, not a start; for a start that far ahead "
                             f"write \"in {text.strip()}\"")
    note, order = None, "MDY" if month_first(locale) else "DMY"
    if needs_locale(s):
        if not locale:
            raise TimeInputError(f"'{text.strip()}' could be day/month or month/day; write the month as a word "
                                 f"(\"dec 3\" or \"3 dec\") or use YYYY-MM-DD")
        a, b = (int(x) for x in _NUMERIC_DAY.match(s).group(1, 2))
        day, month = (b, a) if order == "MDY" else (a, b)
        note = (f"read {s.split()[0]} as {day} {_MONTHS[month - 1]} "
                f"({'month' if order == 'MDY' else 'day'} first, as your Slack locale {locale} writes it)")
    local_now = now.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)
    import dateparser  # here, not at import: it loads its language data, and most starts never need it

    try:
        naive = dateparser.parse(s, languages=["en"], settings={
            "RELATIVE_BASE": local_now, "TIMEZONE": tz_name, "RETURN_AS_TIMEZONE_AWARE": False,
            "PREFER_DATES_FROM": "future", "DATE_ORDER": order})
    except (ValueError, OverflowError):
        naive = None
    if naive is None:
        raise TimeInputError(bad)
    return _start(localize(naive.replace(second=0, microsecond=0), tz_name), tz, note)


def _start(at: datetime, tz: ZoneInfo, note: str | None = None) -> Start:
    return Start(at, at.astimezone(tz).replace(tzinfo=None), note)


@dataclass(frozen=True)
class Window:
    """A planned window: UTC instants plus the zone it was planned in."""

    start: datetime
    end: datetime
    tz: str

    def overlaps(self, other: "Window") -> bool:
        return self.start < other.end and other.start < self.end

    def local_start(self) -> datetime:
        return self.start.astimezone(zone(self.tz))
