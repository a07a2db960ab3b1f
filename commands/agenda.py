"""The release calendar as people read it: an agenda in Slack and an ICS feed."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Mapping

from sqlalchemy import and_, bindparam, func, or_, select, true
from sqlalchemy.engine import Engine

from calendars.ics import FeedEvent
from calendars.recurrence import local_to_utc, parse_rrule
from calendars.timeparse import TimeInputError, zone
from commands.errors import InputError
from commands.planning import MAX_OCCURRENCE, MAX_RELEASE
from commands.states import CANCELLED
from storage.db import read
from storage.models import Blackout, BlackoutOccurrence, CalendarSubscription, Release

# The feed's default horizon (policy [calendar] feed_past / feed_ahead): what ended longer ago, or starts
# later, is left out, so an old install's feed does not grow with its history.
FEED_PAST = timedelta(days=90)
FEED_AHEAD = timedelta(days=365)

@dataclass(frozen=True)
class Item:
    start: datetime
    end: datetime
    kind: str  # release | blackout
    release: Release | None = None
    name: str = ""
    blackout_id: int | None = None


def agenda(db: Engine, now: datetime, days: int = 14, service: str | None = None) -> list[Item]:
    if not 1 <= days <= 92:
        raise InputError("days must be from 1 to 92", field="days", form="/release calendar [days=14] [service=…]")
    end = now + timedelta(days=days)
    with read(db) as session:
        q = (select(Release).where(Release.start_at > now - MAX_RELEASE, Release.start_at < end, Release.end_at > now,
                                   Release.state != CANCELLED).order_by(Release.start_at))
        if service:
            q = q.where(Release.service == service)
        items = [Item(r.start_at, r.end_at, "release", release=r) for r in session.scalars(q)]
        occ = session.execute(select(BlackoutOccurrence, Blackout)
                              .join(Blackout, Blackout.id == BlackoutOccurrence.blackout_id)
                              .where(BlackoutOccurrence.start_at > now - MAX_OCCURRENCE,
                                     BlackoutOccurrence.start_at < end, BlackoutOccurrence.end_at > now,
                                     Blackout.removed_at.is_(None))).all()
        items += [Item(o.start_at, o.end_at, "blackout", name=o.summary or b.name, blackout_id=b.id)
                  for o, b in occ if not service or not b.services or service in b.services]
    return sorted(items, key=lambda i: (i.start, i.kind))


@dataclass(frozen=True)
class FeedContext:
    """What the feed says that the database does not know, passed in so rendering stays a function of its
    inputs: the host that makes UIDs globally unique, the workspace's address for thread links, people's
    names, and how long a removed blackout stays in the feed as CANCELLED."""
    host: str = "releasebot"
    workspace_url: str | None = None  # https://<workspace>.slack.com/
    names: Mapping[str, str] = field(default_factory=dict)  # Slack user id -> name
    keep_cancelled: timedelta = timedelta(days=30)
    past: timedelta = FEED_PAST  # the horizon: events that ended before now - past or start after now + ahead
    ahead: timedelta = FEED_AHEAD  # are left out


def feed_people(db: Engine, now: datetime, service: str | None = None, past: timedelta = FEED_PAST,
                ahead: timedelta = FEED_AHEAD) -> set[str]:
    """The people the feed for (now, service) names: whose names it needs."""
    with read(db) as session:
        return set(session.scalars(_feed_releases(bool(service), Release.requester_id).distinct(),
                                   _horizon(now, past, ahead, service)))


# The columns a release's feed event is made of: rows, not ORM objects (building 10,000 Release objects
# was most of feed_events' time).
_RELEASE_COLUMNS = (Release.id, Release.service, Release.version, Release.effective_type, Release.state,
                    Release.summary, Release.environment, Release.requester_id, Release.channel_id,
                    Release.message_ts, Release.start_at, Release.end_at, Release.tz, Release.revision,
                    Release.updated_at)


def _horizon(now: datetime, past: timedelta, ahead: timedelta, service: str | None = None) -> dict:
    """The values of the horizon's bounds in _feed_releases and _feed_blackouts (and the service): the
    statements are built once, with parameters, since building them cost a warm 304 more than the query."""
    return {"feed_first_start": now - past - MAX_RELEASE, "feed_from": now - past, "feed_to": now + ahead,
            "feed_local_from": (now - past - timedelta(days=1)).replace(tzinfo=None),
            "feed_local_to": (now + ahead + timedelta(days=1)).replace(tzinfo=None), "feed_service": service}


def _feed_releases(by_service: bool, *columns):
    """Releases overlapping the horizon (of the service, if by_service); the start's lower bound (the
    longest window before it) keeps it an index range."""
    q = select(*columns).where(Release.start_at > bindparam("feed_first_start"),
                               Release.end_at > bindparam("feed_from"), Release.start_at < bindparam("feed_to"))
    return q.where(Release.service == bindparam("feed_service")) if by_service else q


def _feed_blackouts(*columns):
    """Blackouts that may have an occurrence in the horizon, a day's margin either side for their local
    times (a zone is at most 14 hours from UTC); _in_horizon then decides exactly. A subscribed calendar's
    blackout is kept: its occurrences are bounded instead."""
    return select(*columns).where(or_(Blackout.subscription_id.is_not(None),
                                      and_(Blackout.start_local < bindparam("feed_local_to"),
                                           or_(Blackout.rrule.is_not(None),
                                               Blackout.end_local > bindparam("feed_local_from")))))


def _in_horizon(b: Blackout, lo: datetime, hi: datetime) -> bool:
    """A one-off blackout overlaps [lo, hi) (UTC); a recurring one has an occurrence that does."""
    first = local_to_utc(b.start_local, b.tz)
    length = local_to_utc(b.end_local, b.tz) - first
    if not b.rrule:
        return first < hi and first + length > lo
    try:
        rule = parse_rrule(b.rrule, b.start_local, b.tz)
    except TimeInputError:
        return True  # stored before today's checks: shown, as it always was
    since = (lo - length).astimezone(zone(b.tz)).replace(tzinfo=None) - timedelta(days=1)
    for local in rule.xafter(since, inc=True):
        start = local_to_utc(local, b.tz)
        if start >= hi:
            return False
        if start + length > lo:
            return True
    return False


def _visible(b: Blackout, now: datetime, keep: timedelta) -> bool:
    """A removed blackout is shown CANCELLED for `keep` after its removal, so a client that fetches now
    and then sees it cancelled rather than silently gone; then it leaves the feed."""
    return b.removed_at is None or b.removed_at > now - keep


def feed_events(db: Engine, now: datetime, service: str | None = None,
                context: FeedContext = FeedContext()) -> list[FeedEvent]:
    """Releases and blackouts in the horizon as feed events. UIDs never change; SEQUENCE is the row's
    revision."""
    out: list[FeedEvent] = []
    host, past, ahead = context.host, context.past, context.ahead
    lo, hi = now - past, now + ahead
    horizon = _horizon(now, past, ahead, service)
    with read(db) as session:
        zones: dict[str, object] = {}
        for r in session.execute(_feed_releases(bool(service), *_RELEASE_COLUMNS).order_by(Release.id), horizon):
            z = zones.get(r.tz) or zones.setdefault(r.tz, zone(r.tz))
            out.append(FeedEvent(
                uid=f"release-{r.id}@{host}", summary=f"REL-{r.id} {r.service} {r.version} ({r.effective_type}, "
                                                     f"{r.state})",
                description=_release_description(r, context),
                start_local=r.start_at.astimezone(z).replace(tzinfo=None),
                end_local=r.end_at.astimezone(z).replace(tzinfo=None), tz=r.tz, sequence=r.revision,
                stamp=r.updated_at, cancelled=r.state == CANCELLED, categories=("release", r.environment)))
        for b in session.scalars(_feed_blackouts(Blackout).order_by(Blackout.id), horizon):
            if service and b.services and service not in b.services:
                continue
            if not _visible(b, now, context.keep_cancelled):
                continue
            removed = b.removed_at is not None
            if b.subscription_id is None:
                if _in_horizon(b, lo, hi):
                    out.append(FeedEvent(uid=f"blackout-{b.id}@{host}", summary=f"Blackout: {b.name}",
                                         description=_scope(b), start_local=b.start_local, end_local=b.end_local,
                                         tz=b.tz, sequence=b.revision, stamp=b.removed_at or b.created_at,
                                         cancelled=removed, rrule=b.rrule, categories=("blackout",)))
                continue
            if removed:
                continue  # its occurrences were deleted with it: nothing is left to show cancelled
            # A subscribed calendar's events are republished one by one, as the bot expanded them.
            z = zone(b.tz)
            for o in session.scalars(select(BlackoutOccurrence).where(BlackoutOccurrence.blackout_id == b.id,
                                                                      BlackoutOccurrence.end_at > lo,
                                                                      BlackoutOccurrence.start_at < hi)
                                     .order_by(BlackoutOccurrence.start_at)):
                out.append(FeedEvent(uid=f"blackout-{b.id}-{int(o.start_at.timestamp())}@{host}",
                                     summary=f"Blackout: {o.summary or b.name}", description=_scope(b),
                                     start_local=o.start_at.astimezone(z).replace(tzinfo=None),
                                     end_local=o.end_at.astimezone(z).replace(tzinfo=None), tz=b.tz, sequence=0,
                                     stamp=b.created_at, categories=("blackout",)))
    return out


def thread_link(workspace_url: str | None, channel: str | None, ts: str | None) -> str | None:
    """The approval message's permalink, as Slack writes them: /archives/<channel>/p<ts without the dot>."""
    if not (workspace_url and channel and ts):
        return None
    return f"{workspace_url.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}"


