"""Blackout (freeze) periods: managed by release managers, expanded into
occurrences for fast checks, and announced before each occurrence starts."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from calendars import ics
from calendars.netpolicy import AddressRefused, NetPolicy
from calendars.recurrence import Occurrence, expand, parse_rrule
from calendars.timeparse import START_FORM, UTC, TimeInputError, parse_start, zone
from commands import announce, replan
from commands.errors import FieldErrors, InputError, NotFound, Refused, required_reason
from commands.outcome import Actor, Outcome
from commands.clock import Clock
from commands.planning import MAX_OCCURRENCE
from commands.policy import Policy
from commands.request import AHEAD_TEXT, MAX_AHEAD
from commands.text import MAX_ID, when
from storage import audit, outbox
from storage.db import read, transaction
from storage.models import Blackout, BlackoutOccurrence, CalendarSubscription

HORIZON = timedelta(days=400)  # occurrences kept ahead; the scheduler's refresh rolls it forward
WARN_AHEAD = timedelta(days=8)  # warnings are queued this far ahead of their due time
MAX_WARNINGS = 20  # per blackout and refresh: a dense calendar warns about its first freezes, not all of them
INSERT_BATCH = 1000  # occurrence rows per INSERT, so no statement grows with a calendar
# No fixed dates in the examples (they would soon be in the past): starts people may type any day.
FORM = ('/release blackout add name="Peak trading" start="in 7 days" end="in 21 days" tz=Europe/London '
        '[services=a,b] [environments=production] [repeat="FREQ=WEEKLY;BYDAY=FR"]')
SUBSCRIBE_FORM = '/release blackout subscribe url=https://… name="Company holidays" [tz=Europe/London] [services=…]'
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
_MANAGER = "release_manager"
_EXECUTIVE = "executive"  # QMS 5.1: a blackout that covers a live release is lifted only with VP-level approval
REMOVE_FORM = '/release blackout remove 3 [reason="…"]'


@dataclass(frozen=True)
class BlackoutInput:
    name: str
    start_local: datetime
    end_local: datetime
    tz: str
    rrule: str | None
    services: list[str]
    environments: list[str]


def _names(text: str, field: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    for n in names:
        if not _NAME.match(n) or (allowed is not None and n not in allowed):
            hint = f"; environments are {', '.join(allowed)}" if allowed else ""
            raise FieldErrors({field: f"'{n}' is not a valid name{hint}"})
    return names


def parse_blackout(raw: Mapping[str, str], policy: Policy, now: datetime, locale: str | None = None) -> BlackoutInput:
    get = lambda k: (raw.get(k) or "").strip()  # noqa: E731
    errors = {k: "is required" for k in ("name", "start", "end", "tz") if not get(k)}
    if errors:
        raise FieldErrors(errors)
    try:
        zone(get("tz"))
    except TimeInputError as exc:
        raise FieldErrors({"tz": str(exc)}) from None
    parsed = {}
    for key in ("start", "end"):
        try:  # a wall clock in tz; expansion deals with times a DST change skips
            parsed[key] = datetime.strptime(get(key).replace("T", " "), "%Y-%m-%d %H:%M")
        except ValueError:
            try:  # what people type ("dec 24 18:00", "friday 16:00"), read like a release's start
                parsed[key] = parse_start(get(key), get("tz"), now, locale).local
            except TimeInputError as exc:
                raise FieldErrors({key: str(exc) if "start I can read" not in str(exc) else
                                   f"'{get(key)}' is not a date and time like \"YYYY-MM-DD HH:MM\"; "
                                   f"use {START_FORM}"}) from None
    if parsed["end"] <= parsed["start"]:
        raise FieldErrors({"end": "must be after start"})
    # Wall-clock times against UTC now: hours off at most, nothing next to two years.
    naive_now = now.astimezone(UTC).replace(tzinfo=None)
    if abs(parsed["start"] - naive_now) > MAX_AHEAD:
        raise FieldErrors({"start": f"a blackout starts {AHEAD_TEXT} (between "
                                    f"{when(now - MAX_AHEAD, show='d')} and {when(now + MAX_AHEAD, show='d')})"})
    if parsed["end"] - parsed["start"] > MAX_AHEAD:
        raise FieldErrors({"end": "a blackout lasts at most two years; add another for the rest"})
    rrule = get("repeat") or None
    if rrule:
        try:
            parse_rrule(rrule, parsed["start"])
        except TimeInputError as exc:
            raise FieldErrors({"repeat": str(exc)}) from None
    if len(get("name")) > 200:
        raise FieldErrors({"name": "at most 200 characters"})
    return BlackoutInput(get("name"), parsed["start"], parsed["end"], get("tz"), rrule,
                         _names(get("services"), "services"),
                         _names(get("environments"), "environments", policy.environments))


_NOT_MANAGER = "Only a release manager can manage blackouts."


def _refuse(session: Session, actor: Actor, action: str, exc: Refused, now: datetime, **detail) -> Outcome:
    """Say no and audit it. A blackout belongs to no release, so the event has none."""
    audit.record(session, actor=actor.user_id, action=f"{action}_refused", at=now,
                 after={"code": exc.code, **detail}, reason=exc.message)
    return Outcome(exc.message, refused=True, data={"code": exc.code})


def _refused(db: Engine, actor: Actor, action: str, exc: Refused, now: datetime, **detail) -> Outcome:
    with transaction(db) as session:
        return _refuse(session, actor, action, exc, now, **detail)


def add_blackout(db: Engine, actor: Actor, raw: Mapping[str, str], clock: Clock, policy: Policy,
                 locale: str | None = None) -> Outcome:
    """locale: the manager's Slack locale, for a start or end like "12/03"."""
    now = clock.now()
    try:
        actor.require((_MANAGER,), _NOT_MANAGER)
    except Refused as exc:
        return _refused(db, actor, "blackout_add", exc, now)
    try:
        b = parse_blackout(raw, policy, now, locale)
    except FieldErrors as exc:
        raise InputError(f"{exc.field}: {exc.errors[exc.field]}", field=exc.field, form=FORM) from None
    with transaction(db) as session:
        same = _same_blackout(session, b)
        if same is not None:
            # The same blackout again: a second run of one delivery (its worker died before marking it
            # done), a double submit, or a repeat that would add nothing. It stands once.
            return Outcome(f"Blackout {same.id} '{b.name}' already exists with these times and scope; nothing "
                           "changed.", data={"blackout": same.id})
        row = Blackout(name=b.name, start_local=b.start_local, end_local=b.end_local, tz=b.tz, rrule=b.rrule,
                       services=b.services, environments=b.environments, created_by=actor.user_id, created_at=now)
        session.add(row)
        session.flush()
        try:
            count = materialize(session, row, now, policy)
        except TimeInputError as exc:
            raise InputError(str(exc), field="end", form=FORM) from None
        audit.record(session, actor=actor.user_id, action="blackout_added", at=now,
                     after={"blackout": row.id, "name": b.name, "start": b.start_local, "end": b.end_local,
                            "tz": b.tz, "repeat": b.rrule, "services": b.services,
                            "environments": b.environments, "occurrences": count})
        flagged = replan.blackout_changed(session, row.id, actor.user_id, now, may_clear=False)
    upcoming = occurrences_of(db, row.id, now, limit=1)
    # Said back by the bot (data["window"], bot.messages.common.window_echo): a one-off blackout whole (its
    # stored occurrences are split into chunks), a repeating one's next occurrence.
    window = {}
    if upcoming:
        first = upcoming[0] if b.rrule else Occurrence(*(t.replace(tzinfo=zone(b.tz)).astimezone(UTC)
                                                         for t in (b.start_local, b.end_local)))
        window = {"window": (first.start, first.end, b.tz)}
    msg = f"Blackout {row.id} '{b.name}' added."
    if flagged:
        msg += f" It covers {', '.join(flagged)}: each is flagged and cannot be approved until it moves or an " \
               "executive overrides the flag."
    return Outcome(msg, changed=True, data={"blackout": row.id, **window, **({"flagged": flagged} if flagged else {})})


