"""Yesterday's free-slot search, kept verbatim as the oracle the fast one is compared with.

calendars.windows.free_slots merges the busy intervals and scans the gaps once;
commands.planning.next_free_slots reads the busy intervals as raw columns. Both
must give exactly what these gave, on every calendar (tests/unit/test_slot_oracle.py).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterable

from sqlalchemy import bindparam, select
from sqlmodel import Session

from calendars.windows import DeploymentWindows
from commands.classification import controls
from commands.planning import MAX_OCCURRENCE, MAX_RELEASE, SLOT_HORIZON, _saturated, slot_windows
from commands.policy import Policy
from commands.states import SCHEDULED
from storage.models import Blackout, BlackoutOccurrence, Release

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _align(t: datetime, step: timedelta) -> datetime:
    q, r = divmod(t - _EPOCH, step)
    return _EPOCH + (q + (1 if r else 0)) * step


def oracle_free_slots(earliest: datetime, duration: timedelta, busy: Iterable[tuple[datetime, datetime]],
               windows: DeploymentWindows | None, count: int = 3, horizon: timedelta = timedelta(days=90),
               step: timedelta = timedelta(minutes=15)) -> list[datetime]:
    """The first `count` start times from `earliest` on, `step`-aligned, whose
    window [start, start + duration) overlaps nothing busy and fits an allowed
    deployment window. Successive slots do not overlap each other.

    Candidates jump straight to the end of whatever blocks them, so the search
    costs about as many steps as there are busy intervals, not minutes."""
    intervals = sorted((s, e) for s, e in busy if e > earliest)
    limit = earliest + horizon
    t = _align(earliest, step)
    found: list[datetime] = []
    openings = windows.openings(t) if windows else None
    current = next(openings) if openings else None
    i = 0
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
        while i < len(intervals) and intervals[i][1] <= t:
            i += 1
        blocker = next((iv for iv in intervals[i:] if iv[0] < t + duration and iv[1] > t), None)
        if blocker is None:
            found.append(t)
            t = _align(t + duration, step)
        else:
            t = _align(blocker[1], step)
    return found


_BUSY_RELEASES = (select(Release.start_at, Release.end_at, Release.service)
                  .where(Release.environment == bindparam("env"), Release.state.in_(SCHEDULED),
                         Release.start_at > bindparam("lo"), Release.start_at < bindparam("end"),
                         Release.end_at > bindparam("start"), Release.id != bindparam("exclude")))
_BUSY_SERVICE = (select(Release.start_at, Release.end_at)
                 .where(Release.service == bindparam("service"), Release.state.in_(SCHEDULED),
                        Release.start_at > bindparam("lo"), Release.start_at < bindparam("end"),
                        Release.end_at > bindparam("start"), Release.id != bindparam("exclude")))
_BUSY_BLACKOUTS = (select(BlackoutOccurrence.start_at, BlackoutOccurrence.end_at, Blackout.services,
                          Blackout.environments)
                   .join(Blackout, Blackout.id == BlackoutOccurrence.blackout_id)
                   .where(BlackoutOccurrence.start_at > bindparam("lo"), BlackoutOccurrence.start_at < bindparam("end"),
                          BlackoutOccurrence.end_at > bindparam("start"), Blackout.removed_at.is_(None)))


def oracle_next_free_slots(session: Session, policy: Policy, *, service: str, environment: str, release_type: str,
                    duration: timedelta, now: datetime, not_before: datetime | None = None, tz: str = "UTC",
                    exclude: int | None = None, count: int = 3) -> list[datetime]:
    """The next `count` starts, of the same duration, that pass every check and
    fall inside the environment's deployment windows if policy sets them.

    Months of calendar are read here, so only the columns needed, not whole rows."""
    earliest = now + controls(policy, release_type).lead_time
    # Since the search starts at the requested start and keeps to working hours where policy sets no
    # windows, the oracle is given the same start and windows: what it checks is the scan, not the policy.
    if not_before is not None:
        earliest = max(earliest, not_before)
    until = earliest + SLOT_HORIZON
    window = {"start": earliest, "end": until, "exclude": exclude or 0}
    busy = [(s, e) for s, e, services, envs in session.execute(_BUSY_BLACKOUTS, {**window,
                                                                                "lo": earliest - MAX_OCCURRENCE})
            if (not services or service in services) and (not envs or environment in envs)]
    busy += [tuple(r) for r in session.execute(_BUSY_SERVICE, {**window, "lo": earliest - MAX_RELEASE,
                                                               "service": service})]
    limit = policy.calendar.max_concurrent.get(environment)
    if limit:
        env_rows = session.execute(_BUSY_RELEASES, {**window, "lo": earliest - MAX_RELEASE, "env": environment})
        busy += _saturated([(s, e) for s, e, _ in env_rows], limit)
    return oracle_free_slots(earliest, duration, busy, slot_windows(policy, environment, release_type, tz),
                             count=count, horizon=SLOT_HORIZON)
