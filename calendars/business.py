"""Business days, counted in the zone where the work happens."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from calendars.timeparse import zone


def add_business_days(start: datetime, days: int, tz: str) -> datetime:
    """The same local wall-clock time `days` working days (Mon–Fri) later, as UTC.

    Counting happens on local dates, so "5 business days" from a Friday evening
    in Sydney is not shifted by the UTC date line."""
    local = start.astimezone(zone(tz))
    day = local.date()
    left = days
    while left > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            left -= 1
    wall = datetime.combine(day, local.time().replace(tzinfo=None))
    # fold=0: in a repeated autumn hour take the first; a skipped spring hour moves forward.
    return wall.replace(tzinfo=zone(tz)).astimezone(timezone.utc)