def remove_blackout(db: Engine, actor: Actor, blackout_id: int, clock: Clock, reason: str | None = None) -> Outcome:
    """Lift a blackout. One that covers a live release is lifted only by an executive, in writing
    (QMS 5.1): otherwise removing it and nudging the window would clear the flag with no VP."""
    now = clock.now()
    if not 0 < blackout_id <= MAX_ID:  # names nothing, and would overflow the id column: nothing is written
        raise NotFound(f"there is no blackout {blackout_id}; /release blackout list shows them")
    try:
        actor.require((_MANAGER, _EXECUTIVE), _NOT_MANAGER)
    except Refused as exc:
        return _refused(db, actor, "blackout_remove", exc, now, blackout=blackout_id)
    with transaction(db) as session:
        row = session.get(Blackout, blackout_id, with_for_update=True)  # two removals at once: one wins
        if row is None or row.removed_at is not None:
            raise NotFound(f"there is no blackout {blackout_id}; /release blackout list shows them")
        covered = replan.covered_releases(session, row.id)
        refs = [r.ref for r in covered]
        if covered:
            try:
                actor.require((_EXECUTIVE,), f"Blackout {row.id} '{row.name}' covers {', '.join(refs)}; lifting it "
                                             f"needs the {_EXECUTIVE} role, with a reason (QMS 5.1: VP-level "
                                             "approval).", "covers_live_releases")
            except Refused as exc:
                return _refuse(session, actor, "blackout_remove", exc, now, blackout=blackout_id, releases=refs,
                               role=_EXECUTIVE)
            reason = required_reason(reason, f"lifting a blackout that covers {', '.join(refs)} needs a written "
                                             "reason (the business justification)", REMOVE_FORM)
        row.removed_at, row.removed_by = now, actor.user_id
        row.revision += 1
        if row.subscription_id:
            sub = session.get(CalendarSubscription, row.subscription_id)
            sub.removed_at = now
        session.execute(delete(BlackoutOccurrence).where(BlackoutOccurrence.blackout_id == row.id))
        audit.record(session, actor=actor.user_id, action="blackout_removed", at=now,
                     before={"blackout": row.id, "name": row.name}, reason=(reason or "").strip() or None,
                     **({"after": {"releases": refs}} if refs else {}))
        cleared = replan.blackout_changed(session, row.id, actor.user_id, now, may_clear=True, releases=covered,
                                          reason=reason)
    msg = f"Blackout {blackout_id} '{row.name}' removed."
    if cleared:
        msg += f" Its flag is cleared on {', '.join(cleared)}."
    return Outcome(msg, changed=True, data={"cleared": cleared})


