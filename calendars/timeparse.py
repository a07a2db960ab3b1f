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

_DURATION_PART = re.compile(r"(\d+)\s*([wdhm])")
_UNIT = {"w": 7 * 24 * 60, "d": 24 * 60, "h": 60, "m": 1}
DURATION_FORM = "a duration like 45m, 2h, 1h30m or 3d"
START_FORM = 'YYYY-MM-DD HH:MM, e.g. "2026-12-01 14:00"'


class TimeInputError(ValueError):
    """A time, date, zone or duration the user typed that cannot be understood."""


def parse_duration(text: str) -> timedelta:
    s = text.strip().lower().replace(" ", "")
    if not s:
        raise TimeInputError(f"empty duration; use {DURATION_FORM}")
    if s.isascii() and s.isdigit():  # bare number = minutes, the unit people mean for a deployment
        minutes = int(s)
    else:
        pos, minutes = 0, 0
        for m in _DURATION_PART.finditer(s):
            if m.start() != pos:
                break
            minutes += int(m.group(1)) * _UNIT[m.group(2)]
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
        raise TimeInputError(f"'{text}' is not a date and time; use {START_FORM}") from None
    try:
        as_utc = naive.replace(tzinfo=tz).astimezone(UTC)
        round_trip = as_utc.astimezone(tz).replace(tzinfo=None)
    except OverflowError:
        raise TimeInputError(f"'{text}' is outside the calendar this bot can plan in; use {START_FORM}") from None
    if round_trip != naive:
        raise TimeInputError(
            f"{s} does not exist in {tz_name} (the clocks skip it for daylight saving); pick another time"
        )
    return as_utc


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
