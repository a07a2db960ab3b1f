"""Expanding one-off and recurring windows (RFC 5545 RRULE) into UTC occurrences.

Each occurrence starts at the same local wall-clock time in its IANA zone, so
"every Friday 16:00 Europe/London" is 16:00 in London in winter and in summer.
Its length is the exact duration of the first occurrence (RFC 5545 §3.8.5.3),
counted in UTC, so an occurrence spanning a DST change is as long as the rest.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from dateutil.rrule import rrulestr

from calendars.timeparse import TimeInputError, zone

UTC = timezone.utc
MAX_OCCURRENCES = 5000  # per rule and horizon; a minutely rule is a mistake, not a calendar


@dataclass(frozen=True)
class Occurrence:
    start: datetime  # UTC
    end: datetime  # UTC

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start < end and start < self.end


def local_to_utc(naive: datetime, tz: str) -> datetime:
    """A local wall-clock time to UTC. A time the clocks skip (spring forward)
    moves forward by the gap, as RFC 5545 §3.3.5 says; a repeated autumn time
    takes its first occurrence. (fold=0 does both with zoneinfo.)"""
    return naive.replace(tzinfo=zone(tz)).astimezone(UTC)


_UNTIL_UTC = re.compile(r"UNTIL=(\d{8}T\d{6})Z", re.IGNORECASE)
_SUBDAILY = ("SECONDLY", "MINUTELY", "HOURLY")
AT_MOST_DAILY = ("a blackout repeats at most daily (no more than once a day): use FREQ=DAILY, WEEKLY, MONTHLY or YEARLY with at most "
                 "one BYHOUR, BYMINUTE and BYSECOND value, e.g. FREQ=WEEKLY;BYDAY=FR")
_DAYS_IN = {2: 29, 4: 30, 6: 30, 9: 30, 11: 30}


def parse_rrule(text: str, dtstart_local: datetime, tz: str | None = None):
    text = text.strip()
    if text.upper().startswith("RRULE:"):
        text = text[6:]
    _refuse_more_than_daily(text)
    _refuse_impossible(text)
    if tz:
        # RFC 5545 wants UNTIL in UTC when DTSTART has a zone; dateutil wants it
        # in the same (naive, local) terms as DTSTART.
        def local(m: re.Match) -> str:
            utc = datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
            return "UNTIL=" + utc.astimezone(zone(tz)).strftime("%Y%m%dT%H%M%S")
        text = _UNTIL_UTC.sub(local, text)
    try:
        return rrulestr(text, dtstart=dtstart_local)
    except (ValueError, TypeError) as exc:
        raise TimeInputError(f"'{text}' is not an RFC 5545 RRULE ({exc}); e.g. FREQ=WEEKLY;BYDAY=FR") from None


def _refuse_more_than_daily(text: str) -> None:
    """FREQ=DAILY;BYHOUR=0,…,23;BYMINUTE=0,10,… is 144 a day however its FREQ reads."""
    parts = {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in text.upper().split(";"))}
    if parts.get("FREQ") in _SUBDAILY:
        raise TimeInputError(AT_MOST_DAILY)
    per_day = 1
    for key in ("BYHOUR", "BYMINUTE", "BYSECOND"):
        per_day *= len([v for v in parts.get(key, "").split(",") if v.strip()]) or 1
    if "BYSETPOS" in parts:
        per_day = min(per_day, len([v for v in parts["BYSETPOS"].split(",") if v.strip()]))
    if per_day > 1:
        raise TimeInputError(AT_MOST_DAILY)


def _refuse_impossible(text: str) -> None:
    """A rule that can never occur (30 February) makes dateutil search to the year 9999."""
    parts = dict(p.split("=", 1) for p in text.upper().split(";") if "=" in p)
    try:
        months = [int(m) for m in parts.get("BYMONTH", "").split(",") if m]
        days = [int(d) for d in parts.get("BYMONTHDAY", "").split(",") if d]
    except ValueError:
        return  # rrulestr will name the bad value
    if months and days and all(d > 0 for d in days) and \
            all(all(d > _DAYS_IN.get(m, 31) for d in days) for m in months):
        raise TimeInputError(f"'{text}' never occurs: no month in BYMONTH has day {days[0]}")


def expand(start_local: datetime, end_local: datetime, tz: str, rrule: str | None, window_start: datetime,
           window_end: datetime) -> list[Occurrence]:
    """Occurrences that overlap [window_start, window_end) (UTC)."""
    first_start, first_end = local_to_utc(start_local, tz), local_to_utc(end_local, tz)
    length = first_end - first_start
    if length <= timedelta(0):
        raise TimeInputError("a blackout must end after it starts")
    if not rrule:
        occ = Occurrence(first_start, first_end)
        return [occ] if occ.overlaps(window_start, window_end) else []
    rule = parse_rrule(rrule, start_local, tz)
    z = zone(tz)
    # Search in local naive time; widen by the length so an occurrence that
    # started before the window but runs into it is found.
    lo = (window_start - length).astimezone(z).replace(tzinfo=None) - timedelta(days=1)
    hi = window_end.astimezone(z).replace(tzinfo=None) + timedelta(days=1)
    out = []
    for local in rule.xafter(lo, inc=True) if hasattr(rule, "xafter") else rule.between(lo, hi, inc=True):
        if local > hi or len(out) >= MAX_OCCURRENCES:
            break
        start = local_to_utc(local, tz)
        occ = Occurrence(start, start + length)
        if occ.overlaps(window_start, window_end):
            out.append(occ)
    return out