def _release_description(r, context: FeedContext) -> str:  # r: a row of _RELEASE_COLUMNS
    lines = [r.summary, f"Environment: {r.environment}",
             f"Requested by {context.names.get(r.requester_id) or r.requester_id}"]
    link = thread_link(context.workspace_url, r.channel_id, r.message_ts)
    if link:
        lines.append(f"Slack thread: {link}")
    return "\n".join(lines)


@dataclass(frozen=True)
class FeedRevision:
    """What the feed for (now, service) is made of, in a few aggregates: equal fingerprints, equal feeds."""
    fingerprint: tuple
    last_modified: datetime  # the newest change to anything in it, or `now` (the window moved then)


def feed_revision(db: Engine, now: datetime, service: str | None = None,
                  keep_cancelled: timedelta = timedelta(days=30), past: timedelta = FEED_PAST,
                  ahead: timedelta = FEED_AHEAD) -> FeedRevision:
    """One query of aggregates, on indexed columns, over what feed_events reads with the same horizon:
    releases in it (every change bumps revision; the approval message's ts, which makes the thread link,
    is set after the release: a first post counts one more, a re-post after a deletion gets a ts later
    than any before it), blackouts (added, removed, revision, and how many are still shown: a removed one
    leaves the feed `keep_cancelled` after its removal, a moment no write marks), subscriptions (each good
    fetch) and the stored occurrences of subscribed calendars (re-expanded as their horizon rolls; ids
    never come back on PostgreSQL, and count and first/last start tell a re-expansion apart on SQLite).
    What is decided in Python from these rows (a rule's occurrences, a zone's offset) is a function of
    them and of `now`, which the fingerprint holds."""
    with read(db) as session:  # a feed poll never waits for (or takes) the write lock
        r = tuple(session.execute(_revision_query(bool(service)),
                                  {**_horizon(now, past, ahead, service),
                                   "feed_removed_after": now - keep_cancelled}).one())
    # in the order the fingerprint has always had (the shown count last)
    row = (*r[0:3], *r[5:9], r[9], *r[10:15], *r[3:5], r[15])
    stamps = [v for v in (row[1], row[4], row[5], row[7]) if isinstance(v, datetime)]
    fingerprint = (now.isoformat(), service or "", str(past), str(ahead)) + tuple(str(v) for v in row)
    return FeedRevision(fingerprint, max([now, *stamps]))