def list_blackouts(db: Engine, now: datetime) -> list[tuple[Blackout, list[Occurrence]]]:
    with read(db) as session:
        rows = list(session.scalars(select(Blackout).where(Blackout.removed_at.is_(None)).order_by(Blackout.id)))
    return [(b, occurrences_of(db, b.id, now, limit=2)) for b in rows]


def occurrences_of(db: Engine, blackout_id: int, after: datetime, limit: int = 3) -> list[Occurrence]:
    with read(db) as session:
        rows = session.scalars(select(BlackoutOccurrence)
                               .where(BlackoutOccurrence.blackout_id == blackout_id,
                                      BlackoutOccurrence.end_at > after)
                               .order_by(BlackoutOccurrence.start_at).limit(limit))
        return [Occurrence(o.start_at, o.end_at) for o in rows]


def _pieces(occ: Occurrence) -> list[Occurrence]:
    """Split anything longer than MAX_OCCURRENCE so range queries stay bounded."""
    out, start = [], occ.start
    while start < occ.end:
        end = min(start + MAX_OCCURRENCE, occ.end)
        out.append(Occurrence(start, end))
        start = end
    return out


def materialize(session: Session, blackout: Blackout, now: datetime, policy: Policy,
                occurrences: list[tuple[Occurrence, str | None]] | None = None) -> int:
    """Replace the blackout's stored occurrences with those from (now - MAX_OCCURRENCE) to now + HORIZON,
    and queue the warning for each one starting soon. Keys make re-running harmless."""
    if occurrences is None:
        occurrences = [(o, None) for o in expand(blackout.start_local, blackout.end_local, blackout.tz,
                                                  blackout.rrule, now - MAX_OCCURRENCE, now + HORIZON)]
    session.execute(delete(BlackoutOccurrence).where(BlackoutOccurrence.blackout_id == blackout.id))
    rows = [{"blackout_id": blackout.id, "start_at": p.start, "end_at": p.end, "summary": summary,
             "occurrence_start": occ.start, "occurrence_end": occ.end}
            for occ, summary in occurrences for p in _pieces(occ)]
    for i in range(0, len(rows), INSERT_BATCH):
        session.execute(insert(BlackoutOccurrence), rows[i:i + INSERT_BATCH])
    lead = policy.calendar.blackout_warning_lead
    for occ, summary in _to_warn(occurrences, now, lead):
        key = f"blackout-warning:{blackout.id}:{occ.start.isoformat()}"
        if summary:
            key += f":{_short_hash(summary)}"
        outbox.enqueue(session, key=key, kind=announce.REMINDER, at=now, due_at=max(occ.start - lead, now),
                       payload={"reminder": "blackout_warning", "blackout": blackout.id,
                                "start": occ.start.isoformat(), "end": occ.end.isoformat(),
                                "summary": summary or blackout.name})
    return len(occurrences)


