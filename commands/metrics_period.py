"""The periods metrics are asked for (`last-week`, `2026-11`, `2026-W48`, `30d`), the one before each (the
trend), and when the QMS 6.1 reviews fall due. Days and weeks are the policy's review zone's; weeks start
on Monday (ISO 8601)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from calendars.timeparse import zone
from commands.errors import InputError
from commands.metrics_policy import MetricsPolicy

PERIOD_FORM = ("a period like last-week, this-week, last-month, this-month, 2026-11, 2026-W48, 2026-Q4 or 30d "
               "(1 to 366 days up to now)")
_MONTH = re.compile(r"^(\d{4})-(\d{2})\Z", re.ASCII)
_WEEK = re.compile(r"^(\d{4})-w(\d{2})\Z", re.ASCII | re.IGNORECASE)
_QUARTER = re.compile(r"^(\d{4})-q([1-4])\Z", re.ASCII | re.IGNORECASE)
_DAYS = re.compile(r"^(\d{1,3})d\Z", re.ASCII | re.IGNORECASE)


@dataclass(frozen=True)
class Period:
    label: str  # "2026-11", "2026-W48", "30d", "2026-09-01 to 2026-11-30"
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive
    kind: str  # month | week | quarter | days | range

    def previous(self, tz: str) -> "Period":
        """The period just before, of the same kind (the month before a month), for the trend."""
        local = self.start.astimezone(zone(tz)).date()
        if self.kind == "month":
            prev = (local.replace(day=1) - timedelta(days=1)).replace(day=1)
            return month(prev.year, prev.month, tz)
        if self.kind == "week":
            y, w, _ = (local - timedelta(days=7)).isocalendar()
            return week(y, w, tz)
        if self.kind == "quarter":
            prev = local.replace(day=1) - timedelta(days=1)
            return quarter(prev.year, (prev.month - 1) // 3 + 1, tz)
        length = self.end - self.start
        return Period(f"the {length.days}d before", self.start - length, self.start, "range")


def _at(d: date, tz: str) -> datetime:
    return datetime.combine(d, time(0), zone(tz)).astimezone(timezone.utc)


def month(y: int, m: int, tz: str) -> Period:
    first = date(y, m, 1)
    nxt = date(y + (m == 12), m % 12 + 1, 1)
    return Period(f"{y:04d}-{m:02d}", _at(first, tz), _at(nxt, tz), "month")


def week(y: int, w: int, tz: str) -> Period:
    monday = date.fromisocalendar(y, w, 1)
    return Period(f"{y:04d}-W{w:02d}", _at(monday, tz), _at(monday + timedelta(days=7), tz), "week")


def quarter(y: int, q: int, tz: str) -> Period:
    first = date(y, 3 * q - 2, 1)
    nxt = date(y + (q == 4), (3 * q) % 12 + 1, 1)
    return Period(f"{y:04d}-Q{q}", _at(first, tz), _at(nxt, tz), "quarter")


def parse_period(text: str | None, now: datetime, policy: MetricsPolicy, default: str = "30d") -> Period:
    """The period `text` names, as of `now`; InputError with the right form when it names none."""
    tz = policy.review_tz
    word = (text or default).strip().lower()
    today = now.astimezone(zone(tz)).date()
    try:
        if word in ("this-week", "last-week"):
            y, w, _ = (today - timedelta(days=7 if word == "last-week" else 0)).isocalendar()
            return week(y, w, tz)
        if word in ("this-month", "last-month"):
            d = today.replace(day=1) - timedelta(days=1) if word == "last-month" else today
            return month(d.year, d.month, tz)
        if m := _MONTH.match(word):
            return month(int(m.group(1)), int(m.group(2)), tz)
        if m := _WEEK.match(word):
            return week(int(m.group(1)), int(m.group(2)), tz)
        if m := _QUARTER.match(word):
            return quarter(int(m.group(1)), int(m.group(2)), tz)
        if (m := _DAYS.match(word)) and 1 <= int(m.group(1)) <= 366:
            end = _at(today + timedelta(days=1), tz)  # through the end of today
            return Period(f"{int(m.group(1))}d", end - timedelta(days=int(m.group(1))), end, "days")
    except ValueError:  # month 13, week 54, year 0
        pass
    raise InputError(f"'{text}' is not a period; use {PERIOD_FORM}", field="period")


def parse_range(start: str, end: str | None, now: datetime, policy: MetricsPolicy) -> Period:
    """`--from 2026-09-01 --to 2026-11-30`: both days included; without --to, through today."""
    tz = policy.review_tz
    try:
        first = date.fromisoformat(start.strip())
        last = date.fromisoformat(end.strip()) if end else now.astimezone(zone(tz)).date()
    except ValueError:
        raise InputError("--from and --to are dates like 2026-09-01") from None
    if last < first:
        raise InputError("--to is before --from")
    # the label is the range as it was asked for (validated dates), not a time formatted here
    return Period(f"{start.strip()} to {end.strip() if end else 'today'}", _at(first, tz),
                  _at(last + timedelta(days=1), tz), "range")


def weekly_due(now: datetime, policy: MetricsPolicy) -> tuple[Period, datetime]:
    """The week the latest weekly review is about (the week before its review day) and when it fell due."""
    tz = zone(policy.review_tz)
    local = now.astimezone(tz)
    back = (local.weekday() - policy.review_day) % 7
    day = local.date() - timedelta(days=back)
    due = datetime.combine(day, policy.review_time, tz)
    if due > local:
        day -= timedelta(days=7)
        due = datetime.combine(day, policy.review_time, tz)
    y, w, _ = (day - timedelta(days=7)).isocalendar()
    return week(y, w, policy.review_tz), due.astimezone(timezone.utc)


def first_working_day(y: int, m: int) -> date:
    d = date(y, m, 1)
    while d.weekday() >= 5:
        d += timedelta(days=1)
    return d


def monthly_due(now: datetime, policy: MetricsPolicy) -> tuple[Period, datetime]:
    """The month the latest monthly report is about (the month before) and when it fell due: the first
    working day (Monday to Friday) of the month after it, at the review time."""
    tz = zone(policy.review_tz)
    local = now.astimezone(tz)
    y, m = local.year, local.month
    due = datetime.combine(first_working_day(y, m), policy.review_time, tz)
    if due > local:
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
        due = datetime.combine(first_working_day(y, m), policy.review_time, tz)
    py, pm = (y - 1, 12) if m == 1 else (y, m - 1)
    return month(py, pm, policy.review_tz), due.astimezone(timezone.utc)
