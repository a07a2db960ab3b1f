"""The next free slots: where a flagged release could move (QMS 4.4 step 1, 5.1).

What holds a slot: the environment's releases (where it runs one at a time, or
where `max_concurrent` of them overlap), the same service's releases, and the
occurrences of the blackouts that apply. A full production holds ~20,000 windows
in the 90 days searched; reading them into Python was nearly all of the search's
time. Only the gaps a slot could fit matter, so the database finds those: one
query takes every busy interval, orders them by start, and keeps each one that
starts after a gap at least a slot long since every earlier one ended (a running
maximum, a window function on SQLite and PostgreSQL alike). The stretch between
two such gaps is busy whole. A handful of rows come back, as stored
(storage.scan), and the gaps are scanned in one pass against the deployment
windows (calendars.windows.free_slots_us).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select, union_all
from sqlmodel import Session

from calendars.windows import duration_us, free_slots_us, from_us, merge, to_us
from commands.classification import controls
from commands.policy import Policy
from commands.states import SCHEDULED
from storage import scan
from storage.models import Blackout, BlackoutOccurrence, Release

MAX_RELEASE = timedelta(days=14)  # request validation refuses longer windows
MAX_OCCURRENCE = timedelta(days=35)  # longer blackouts are stored as consecutive pieces
SLOT_HORIZON = timedelta(days=90)
SLOT_STEP = timedelta(minutes=15)  # slots start on the quarter hour


def _holding(lo: str):
    """Releases that hold their window and overlap the search (from the covering window indexes)."""
    return (Release.state.in_(SCHEDULED), Release.start_at > bindparam(lo), Release.start_at < bindparam("end"),
            Release.end_at > bindparam("start"), Release.id != bindparam("exclude"))


_ENVIRONMENT = select(Release.start_at, Release.end_at).where(Release.environment == bindparam("env"),
                                                              *_holding("lo_release"))
_SERVICE = select(Release.start_at, Release.end_at).where(Release.service == bindparam("service"),
                                                          *_holding("lo_release"))
_OCCURRENCES = select(BlackoutOccurrence.start_at, BlackoutOccurrence.end_at).where(
    BlackoutOccurrence.start_at > bindparam("lo_occurrence"), BlackoutOccurrence.start_at < bindparam("end"),
    BlackoutOccurrence.end_at > bindparam("start"), BlackoutOccurrence.blackout_id.in_(bindparam("ids", expanding=True)))
_LIVE_BLACKOUTS = select(Blackout.id, Blackout.services, Blackout.environments).where(Blackout.removed_at.is_(None))


def _saturated(windows: list[tuple[datetime, datetime]], limit: int) -> list[tuple[datetime, datetime]]:
    """Intervals in which `limit` or more of these windows overlap."""
    events = sorted([(s, 1) for s, _ in windows] + [(e, -1) for _, e in windows], key=lambda e: (e[0], e[1]))
    out, level, since = [], 0, None
    for t, step in events:
        level += step
        if level >= limit and since is None:
            since = t
        elif level < limit and since is not None:
            out.append((since, t))
            since = None
    return out


def _gaps(dialect: str, parts: list, length: timedelta):
    """Of all intervals in `parts`, the first and each that starts a gap of at least `length` after every
    earlier one ended: (its start, the end before it, the last end of all), as stored."""
    busy = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery()
    prev_end = func.max(busy.c.end_at).over(order_by=(busy.c.start_at, busy.c.end_at), rows=(None, -1))
    ordered = select(busy.c.start_at, prev_end.label("prev_end"),
                     func.max(busy.c.end_at).over().label("last_end")).subquery()
    if dialect == "sqlite":
        # julianday() is a double: a second of slack keeps an exact fit; a gap kept that is a little short
        # costs only a look, since the scan checks every slot against the stretches exactly
        wide = (func.julianday(ordered.c.start_at) - func.julianday(ordered.c.prev_end)) * 86400.0 \
            >= length.total_seconds() - 1
    else:
        wide = (ordered.c.start_at - ordered.c.prev_end) >= bindparam("length", length)
    return (select(ordered.c.start_at, ordered.c.prev_end, ordered.c.last_end)
            .where(ordered.c.prev_end.is_(None) | wide).order_by(ordered.c.start_at))


def _stretches(rows: list[tuple]) -> list[tuple]:
    """Busy stretches from the gap rows: each from a gap's end to the next gap's start, the last to the end."""
    if not rows:
        return []
    busy, since = [], rows[0][0]
    for begins, earlier_end, _ in rows[1:]:
        busy.append((since, earlier_end))
        since = begins
    busy.append((since, rows[0][2]))
    return busy


def next_free_slots(session: Session, policy: Policy, *, service: str, environment: str, release_type: str,
                    duration: timedelta, now: datetime, not_before: datetime | None = None, tz: str = "UTC",
                    exclude: int | None = None, count: int = 3) -> list[datetime]:
    """The nearest `count` starts, of the same duration, that pass every check, at or after the
    requested start (`not_before`) and the lead time, inside the environment's deployment windows,
    or, where policy sets none, the default working hours in the release's own zone `tz`."""
    earliest = slot_earliest(policy, release_type, now, not_before)
    until = earliest + SLOT_HORIZON
    windows = slot_windows(policy, environment, release_type, tz)
    length, step = duration_us(duration), duration_us(SLOT_STEP)
    params = {"start": earliest, "end": until, "lo_release": earliest - MAX_RELEASE,
              "lo_occurrence": earliest - MAX_OCCURRENCE, "exclude": exclude or 0, "env": environment,
              "service": service}
    limit = policy.calendar.max_concurrent.get(environment)
    crowded: list[tuple] = []
    if limit and limit > 1:  # where `limit` of them overlap: counted here, the rest found by the database
        crowded = _saturated(scan.rows_as_stored(session, _ENVIRONMENT, params), limit)
    # The blackouts that apply are few (hundreds at most); their occurrences are many.
    ids = [i for i, services, envs in session.execute(_LIVE_BLACKOUTS)
           if (not services or service in services) and (not envs or environment in envs)]
    parts = [_SERVICE] + ([_ENVIRONMENT] if limit == 1 else []) + ([_OCCURRENCES] if ids else [])
    rows = scan.rows_as_stored(session, _gaps(session.get_bind().dialect.name, parts, duration),
                               {**params, "ids": ids} if ids else params)
    busy = merge(_stretches(rows) + crowded)
    merged = [(scan.to_us(s), scan.to_us(e)) for s, e in busy]
    found = free_slots_us(to_us(earliest), length, merged, windows, count, to_us(until) - to_us(earliest), step)
    return [from_us(t) for t in found]


def slot_earliest(policy: Policy, release_type: str, now: datetime, not_before: datetime | None) -> datetime:
    """Where the slot search starts: after the lead time, and never before the start the requester asked
    for (a slot days earlier than they wanted is not what anyone reschedules to)."""
    earliest = now + controls(policy, release_type).lead_time
    return earliest if not_before is None else max(earliest, not_before)


def slot_windows(policy: Policy, environment: str, release_type: str, tz: str):
    """The windows slots must fit: the environment's deployment windows, else working hours in `tz`.
    An emergency alone is not held to working hours: its window opens when it is requested (QMS 4.6)."""
    if release_type == "emergency" and environment not in policy.calendar.windows:
        return None
    return policy.calendar.slot_windows(environment, tz)
