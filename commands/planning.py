"""Planning checks (QMS §4.4 step 1): lead time, blackouts and conflicts, and the next free slots.

A failed check does not reject a request: it is recorded as a flag with the
release, shown as a warning naming its cause, and blocks approval until the
release moves to a clean window or the right person overrides it in writing.
Every query here is a range over an indexed start time, bounded by the longest
window that can exist, so the cost does not grow with the size of the calendar.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Text, bindparam, cast, func, select
from sqlmodel import Session

from calendars.timeparse import format_duration
from calendars.windows import duration_us, free_slots_us, from_us, merge, to_us
from commands.classification import controls
from commands.policy import Policy
from commands.states import SCHEDULED
from commands.text import when
from storage.models import Blackout, BlackoutOccurrence, Release, ReleaseFlag, UTCDateTime
from storage import scan

MAX_RELEASE = timedelta(days=14)  # request validation refuses longer windows
MAX_OCCURRENCE = timedelta(days=35)  # longer blackouts are stored as consecutive pieces
SLOT_HORIZON = timedelta(days=90)
SLOT_STEP = timedelta(minutes=15)  # slots start on the quarter hour


@dataclass(frozen=True)
class Flag:
    kind: str  # lead_time | window | blackout | conflict
    detail: str
    ref: str | None = None


_SAME_SERVICE = (select(Release)
                 .where(Release.service == bindparam("service"), Release.state.in_(SCHEDULED),
                        Release.start_at > bindparam("lo"), Release.start_at < bindparam("end"),
                        Release.end_at > bindparam("start"), Release.id != bindparam("exclude"))
                 .order_by(Release.start_at))
_SAME_ENV = (select(Release)
             .where(Release.environment == bindparam("env"), Release.state.in_(SCHEDULED),
                    Release.start_at > bindparam("lo"), Release.start_at < bindparam("end"),
                    Release.end_at > bindparam("start"), Release.id != bindparam("exclude"))
             .order_by(Release.start_at))
@dataclass(frozen=True)
class BlackoutHit:
    """An occurrence of a blackout overlapping a window: just the columns a check needs."""

    blackout_id: int
    name: str
    start: datetime  # the whole occurrence, not the stored piece
    end: datetime
    services: list
    environments: list


# Columns, not ORM objects: a busy weekend overlaps dozens of occurrences, and
# building entities for them was most of a check's cost.
_BLACKOUTS = (select(Blackout.id, func.coalesce(BlackoutOccurrence.summary, Blackout.name),
                     func.coalesce(BlackoutOccurrence.occurrence_start, BlackoutOccurrence.start_at),
                     func.coalesce(BlackoutOccurrence.occurrence_end, BlackoutOccurrence.end_at),
                     Blackout.services, Blackout.environments)
              .join(Blackout, Blackout.id == BlackoutOccurrence.blackout_id)
              .where(BlackoutOccurrence.start_at > bindparam("lo"), BlackoutOccurrence.start_at < bindparam("end"),
                     BlackoutOccurrence.end_at > bindparam("start"), Blackout.removed_at.is_(None))
              .order_by(BlackoutOccurrence.start_at))


def applies(blackout, service: str, environment: str) -> bool:
    """Does a blackout (or a hit of one) cover this service and environment? Empty lists cover all."""
    return ((not blackout.services or service in blackout.services)
            and (not blackout.environments or environment in blackout.environments))


def blackouts_over(session: Session, start: datetime, end: datetime, service: str | None = None,
                   environment: str | None = None) -> list[BlackoutHit]:
    utc = UTCDateTime()
    hits = []
    for bid, name, s, e, services, envs in session.execute(
            _BLACKOUTS, {"lo": start - MAX_OCCURRENCE, "start": start, "end": end}):
        hit = BlackoutHit(bid, name, coalesced_utc(utc, s), coalesced_utc(utc, e), services, envs)
        if service is None or applies(hit, service, environment or ""):
            hits.append(hit)
    return hits


def coalesced_utc(kind: UTCDateTime, value):
    # coalesce() loses the column type, so SQLite hands back a string or a naive datetime.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return kind.process_result_value(value, None)


def releases_over(session: Session, start: datetime, end: datetime, *, service: str | None = None,
                  environment: str | None = None, exclude: int | None = None) -> list[Release]:
    params = {"lo": start - MAX_RELEASE, "start": start, "end": end, "exclude": exclude or 0}
    if service is not None:
        return list(session.scalars(_SAME_SERVICE, {**params, "service": service}))
    return list(session.scalars(_SAME_ENV, {**params, "env": environment}))


_ANY = (select(Release)
        .where(Release.state.in_(SCHEDULED), Release.start_at > bindparam("lo"), Release.start_at < bindparam("end"),
               Release.end_at > bindparam("start"))
        .order_by(Release.start_at))


def releases_over_all(session: Session, start: datetime, end: datetime) -> list[Release]:
    """Every scheduled release overlapping [start, end), whatever its service."""
    return list(session.scalars(_ANY, {"lo": start - MAX_RELEASE, "start": start, "end": end}))


def blackout_detail(hit: BlackoutHit) -> str:
    return f"falls in blackout '{hit.name}' ({when(hit.start)}–{when(hit.end)})"


def check(session: Session, policy: Policy, *, service: str, environment: str, release_type: str,
          start: datetime, end: datetime, requested_at: datetime, exclude: int | None = None) -> list[Flag]:
    flags = []
    lead = controls(policy, release_type).lead_time
    # QMS 4.6: an emergency bypasses planning: its window opens when it is requested, so neither lead
    # time nor the planned deployment windows apply. Blackouts and conflicts still do: QMS 5.1 names no
    # exception to the executive's override of a blackout, and two changes to one service at once
    # are a risk an incident does not remove. A requested type joining it (track "emergency+minor")
    # keeps its own planning checks: a stricter choice only adds control.
    planned = release_type != "emergency"
    if planned and start - requested_at < lead:
        flags.append(Flag("lead_time", f"starts {format_duration(max(start - requested_at, timedelta(0)))} after "
                                       f"it was planned; a {release_type} release needs at least "
                                       f"{format_duration(lead)} (QMS 3.7)"))
    windows = policy.calendar.windows.get(environment)
    if planned and windows is not None and not windows.contains(start, end):
        flags.append(Flag("window", f"falls outside the {environment} deployment windows ({windows.describe()})",
                          f"window:{environment}"))
    seen = set()
    for hit in blackouts_over(session, start, end, service, environment):
        if hit.blackout_id not in seen:
            seen.add(hit.blackout_id)
            flags.append(Flag("blackout", blackout_detail(hit), f"blackout:{hit.blackout_id}"))
    for r in releases_over(session, start, end, service=service, exclude=exclude):
        flags.append(Flag("conflict", f"overlaps {r.ref} ({r.service} {r.version}, {r.state}, "
                                      f"{when(r.start_at)}–{when(r.end_at, show='t')})", r.ref))
    limit = policy.calendar.max_concurrent.get(environment)
    if limit:
        others = releases_over(session, start, end, environment=environment, exclude=exclude)
        if _peak(others, start, end) >= limit:
            refs = ", ".join(r.ref for r in others[:5])
            flags.append(Flag("conflict", f"{environment} already has as many releases in that window as policy "
                                          f"allows ({limit}): {refs}", f"env:{environment}"))
    return flags


def _peak(releases: list[Release], start: datetime, end: datetime) -> int:
    """Most releases running at once within [start, end)."""
    events = sorted([(max(r.start_at, start), 1) for r in releases] + [(min(r.end_at, end), -1) for r in releases],
                    key=lambda e: (e[0], e[1]))
    peak = level = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


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


# Start and end only, as stored (storage.scan), in start order,
# straight from the covering window indexes (migration 0012): on a full calendar these read tens of
# thousands of windows per search, and building entities or processing each timestamp was nearly all
# of its cost.
_HOLDING = (Release.state.in_(SCHEDULED), Release.start_at > bindparam("lo"), Release.start_at < bindparam("end"),
            Release.end_at > bindparam("start"), Release.id != bindparam("exclude"))
_BUSY_ENVIRONMENT = (select(Release.start_at, Release.end_at)
                     .where(Release.environment == bindparam("env"), *_HOLDING).order_by(Release.start_at))
_BUSY_SERVICE = (select(Release.start_at, Release.end_at)
                 .where(Release.service == bindparam("service"), *_HOLDING).order_by(Release.start_at))
# The scopes as text, parsed only when not '[]' (everywhere): parsing 1,000 JSON lists per search took
# 2.3 ms on SQLite and 4 ms on PostgreSQL of each search (500 blackouts); now 0.8.
_LIVE_BLACKOUTS = (select(Blackout.id, cast(Blackout.services, Text), cast(Blackout.environments, Text))
                   .where(Blackout.removed_at.is_(None)))
_BUSY_OCCURRENCES = (select(BlackoutOccurrence.start_at, BlackoutOccurrence.end_at)
                     .where(BlackoutOccurrence.start_at > bindparam("lo"),
                            BlackoutOccurrence.start_at < bindparam("end"),
                            BlackoutOccurrence.end_at > bindparam("start"),
                            BlackoutOccurrence.blackout_id.in_(bindparam("ids", expanding=True)))
                     .order_by(BlackoutOccurrence.start_at))


def next_free_slots(session: Session, policy: Policy, *, service: str, environment: str, release_type: str,
                    duration: timedelta, now: datetime, not_before: datetime | None = None, tz: str = "UTC",
                    exclude: int | None = None, count: int = 3) -> list[datetime]:
    """The nearest `count` starts, of the same duration, that pass every check, at or after the
    requested start (`not_before`) and the lead time, inside the environment's deployment windows,
    or, where policy sets none, the default working hours in the release's own zone `tz`.

    The busy intervals are read once, each kind in one indexed range query (the
    environment's releases, the service's releases, the blackouts that apply),
    then merged and scanned in one pass (calendars.windows.free_slots_us); where
    the environment has a limit, its releases are scanned first, alone."""
    earliest = slot_earliest(policy, release_type, now, not_before)
    until = earliest + SLOT_HORIZON
    scan.custom_plans(session)
    windows = slot_windows(policy, environment, release_type, tz)
    length, step = duration_us(duration), duration_us(SLOT_STEP)

    def run(query, start: datetime, back: timedelta, **params):
        return scan.rows_as_stored(session, query, {"start": start, "end": until, "lo": start - back,
                                                    "exclude": exclude or 0, **params})

    def search(busy: list[tuple], start: datetime, n: int) -> list[int]:
        # Merged as stored (they compare correctly within one database), converted once per busy stretch.
        merged = [(scan.to_us(s), scan.to_us(e)) for s, e in busy]
        return free_slots_us(to_us(start), length, merged, windows, n, to_us(until) - to_us(start), step)

    busy: list[tuple] = []
    start = earliest
    limit = policy.calendar.max_concurrent.get(environment)
    if limit:
        # The environment alone first: on a full calendar (production against max_concurrent = 1) it leaves
        # no slot, and nothing else need be read. Otherwise the others can only take slots away, so they
        # are read from its first slot on (every earlier start is already taken).
        env_rows = run(_BUSY_ENVIRONMENT, earliest, MAX_RELEASE, env=environment)
        # One at a time: each window is busy as it is; more: where `limit` of them overlap.
        busy = merge(env_rows if limit == 1 else _saturated(env_rows, limit))
        first = search(busy, earliest, 1)
        if not first:
            return []
        start = from_us(first[0])
    # The blackouts that apply are few (hundreds at most); their occurrences are many.
    ids = [i for i, services, envs in scan.rows_as_stored(session, _LIVE_BLACKOUTS, {})
           if _in_scope(services, service) and _in_scope(envs, environment)]
    busy += run(_BUSY_OCCURRENCES, start, MAX_OCCURRENCE, ids=ids) if ids else []
    busy += run(_BUSY_SERVICE, start, MAX_RELEASE, service=service)
    found = search(merge(busy), start, count)
    return [from_us(t) for t in found]


def _in_scope(stored: str, name: str) -> bool:
    """A blackout's stored scope (a JSON list as text) covers `name`: an empty list covers all."""
    return stored == "[]" or not (names := json.loads(stored)) or name in names


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


