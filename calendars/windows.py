"""Allowed deployment windows (e.g. Mon–Thu 09:00–16:00 Europe/London) and free-slot search."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Iterable, Iterator

from calendars.recurrence import local_to_utc
from calendars.timeparse import TimeInputError, zone

UTC = timezone.utc
_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def parse_days(text: str) -> frozenset[int]:
    """'Mon-Thu', 'Mon,Wed,Fri', 'Mon-Fri' → weekday numbers (Monday = 0)."""
    days: set[int] = set()
    for chunk in filter(None, (c.strip().lower() for c in text.replace("–", "-").split(","))):
        if "-" in chunk:
            a, b = (x.strip()[:3] for x in chunk.split("-", 1))
            if a not in _DAYS or b not in _DAYS:
                raise TimeInputError(f"'{chunk}' is not a range of days like Mon-Thu")
            i, j = _DAYS.index(a), _DAYS.index(b)
            days.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
        else:
            if chunk[:3] not in _DAYS:
                raise TimeInputError(f"'{chunk}' is not a day like Mon")
            days.add(_DAYS.index(chunk[:3]))
    if not days:
        raise TimeInputError("no days given; use e.g. Mon-Thu")
    return frozenset(days)


def parse_clock(text: str) -> time:
    try:
        return datetime.strptime(text.strip(), "%H:%M").time()
    except ValueError:
        raise TimeInputError(f"'{text}' is not a time of day like 09:00") from None


@dataclass(frozen=True)
class DeploymentWindows:
    """Local-time windows in which deployments to an environment may run."""

    days: frozenset[int]
    start: time
    end: time
    tz: str

    def contains(self, start: datetime, end: datetime) -> bool:
        local_start = start.astimezone(zone(self.tz))
        day = local_start.date()
        if day.weekday() not in self.days:
            return False
        open_, close = self._bounds(day)
        return open_ <= start and end <= close

    def _bounds(self, day) -> tuple[datetime, datetime]:
        return (local_to_utc(datetime.combine(day, self.start), self.tz),
                local_to_utc(datetime.combine(day, self.end), self.tz))

    def openings(self, after: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Each allowed window (UTC) that ends after `after`, in order."""
        day = after.astimezone(zone(self.tz)).date()
        for _ in range(3700):  # ten years of days: beyond any search horizon
            if day.weekday() in self.days:
                open_, close = self._bounds(day)
                if close > after:
                    yield open_, close
            day += timedelta(days=1)

    def describe(self) -> str:
        names = ",".join(_DAYS[d].capitalize() for d in sorted(self.days))
        return f"{names} {self.start:%H:%M}–{self.end:%H:%M} {self.tz}"


def free_slots(earliest: datetime, duration: timedelta, busy: Iterable[tuple[datetime, datetime]],
               windows: DeploymentWindows | None, count: int = 3, horizon: timedelta = timedelta(days=90),
               step: timedelta = timedelta(minutes=15)) -> list[datetime]:
    """The first `count` start times from `earliest` on, `step`-aligned, whose
    window [start, start + duration) overlaps nothing busy and fits an allowed
    deployment window. Successive slots do not overlap each other."""
    busy_us = [(to_us(s), to_us(e)) for s, e in busy]
    return [from_us(t) for t in free_slots_us(to_us(earliest), duration_us(duration), busy_us, windows, count,
                                              duration_us(horizon), duration_us(step))]


def merge(busy: Iterable[tuple]) -> list[tuple]:
    """The union of these intervals: sorted, disjoint, touching ones joined (an empty one stays a point).

    Only compares, so any ordered values do: ints, datetimes, or timestamps as a database stored them."""
    out: list[tuple] = []
    last_end = None
    for s, e in sorted(busy):
        if last_end is not None and s <= last_end:
            if e > last_end:
                out[-1] = (out[-1][0], e)
                last_end = e
        else:
            out.append((s, e))
            last_end = e
    return out


def free_slots_us(earliest: int, duration: int, busy: Iterable[tuple[int, int]], windows: DeploymentWindows | None,
                  count: int, horizon: int, step: int) -> list[int]:
    """free_slots over integer microseconds since the epoch (how the planning search reads the calendar).

    The busy intervals are merged first, so one pass over the gaps finds the
    slots: a candidate is blocked only by the first merged interval that ends
    after it, and jumps straight to its end."""
    intervals = merge((s, e) for s, e in busy if e > earliest)
    limit = earliest + horizon
    t = _align(earliest, step)
    found: list[int] = []
    openings = ((to_us(o), to_us(c)) for o, c in windows.openings(from_us(t))) if windows else None
    current = next(openings) if openings else None
    i, n = 0, len(intervals)
    while t < limit and len(found) < count:
        if windows is not None:
            while current and current[1] < t + duration:
                current = next(openings, None)
            if current is None:
                break
            if t < current[0]:
                t = _align(current[0], step)
                continue
            if t + duration > current[1]:
                current = next(openings, None)
                continue
        while i < n and intervals[i][1] <= t:
            i += 1
        if i < n and intervals[i][0] < t + duration:
            t = _align(intervals[i][1], step)
        else:
            found.append(t)
            t = _align(t + duration, step)
    return found


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def to_us(t: datetime) -> int:
    return (t - EPOCH) // _MICRO


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def duration_us(d: timedelta) -> int:
    return d // _MICRO


def _align(t: int, step: int) -> int:
    """Round up to the next multiple of `step` from the epoch."""
    q, r = divmod(t, step)
    return (q + (1 if r else 0)) * step