def _to_warn(occurrences: list[tuple[Occurrence, str | None]], now: datetime,
             lead: timedelta) -> list[tuple[Occurrence, str | None]]:
    """The warnings owed soon: back-to-back occurrences of one name are one freeze (a minutely feed is one
    warning, not hundreds), and at most MAX_WARNINGS a blackout, the earliest, so no calendar floods the channel."""
    soon = sorted(((o, n) for o, n in occurrences if now < o.start and o.start - lead < now + WARN_AHEAD),
                  key=lambda x: x[0].start)
    merged: list[tuple[Occurrence, str | None]] = []
    for occ, name in soon:
        if merged and merged[-1][1] == name and occ.start <= merged[-1][0].end:
            last = merged[-1][0]
            merged[-1] = (Occurrence(last.start, max(last.end, occ.end)), name)
        else:
            merged.append((occ, name))
    return merged[:MAX_WARNINGS]


def _short_hash(text: str) -> str:
    # two events of a subscribed calendar may start together; each gets its warning
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def refresh_all(db: Engine, now: datetime, policy: Policy) -> int:
    """Roll every blackout's horizon forward and queue warnings coming due (a scheduler job)."""
    with transaction(db) as session:
        rows = list(session.scalars(select(Blackout).where(Blackout.removed_at.is_(None),
                                                           Blackout.subscription_id.is_(None))))
        for b in rows:
            materialize(session, b, now, policy)
            # the horizon rolled forward: an occurrence new to the store may cover a release planned far ahead
            replan.blackout_changed(session, b.id, replan.SYSTEM, now, may_clear=False)
        subs = list(session.scalars(select(CalendarSubscription).where(CalendarSubscription.removed_at.is_(None),
                                                                       CalendarSubscription.body.is_not(None))))
    for sub in subs:
        try:
            _apply_body(db, sub.id, sub.body, now, policy)
        except ics.CalendarError:
            pass  # a copy that no longer expands keeps the occurrences it last gave
    return len(rows) + len(subs)