def open_flags(session: Session, release_id: int) -> list[ReleaseFlag]:
    return list(session.scalars(select(ReleaseFlag).where(ReleaseFlag.release_id == release_id,
                                                          ReleaseFlag.cleared_at.is_(None)).order_by(ReleaseFlag.id)))


def blocking(flags: list[ReleaseFlag]) -> list[ReleaseFlag]:
    return [f for f in flags if f.overridden_at is None]


def record_flags(session: Session, release: Release, flags: list[Flag], now: datetime,
                 keep_overrides: bool = False) -> list[ReleaseFlag]:
    """Replace the release's open flags with these. A new window is judged afresh
    and an override given for the old window does not carry over; when the
    window did not move (keep_overrides), an override of the same finding stands.

    A blackout flag is the exception (QMS 5.1): while the window still falls in
    that blackout, the flag stays as it is, and so does an executive's override
    of it; only a window that passes the blackout check clears it."""
    overrides, kept_rows = {}, []
    still_in = {f.ref for f in flags if f.kind == "blackout"}
    for old in open_flags(session, release.id):
        if old.kind == "blackout" and old.ref in still_in:
            kept_rows.append(old)
            continue
        old.cleared_at = now
        if keep_overrides and old.overridden_at:
            overrides[(old.kind, old.ref)] = old
    rows = []
    for f in flags:
        held = next((r for r in kept_rows if f.kind == "blackout" and r.ref == f.ref), None)
        if held is not None:
            held.detail = f.detail  # another occurrence of the same blackout, or the same one
            rows.append(held)
            continue
        row = ReleaseFlag(release_id=release.id, kind=f.kind, detail=f.detail, ref=f.ref, raised_at=now)
        kept = overrides.get((f.kind, f.ref))
        if kept:
            row.overridden_by, row.override_reason, row.overridden_at = (kept.overridden_by, kept.override_reason,
                                                                         kept.overridden_at)
        rows.append(row)
    session.add_all(rows)
    session.flush()
    return rows


def blackouts_not_overridden(session: Session, release: Release) -> list[BlackoutHit]:
    """Blackouts covering the release's window (service and environment) that no
    standing executive override of its blackout flag allows (the deployment gate)."""
    allowed = {f.ref for f in open_flags(session, release.id) if f.kind == "blackout" and f.overridden_at}
    out, seen = [], set()
    for hit in blackouts_over(session, release.start_at, release.end_at, release.service, release.environment):
        ref = f"blackout:{hit.blackout_id}"
        if ref not in allowed and ref not in seen:
            seen.add(ref)
            out.append(hit)
    return out