@lru_cache(maxsize=2)
def _revision_query(by_service: bool):
    """feed_revision's one query, for a service's feed or for all (the bounds are parameters)."""
    in_window = _feed_releases(by_service, Release)
    blackouts = _feed_blackouts(Blackout)
    subscribed = (select(BlackoutOccurrence).join(Blackout, Blackout.id == BlackoutOccurrence.blackout_id)
                  .where(Blackout.subscription_id.is_not(None), BlackoutOccurrence.end_at > bindparam("feed_from"),
                         BlackoutOccurrence.start_at < bindparam("feed_to")))
    shown = blackouts.where(or_(Blackout.removed_at.is_(None), Blackout.removed_at > bindparam("feed_removed_after")))

    def agg(q, *cols):  # one pass over q for all its aggregates (a scalar subquery each scanned it again)
        return q.with_only_columns(*cols).subquery()

    parts = [agg(in_window, func.count(Release.id), func.max(Release.updated_at), func.sum(Release.revision),
                 func.count(Release.message_ts), func.max(Release.message_ts)),
             agg(blackouts, func.count(Blackout.id), func.max(Blackout.created_at), func.max(Blackout.removed_at),
                 func.sum(Blackout.revision)),
             agg(select(CalendarSubscription), func.max(CalendarSubscription.last_ok_at)),
             agg(subscribed, func.count(BlackoutOccurrence.id), func.min(BlackoutOccurrence.id),
                 func.max(BlackoutOccurrence.id), func.min(BlackoutOccurrence.start_at),
                 func.max(BlackoutOccurrence.start_at)),
             agg(shown, func.count(Blackout.id))]
    joined = parts[0]
    for part in parts[1:]:  # one row each: joined on nothing, said so (not an accidental cartesian product)
        joined = joined.join(part, true())
    return select(*[c for part in parts for c in part.c]).select_from(joined)


def _scope(b: Blackout) -> str:
    return (f"Services: {', '.join(b.services) or 'all'}\nEnvironments: {', '.join(b.environments) or 'all'}"
            + (f"\nRepeats: {b.rrule}" if b.rrule else ""))