def _same_blackout(session, b) -> Blackout | None:
    """A live, hand-made blackout with exactly these times, rule and scope."""
    candidates = session.scalars(select(Blackout).where(
        Blackout.name == b.name, Blackout.start_local == b.start_local, Blackout.end_local == b.end_local,
        Blackout.tz == b.tz, Blackout.removed_at.is_(None), Blackout.subscription_id.is_(None)))
    return next((c for c in candidates if (c.rrule or None) == (b.rrule or None)
                 and sorted(c.services or []) == sorted(b.services or [])
                 and sorted(c.environments or []) == sorted(b.environments or [])), None)


# --- subscribed calendars ---------------------------------------------------------------------------------------

def subscribe(db: Engine, actor: Actor, raw: Mapping[str, str], clock: Clock, policy: Policy,
              net: NetPolicy | None = None) -> Outcome:
    """`net`: the address policy (bot/config.py builds it from RELEASEBOT_CALENDAR_ALLOW); by default
    public addresses only."""
    try:
        actor.require((_MANAGER,), _NOT_MANAGER)
    except Refused as exc:
        return _refused(db, actor, "calendar_subscribe", exc, clock.now())
    url, name, tz = (raw.get("url") or "").strip(), (raw.get("name") or "").strip(), (raw.get("tz") or "UTC").strip()
    if not re.match(r"^https?://\S+$", url):
        raise InputError("url must be an http(s) address of an .ics calendar", field="url", form=SUBSCRIBE_FORM)
    try:
        (net or NetPolicy.build()).check_subscription(url)  # checked again at every fetch and redirect
    except AddressRefused as exc:
        raise InputError(f"url: {exc}; a calendar is fetched from public addresses, or internal ones the "
                         "operators list in RELEASEBOT_CALENDAR_ALLOW", field="url", form=SUBSCRIBE_FORM) from None
    if not name:
        raise InputError("name is required", field="name", form=SUBSCRIBE_FORM)
    try:
        zone(tz)
        services = _names(raw.get("services", ""), "services")
        environments = _names(raw.get("environments", ""), "environments", policy.environments)
    except TimeInputError as exc:
        raise InputError(str(exc), field="tz", form=SUBSCRIBE_FORM) from None
    except FieldErrors as exc:
        raise InputError(f"{exc.field}: {exc.errors[exc.field]}", field=exc.field, form=SUBSCRIBE_FORM) from None
    now = clock.now()
    with transaction(db) as session:
        same = session.scalars(select(CalendarSubscription).where(
            CalendarSubscription.url == url, CalendarSubscription.name == name,
            CalendarSubscription.removed_at.is_(None))).first()
        if same is not None:  # a second run of one delivery, or a repeat: one subscription
            return Outcome(f"You are already subscribed to '{name}' at that address; nothing changed.",
                           data={"subscription": same.id})
        sub = CalendarSubscription(name=name, url=url, services=services, environments=environments,
                                   created_by=actor.user_id, created_at=now)
        session.add(sub)
        session.flush()
        # All-day events in the feed are read in this zone; the carrier blackout holds the scope.
        carrier = Blackout(name=name, start_local=datetime(2000, 1, 1), end_local=datetime(2000, 1, 2), tz=tz,
                           services=services, environments=environments, subscription_id=sub.id,
                           created_by=actor.user_id, created_at=now)
        session.add(carrier)
        session.flush()
        audit.record(session, actor=actor.user_id, action="calendar_subscribed", at=now,
                     after={"subscription": sub.id, "blackout": carrier.id, "name": name, "url": url, "tz": tz})
    return Outcome(f"Subscribed to '{name}' as blackout {carrier.id}; its events become blackouts once fetched "
                   "(now, then every few hours).", changed=True, data={"subscription": sub.id})


def due_subscriptions(db: Engine) -> list[CalendarSubscription]:
    with read(db) as session:
        return list(session.scalars(select(CalendarSubscription).where(CalendarSubscription.removed_at.is_(None))))


def fetched(db: Engine, sub_id: int, now: datetime, policy: Policy, *, body: str | None, etag: str | None,
            last_modified: str | None) -> int:
    """A fetch succeeded (body None: 304 Not Modified). Expand before keeping: a feed
    that does not expand is a failure, and the last good copy stays."""
    expansion = _expand(db, sub_id, body, now) if body is not None else None  # raises ics.CalendarError
    with transaction(db) as session:
        sub = session.get(CalendarSubscription, sub_id)
        sub.fetched_at = sub.last_ok_at = now
        sub.last_error, sub.failing_since = None, None
        if body is not None:
            sub.body, sub.etag, sub.last_modified = body, etag, last_modified
    return _apply_body(db, sub_id, body, now, policy, expansion) if body is not None else 0


CUT_SHORT = ("cut short: it makes more occurrences than the bot keeps (at most {limit}, up to {days} days ahead); "
             "the rest are not blackouts")


def _expand(db: Engine, sub_id: int, body: str, now: datetime) -> ics.Expansion:
    """Outside any write transaction: a big calendar must not hold locks while it is expanded."""
    with read(db) as session:
        tz = session.scalars(select(Blackout.tz).where(Blackout.subscription_id == sub_id)).one()
    return ics.expand_calendar(body, now - MAX_OCCURRENCE, now + HORIZON, tz)


def _apply_body(db: Engine, sub_id: int, body: str, now: datetime, policy: Policy,
                expansion: ics.Expansion | None = None) -> int:
    expansion = expansion or _expand(db, sub_id, body, now)
    with transaction(db) as session:
        carrier = session.scalars(select(Blackout).where(Blackout.subscription_id == sub_id)).one()
        sub = session.get(CalendarSubscription, sub_id)
        if sub.failing_since is None:  # a failure's category stays until the next good fetch
            sub.last_error = CUT_SHORT.format(limit=ics.MAX_OCCURRENCES, days=HORIZON.days) \
                if expansion.cut_short else None
        if expansion.cut_short:  # said once per subscription: the key makes a repeat a no-op
            outbox.enqueue(session, key=f"subscription-cut-short:{sub_id}", kind=announce.CHANNEL_NOTE, at=now,
                           payload={"event": "subscription_cut_short", "name": sub.name,
                                    "limit": ics.MAX_OCCURRENCES, "days": HORIZON.days})
        events = [(Occurrence(e.start, e.end), e.summary) for e in expansion.events]
        # Events added or moved flag what they now cover. An event moved or cut off a flagged release
        # is kept over it: shortening a blackout that covers a live release needs an executive (QMS 5.1).
        held, holding = replan.held_occurrences(session, carrier, events)
        materialize(session, carrier, now, policy, occurrences=events + held)
        who = f"{replan.SYSTEM} (calendar {carrier.name})"[:200]
        replan.blackout_changed(session, carrier.id, who, now, may_clear=False)
        replan.announce_held(session, carrier, holding, who, now)
        return len(events)


def subscription_status(db: Engine) -> dict[int, str]:
    """Carrier blackout id -> what people should know about its calendar (failing, cut short)."""
    with read(db) as session:
        rows = session.execute(select(Blackout.id, CalendarSubscription.last_error)
                               .join(CalendarSubscription, Blackout.subscription_id == CalendarSubscription.id)
                               .where(CalendarSubscription.last_error.is_not(None)))
        return {bid: error for bid, error in rows}


def fetch_failed(db: Engine, sub_id: int, now: datetime, error: str) -> bool:
    """Keep the last good copy; warn the channel once per failing spell. True if a warning was queued."""
    with transaction(db) as session:
        sub = session.get(CalendarSubscription, sub_id)
        sub.fetched_at, sub.last_error = now, error[:2000]
        if sub.failing_since is not None:
            return False
        sub.failing_since = now
        outbox.enqueue(session, key=f"subscription-failed:{sub.id}:{now.isoformat()}", kind=announce.CHANNEL_NOTE, at=now,
                       payload={"event": "subscription_failed", "name": sub.name, "url": sub.url, "error": error[:300],
                                "has_copy": sub.body is not None})
        return True
