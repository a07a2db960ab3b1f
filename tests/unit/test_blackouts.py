"""Blackout use cases against the real database: managing blackouts, materialising occurrences, the
warning before each occurrence, and subscribed calendars that keep their last good copy."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from calendars.ics import CalendarError
from commands import announce, blackout, reminders
from commands.blackout import (FORM, HORIZON, add_blackout, fetch_failed, fetched, list_blackouts, materialize,
                               refresh_all, remove_blackout, subscribe)
from commands.errors import InputError, NotFound
from commands.planning import MAX_OCCURRENCE, open_flags
from commands.policy import Policy
from conftest import ROLES, START, actor
from storage.db import transaction
from storage.models import AuditEvent, Blackout, BlackoutOccurrence, CalendarSubscription, Outbox
from unit_support import new_release, outbox
from bot.times import iso_times

UTC = timezone.utc
RM = "U0RM"
WEEKEND = {"name": "Weekend", "start": "2026-11-27 16:00", "end": "2026-11-30 08:00", "tz": "Europe/London",
           "repeat": "FREQ=WEEKLY;BYDAY=FR"}
PEAK = {"name": "Peak trading", "start": "2026-12-18 16:00", "end": "2027-01-04 08:00", "tz": "Europe/London"}


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def add(db, clock, policy, raw=None, **fields) -> int:
    out = add_blackout(db, actor(RM), {**(raw or PEAK), **fields}, clock, policy)
    assert out.changed
    return out.data["blackout"]


def stored(db, blackout_id=None) -> list[BlackoutOccurrence]:
    with Session(db, expire_on_commit=False) as s:
        q = select(BlackoutOccurrence).order_by(BlackoutOccurrence.start_at)
        if blackout_id is not None:
            q = q.where(BlackoutOccurrence.blackout_id == blackout_id)
        return list(s.exec(q))


def get(db, model, row_id):
    with Session(db, expire_on_commit=False) as s:
        return s.get(model, row_id)


def warnings(db) -> list[Outbox]:
    return [r for r in outbox(db) if r.key.startswith("blackout-warning:")]


def notes(db) -> list[Outbox]:
    return [r for r in outbox(db) if r.kind == announce.CHANNEL_NOTE]


def due(db, policy, key):
    with transaction(db) as s:
        row = s.exec(select(Outbox).where(Outbox.key == key)).one()
        return reminders.due(s, row, policy)


def blackout_events(db, action) -> list[AuditEvent]:
    with Session(db, expire_on_commit=False) as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


# --- add / remove / list ----------------------------------------------------------------------------------------

def test_add_a_one_off_blackout(db, clock, policy):
    out = add_blackout(db, actor(RM), {**PEAK, "services": "payments, search", "environments": "production"},
                       clock, policy)
    assert out.changed and out.data == {"blackout": 1, "window": (utc(2026, 12, 18, 16), utc(2027, 1, 4, 8),
                                                                  "Europe/London")}
    assert out.message == "Blackout 1 'Peak trading' added."  # the bot adds the window (window_echo)
    b = get(db, Blackout, 1)
    assert (b.name, b.start_local, b.end_local, b.tz, b.rrule) == (
        "Peak trading", datetime(2026, 12, 18, 16), datetime(2027, 1, 4, 8), "Europe/London", None)
    assert (b.services, b.environments, b.created_by, b.created_at) == (["payments", "search"], ["production"], RM,
                                                                         START)
    assert [(o.start_at, o.end_at) for o in stored(db)] == [(utc(2026, 12, 18, 16), utc(2027, 1, 4, 8))]
    [ev] = blackout_events(db, "blackout_added")
    assert (ev.actor, ev.release_id, ev.at) == (RM, None, START)
    assert ev.after == {"blackout": 1, "name": "Peak trading", "start": "2026-12-18T16:00:00",
                        "end": "2027-01-04T08:00:00", "tz": "Europe/London", "repeat": None,
                        "services": ["payments", "search"], "environments": ["production"], "occurrences": 1}


def test_add_a_recurring_blackout(db, clock, policy):
    out = add_blackout(db, actor(RM), WEEKEND, clock, policy)
    assert out.message == "Blackout 1 'Weekend' added."
    assert out.data["window"] == (utc(2026, 11, 27, 16), utc(2026, 11, 30, 8), "Europe/London")  # the next one
    occs = stored(db, 1)
    assert occs[0].start_at == utc(2026, 11, 27, 16)
    london = ZoneInfo("Europe/London")
    local = [o.start_at.astimezone(london).replace(tzinfo=None) for o in occs]
    assert all(b - a == timedelta(days=7) for a, b in zip(local, local[1:]))  # every Friday 16:00 London
    assert all(o.end_at - o.start_at == timedelta(days=2, hours=16) for o in occs)
    assert occs[-1].start_at < START + HORIZON <= occs[-1].start_at + timedelta(days=7)
    assert blackout_events(db, "blackout_added")[0].after["occurrences"] == len(occs)


def test_a_blackout_already_over_is_added_without_a_next(db, clock, policy):
    out = add_blackout(db, actor(RM), {**PEAK, "start": "2026-11-01 00:00", "end": "2026-11-02 00:00"}, clock,
                       policy)
    assert out.message == "Blackout 1 'Peak trading' added." and "window" not in out.data


def test_a_blackout_takes_natural_dates_read_in_its_zone(db, clock, policy):
    # The clock is Monday 23 Nov 09:00 UTC; "friday 16:00" London is 27 Nov, "12/03" is day first for en-GB.
    out = add_blackout(db, actor(RM), {**PEAK, "start": "friday 16:00", "end": "12/03 08:00"}, clock, policy,
                       locale="en-GB")
    b = get(db, Blackout, out.data["blackout"])
    assert (b.start_local, b.end_local) == (datetime(2026, 11, 27, 16), datetime(2027, 3, 12, 8))
    with pytest.raises(InputError, match="tomorrow 14:00"):
        add_blackout(db, actor(RM), {**PEAK, "start": "after lunch"}, clock, policy)


@pytest.mark.parametrize("user", ["U0DEV", "U0EXEC", "U0QA"])
def test_only_a_release_manager_adds(db, clock, policy, user):
    out = add_blackout(db, actor(user), PEAK, clock, policy)
    assert out.refused and out.message == "Only a release manager can manage blackouts."
    assert list_blackouts(db, START) == []
    [ev] = blackout_events(db, "blackout_add_refused")
    assert (ev.actor, ev.release_id, ev.after) == (user, None, {"code": "wrong_role"})


@pytest.mark.parametrize("user", ["U0DEV", "U0QA"])
def test_only_a_release_manager_or_an_executive_removes(db, clock, policy, user):
    add(db, clock, policy)
    out = remove_blackout(db, actor(user), 1, clock)
    assert out.refused and out.message == "Only a release manager can manage blackouts."
    assert get(db, Blackout, 1).removed_at is None
    assert len(stored(db)) == 1
    [ev] = blackout_events(db, "blackout_remove_refused")
    assert (ev.actor, ev.release_id, ev.after) == (user, None, {"code": "wrong_role", "blackout": 1})
    assert remove_blackout(db, actor("U0EXEC"), 1, clock).changed


@pytest.mark.parametrize("fields,field,message", [
    ({"name": ""}, "name", "name: is required"),
    ({"name": "x" * 201}, "name", "name: at most 200 characters"),
    ({"tz": " "}, "tz", "tz: is required"),
    ({"tz": "Mars/Olympus"}, "tz", "is not an IANA time zone"),
    ({"start": "someday"}, "start", "start: 'someday' is not a date and time"),
    ({"end": "after lunch"}, "end", "end: 'after lunch' is not a date and time"),
    ({"end": "2026-12-18 16:00"}, "end", "end: must be after start"),
    ({"end": "2026-12-18 15:00"}, "end", "end: must be after start"),
    ({"repeat": "FREQ=SOMETIMES"}, "repeat", "is not an RFC 5545 RRULE"),
    ({"environments": "prod"}, "environments",
     "environments: 'prod' is not a valid name; environments are production, staging, qa, development"),
    ({"services": "pay ments"}, "services", "services: 'pay ments' is not a valid name"),
])
def test_bad_fields_name_the_field(db, clock, policy, fields, field, message):
    with pytest.raises(InputError) as exc:
        add_blackout(db, actor(RM), {**PEAK, **fields}, clock, policy)
    assert exc.value.field == field
    assert message in exc.value.message
    assert exc.value.form == FORM
    with Session(db) as s:
        assert list(s.exec(select(Blackout))) == []


def test_remove_a_blackout(db, clock, policy):
    bid = add(db, clock, policy)
    clock.advance(hours=2)
    out = remove_blackout(db, actor(RM), bid, clock)
    assert out.changed and out.message == "Blackout 1 'Peak trading' removed."
    b = get(db, Blackout, bid)
    assert (b.removed_at, b.removed_by, b.revision) == (clock.now(), RM, 1)
    assert stored(db) == []
    [ev] = blackout_events(db, "blackout_removed")
    assert (ev.actor, ev.before) == (RM, {"blackout": 1, "name": "Peak trading"})
    assert list_blackouts(db, clock.now()) == []
    with pytest.raises(NotFound, match="there is no blackout 1"):
        remove_blackout(db, actor(RM), bid, clock)
    with pytest.raises(NotFound, match="there is no blackout 99"):
        remove_blackout(db, actor(RM), 99, clock)


def test_list_blackouts_with_their_next_occurrences(db, clock, policy):
    add(db, clock, policy)
    add(db, clock, policy, WEEKEND)
    listed = list_blackouts(db, START)
    assert [b.name for b, _ in listed] == ["Peak trading", "Weekend"]
    assert [(o.start, o.end) for o in listed[0][1]] == [(utc(2026, 12, 18, 16), utc(2027, 1, 4, 8))]
    assert [(o.start, o.end) for o in listed[1][1]] == [(utc(2026, 11, 27, 16), utc(2026, 11, 30, 8)),
                                                         (utc(2026, 12, 4, 16), utc(2026, 12, 7, 8))]
    # an occurrence still running is "next"; one that has ended is not
    assert [o.start for o in list_blackouts(db, utc(2026, 11, 28))[1][1]] == [utc(2026, 11, 27, 16),
                                                                              utc(2026, 12, 4, 16)]
    assert [o.start for o in list_blackouts(db, utc(2026, 11, 30, 8))[1][1]][0] == utc(2026, 12, 4, 16)


# --- materialize ----------------------------------------------------------------------------------------------------

def test_materialize_replaces_the_occurrences_and_rolls_the_horizon(db, clock, policy):
    bid = add(db, clock, policy, WEEKEND)
    first = stored(db, bid)
    later = utc(2027, 3, 1, 9)
    with transaction(db) as s:
        count = materialize(s, s.get(Blackout, bid), later, policy)
    occs = stored(db, bid)
    starts = [o.start_at for o in occs]
    assert count == len(occs) and len(set(starts)) == len(starts)  # no duplicates
    # kept from later - 35 days: the 22 January one ended (25 January 08:00) just before that
    assert later - MAX_OCCURRENCE == utc(2027, 1, 25, 9)
    assert starts[0] == utc(2027, 1, 29, 16)
    assert starts[-1] > first[-1].start_at  # the horizon moved forward
    assert starts[-1] < later + HORIZON
    assert first[0].start_at == utc(2026, 11, 27, 16) and first[0].start_at not in starts  # replaced, not added to


def test_a_blackout_longer_than_the_range_bound_is_stored_in_pieces(db, clock, policy):
    bid = add(db, clock, policy, start="2026-12-01 00:00", end="2027-01-30 00:00", tz="UTC")
    assert [(o.start_at, o.end_at) for o in stored(db, bid)] == [
        (utc(2026, 12, 1), utc(2026, 12, 1) + MAX_OCCURRENCE),
        (utc(2026, 12, 1) + MAX_OCCURRENCE, utc(2027, 1, 30)),
    ]


def test_refresh_all_skips_removed_blackouts(db, clock, policy):
    keep, gone = add(db, clock, policy, WEEKEND), add(db, clock, policy)
    remove_blackout(db, actor(RM), gone, clock)
    assert refresh_all(db, START, policy) == 1
    assert {o.blackout_id for o in stored(db)} == {keep}


# --- warnings before each occurrence ------------------------------------------------------------------------------

def test_a_warning_is_queued_a_day_before_each_occurrence(db, clock, policy):
    bid = add(db, clock, policy, WEEKEND)
    [row] = warnings(db)
    assert row.key == f"blackout-warning:{bid}:2026-11-27T16:00:00+00:00"
    assert (row.kind, row.release_id, row.created_at) == (announce.REMINDER, None, START)
    assert row.due_at == utc(2026, 11, 26, 16)  # start − 24h
    assert row.payload == {"reminder": "blackout_warning", "blackout": bid, "start": "2026-11-27T16:00:00+00:00",
                           "end": "2026-11-30T08:00:00+00:00", "summary": "Weekend"}


def test_rerunning_adds_no_duplicate_and_later_runs_add_the_next(db, clock, policy):
    bid = add(db, clock, policy, WEEKEND)
    assert refresh_all(db, START, policy) == 1
    with transaction(db) as s:
        materialize(s, s.get(Blackout, bid), START + timedelta(hours=1), policy)
    assert [r.key for r in warnings(db)] == [f"blackout-warning:{bid}:2026-11-27T16:00:00+00:00"]
    refresh_all(db, utc(2026, 11, 28, 9), policy)
    refresh_all(db, utc(2026, 11, 28, 10), policy)
    assert [(r.key, r.due_at) for r in warnings(db)] == [
        (f"blackout-warning:{bid}:2026-11-27T16:00:00+00:00", utc(2026, 11, 26, 16)),
        (f"blackout-warning:{bid}:2026-12-04T16:00:00+00:00", utc(2026, 12, 3, 16)),
    ]


def test_warning_due_times_follow_local_time_across_dst(db, clock, policy):
    clock.set(utc(2026, 3, 23, 9))
    bid = add(db, clock, policy, WEEKEND, start="2026-03-27 16:00", end="2026-03-30 08:00")
    refresh_all(db, utc(2026, 3, 30, 9), policy)
    assert [(r.key, r.due_at) for r in warnings(db)] == [
        (f"blackout-warning:{bid}:2026-03-27T16:00:00+00:00", utc(2026, 3, 26, 16)),  # GMT
        (f"blackout-warning:{bid}:2026-04-03T15:00:00+00:00", utc(2026, 4, 2, 15)),  # 16:00 BST
    ]


def test_an_occurrence_starting_within_the_lead_is_warned_now(db, clock, policy):
    bid = add(db, clock, policy, start="2026-11-23 19:00", end="2026-11-23 21:00", tz="UTC")
    [row] = warnings(db)
    assert row.key == f"blackout-warning:{bid}:2026-11-23T19:00:00+00:00" and row.due_at == START


def test_an_occurrence_already_under_way_is_not_warned(db, clock, policy):
    add(db, clock, policy, start="2026-11-23 08:00", end="2026-11-23 21:00", tz="UTC")
    assert warnings(db) == []
    assert len(stored(db)) == 1  # but it still blocks


def test_the_warning_lead_comes_from_policy(db, clock):
    policy = Policy.from_mapping({"roles": ROLES, "calendar": {"blackout_warning_lead": "48h"}})
    add(db, clock, policy, WEEKEND)
    assert [r.due_at for r in warnings(db)] == [utc(2026, 11, 25, 16)]


def test_a_due_warning_names_the_releases_inside_it(db, clock, policy):
    bid = add(db, clock, policy, WEEKEND, services="payments")
    new_release(db, clock, policy, start="2026-12-05 10:00", tz="UTC")  # not in the first weekend
    new_release(db, clock, policy, start="2026-11-28 10:00", tz="UTC")  # inside, payments
    new_release(db, clock, policy, service="search", start="2026-11-28 12:00", tz="UTC")  # inside, not in scope
    notice = due(db, policy, f"blackout-warning:{bid}:2026-11-27T16:00:00+00:00")
    assert isinstance(notice, reminders.Notice)
    assert notice.release is None and notice.what == "blackout_warning"
    assert notice.detail["name"] == "Weekend" and notice.detail["blackout"] == bid
    assert (notice.detail["start"], notice.detail["end"]) == (utc(2026, 11, 27, 16), utc(2026, 11, 30, 8))
    assert notice.detail["releases"] == [("REL-2", "payments", "2.3.1", "production", "pending",
                                          utc(2026, 11, 28, 10))]


def test_removing_a_blackout_makes_its_warning_skip(db, clock, policy):
    bid = add(db, clock, policy, WEEKEND)
    key = f"blackout-warning:{bid}:2026-11-27T16:00:00+00:00"
    assert isinstance(due(db, policy, key), reminders.Notice)
    remove_blackout(db, actor(RM), bid, clock)
    assert due(db, policy, key) == reminders.Skip("blackout removed")


def test_a_warning_for_an_occurrence_no_longer_scheduled_skips(db, clock, policy):
    bid = add(db, clock, policy, WEEKEND)
    refresh_all(db, utc(2027, 2, 1), policy)  # the first weekend has dropped out of the stored range
    assert due(db, policy, f"blackout-warning:{bid}:2026-11-27T16:00:00+00:00") == reminders.Skip(
        "occurrence no longer in the blackout's schedule")


# --- subscribed calendars -----------------------------------------------------------------------------------------

def vcalendar(*events: str) -> str:
    body = "".join("BEGIN:VEVENT\r\nDTSTAMP:20260101T000000Z\r\n" + "".join(f"{l}\r\n" for l in ev) + "END:VEVENT\r\n"
                   for ev in events)
    return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//test//EN\r\n" + body + "END:VCALENDAR\r\n"


GOOD = vcalendar(
    ("UID:offsite@test", "DTSTART;VALUE=DATE:20261201", "DTEND;VALUE=DATE:20261202", "SUMMARY:Company offsite"),
    ("UID:freeze@test", "DTSTART;TZID=Europe/London:20261127T160000", "DTEND;TZID=Europe/London:20261127T180000",
     "RRULE:FREQ=WEEKLY;COUNT=3", "SUMMARY:Weekly freeze"),
)
GOOD_OCCURRENCES = [
    (utc(2026, 11, 27, 16), utc(2026, 11, 27, 18), "Weekly freeze"),
    (utc(2026, 12, 1), utc(2026, 12, 2), "Company offsite"),
    (utc(2026, 12, 4, 16), utc(2026, 12, 4, 18), "Weekly freeze"),
    (utc(2026, 12, 11, 16), utc(2026, 12, 11, 18), "Weekly freeze"),
]
# Parses as iCalendar, but its recurrence cannot be expanded.
UNEXPANDABLE = vcalendar(("UID:bad@test", "DTSTART:20261201T100000Z", "DTEND:20261201T110000Z",
                          "RRULE:FREQ=SOMETIMES", "SUMMARY:Broken"))


def subscribed(db, clock, policy, **raw) -> tuple[int, int]:
    out = subscribe(db, actor(RM), {"url": "https://calendar.test/holidays.ics", "name": "Holidays",
                                    "tz": "Europe/London", **raw}, clock, policy)
    sub_id = out.data["subscription"]
    with Session(db) as s:
        carrier = s.exec(select(Blackout).where(Blackout.subscription_id == sub_id)).one()
        return sub_id, carrier.id


def occurrence_rows(db, blackout_id) -> list[tuple]:
    return [(o.start_at, o.end_at, o.summary) for o in stored(db, blackout_id)]


def test_subscribe_creates_a_carrier_blackout(db, clock, policy):
    out = subscribe(db, actor(RM), {"url": "https://calendar.test/h.ics", "name": "Holidays", "tz": "Europe/London",
                                    "services": "payments", "environments": "production"}, clock, policy)
    assert out.changed and out.message.startswith("Subscribed to 'Holidays' as blackout 1;")
    sub = get(db, CalendarSubscription, out.data["subscription"])
    assert (sub.url, sub.services, sub.environments, sub.body, sub.created_by) == (
        "https://calendar.test/h.ics", ["payments"], ["production"], None, RM)
    carrier = get(db, Blackout, 1)
    assert (carrier.subscription_id, carrier.tz, carrier.services) == (sub.id, "Europe/London", ["payments"])
    assert stored(db) == []  # nothing until fetched
    assert [s.id for s in blackout.due_subscriptions(db)] == [sub.id]
    [ev] = blackout_events(db, "calendar_subscribed")
    assert ev.after["url"] == "https://calendar.test/h.ics"


@pytest.mark.parametrize("user,raw,field", [
    (RM, {"url": "ftp://calendar.test/h.ics"}, "url"),
    (RM, {"url": "not a url"}, "url"),
    (RM, {"name": " "}, "name"),
    (RM, {"tz": "Nowhere/Land"}, "tz"),
    (RM, {"environments": "prod"}, "environments"),
    (RM, {"services": "a b"}, "services"),
])
def test_subscribe_refuses_bad_input(db, clock, policy, user, raw, field):
    with pytest.raises(InputError) as exc:
        subscribe(db, actor(user), {"url": "https://calendar.test/h.ics", "name": "Holidays", **raw}, clock, policy)
    assert exc.value.field == field
    assert blackout.due_subscriptions(db) == []


def test_fetched_events_become_blackout_occurrences(db, clock, policy):
    sub_id, bid = subscribed(db, clock, policy)
    assert fetched(db, sub_id, START, policy, body=GOOD, etag='"v1"', last_modified=None) == 4
    assert occurrence_rows(db, bid) == GOOD_OCCURRENCES
    sub = get(db, CalendarSubscription, sub_id)
    assert (sub.body, sub.etag, sub.fetched_at, sub.last_ok_at, sub.failing_since) == (GOOD, '"v1"', START, START,
                                                                                       None)
    # each event is named in the flag of a release it blocks
    rid = new_release(db, clock, policy)
    with Session(db) as s:
        [flag] = open_flags(s, rid)
        assert iso_times(flag.detail) == ("falls in blackout 'Company offsite' (2026-12-01T00:00:00Z–"
                                          "2026-12-02T00:00:00Z)")
    # and warned, once per occurrence, under the event's own name
    # a subscribed calendar's events are told apart by title as well, so two starting together both warn
    assert [(r.key.rsplit(":", 1)[0], r.payload["summary"]) for r in warnings(db)] == [
        (f"blackout-warning:{bid}:2026-11-27T16:00:00+00:00", "Weekly freeze"),
        (f"blackout-warning:{bid}:2026-12-01T00:00:00+00:00", "Company offsite"),
    ]
    refresh_all(db, START, policy)
    fetched(db, sub_id, START, policy, body=GOOD, etag='"v1"', last_modified=None)
    assert len(warnings(db)) == 2 and occurrence_rows(db, bid) == GOOD_OCCURRENCES


def test_not_modified_keeps_the_copy(db, clock, policy):
    sub_id, bid = subscribed(db, clock, policy)
    fetched(db, sub_id, START, policy, body=GOOD, etag='"v1"', last_modified="Mon, 23 Nov 2026 09:00:00 GMT")
    later = START + timedelta(hours=3)
    assert fetched(db, sub_id, later, policy, body=None, etag='"v1"', last_modified=None) == 0
    sub = get(db, CalendarSubscription, sub_id)
    assert (sub.body, sub.etag, sub.last_modified, sub.last_ok_at) == (GOOD, '"v1"', "Mon, 23 Nov 2026 09:00:00 GMT",
                                                                       later)
    assert occurrence_rows(db, bid) == GOOD_OCCURRENCES


def test_a_failed_fetch_keeps_the_last_good_copy_and_warns_once_per_spell(db, clock, policy):
    sub_id, bid = subscribed(db, clock, policy)
    fetched(db, sub_id, START, policy, body=GOOD, etag='"v1"', last_modified=None)
    t1, t2, t3, t4 = (START + timedelta(hours=h) for h in (3, 6, 9, 12))

    assert fetch_failed(db, sub_id, t1, "HTTP 500 from https://calendar.test/holidays.ics") is True
    [note] = notes(db)
    assert note.key == f"subscription-failed:{sub_id}:{t1.isoformat()}"
    assert note.payload == {"event": "subscription_failed", "name": "Holidays",
                            "url": "https://calendar.test/holidays.ics",
                            "error": "HTTP 500 from https://calendar.test/holidays.ics", "has_copy": True}
    sub = get(db, CalendarSubscription, sub_id)
    assert (sub.body, sub.failing_since, sub.fetched_at, sub.last_ok_at) == (GOOD, t1, t1, START)
    assert occurrence_rows(db, bid) == GOOD_OCCURRENCES

    assert fetch_failed(db, sub_id, t2, "timed out") is False  # the same spell: no second warning
    assert len(notes(db)) == 1
    sub = get(db, CalendarSubscription, sub_id)
    assert (sub.last_error, sub.failing_since, sub.fetched_at) == ("timed out", t1, t2)
    refresh_all(db, t2, policy)  # the kept copy is still applied
    assert occurrence_rows(db, bid) == GOOD_OCCURRENCES

    fetched(db, sub_id, t3, policy, body=None, etag='"v1"', last_modified=None)  # recovered
    sub = get(db, CalendarSubscription, sub_id)
    assert (sub.failing_since, sub.last_error, sub.last_ok_at) == (None, None, t3)

    assert fetch_failed(db, sub_id, t4, "HTTP 404") is True  # a new spell warns again
    assert [n.key for n in notes(db)] == [f"subscription-failed:{sub_id}:{t1.isoformat()}",
                                          f"subscription-failed:{sub_id}:{t4.isoformat()}"]


def test_a_failure_before_any_good_copy_says_so(db, clock, policy):
    sub_id, bid = subscribed(db, clock, policy)
    assert fetch_failed(db, sub_id, START, "x" * 5000) is True
    [note] = notes(db)
    assert note.payload["has_copy"] is False and len(note.payload["error"]) == 300
    assert len(get(db, CalendarSubscription, sub_id).last_error) == 2000
    assert stored(db, bid) == []


def test_a_body_that_is_not_a_calendar_is_refused_and_the_copy_kept(db, clock, policy):
    sub_id, bid = subscribed(db, clock, policy)
    fetched(db, sub_id, START, policy, body=GOOD, etag='"v1"', last_modified=None)
    with pytest.raises(CalendarError):
        fetched(db, sub_id, START + timedelta(hours=3), policy, body="<html>login</html>", etag='"v2"',
                last_modified=None)
    sub = get(db, CalendarSubscription, sub_id)
    assert (sub.body, sub.etag, sub.last_ok_at) == (GOOD, '"v1"', START)
    assert occurrence_rows(db, bid) == GOOD_OCCURRENCES


def test_a_body_that_cannot_be_expanded_is_refused_and_the_copy_kept(db, clock, policy):
    # BUG (commands/blackout.py fetched): only ics.parse() runs before the new body is committed as
    # the "last good copy" (and failing_since cleared); ics.occurrences() fails afterwards in
    # _apply_body. The good copy is lost, the etag now names the bad body (so the next fetch is a 304
    # that "succeeds"), and every refresh_all raises CalendarError from then on.
    sub_id, bid = subscribed(db, clock, policy)
    fetched(db, sub_id, START, policy, body=GOOD, etag='"v1"', last_modified=None)
    later = START + timedelta(hours=3)
    with pytest.raises(CalendarError):
        fetched(db, sub_id, later, policy, body=UNEXPANDABLE, etag='"v2"', last_modified=None)
    sub = get(db, CalendarSubscription, sub_id)
    assert (sub.body, sub.etag, sub.last_ok_at) == (GOOD, '"v1"', START)
    refresh_all(db, later, policy)  # must not raise: the kept copy is the good one
    assert occurrence_rows(db, bid) == GOOD_OCCURRENCES


def test_refresh_all_reapplies_subscribed_calendars(db, clock, policy):
    sub_id, bid = subscribed(db, clock, policy)
    fetched(db, sub_id, START, policy, body=GOOD, etag=None, last_modified=None)
    later = utc(2027, 1, 8)  # the first two events ended more than 35 days before
    assert refresh_all(db, later, policy) == 1  # one subscription; its carrier is not a plain blackout too
    assert occurrence_rows(db, bid) == GOOD_OCCURRENCES[2:]


def test_removing_the_carrier_ends_the_subscription(db, clock, policy):
    sub_id, bid = subscribed(db, clock, policy)
    fetched(db, sub_id, START, policy, body=GOOD, etag=None, last_modified=None)
    remove_blackout(db, actor(RM), bid, clock)
    assert get(db, CalendarSubscription, sub_id).removed_at == START
    assert blackout.due_subscriptions(db) == []
    assert stored(db, bid) == []
    refresh_all(db, START, policy)
    assert stored(db, bid) == []


def test_subscription_scope_applies_to_its_events(db, clock, policy):
    sub_id, bid = subscribed(db, clock, policy, services="search")
    fetched(db, sub_id, START, policy, body=GOOD, etag=None, last_modified=None)
    payments = new_release(db, clock, policy)
    search = new_release(db, clock, policy, service="search", env="staging")
    with Session(db) as s:
        assert [f.kind for f in open_flags(s, payments)] == []
        assert [f.ref for f in open_flags(s, search)] == [f"blackout:{bid}"]


def test_a_blackout_ending_in_the_spring_forward_gap_is_added(db, clock, policy):
    # 00:50–01:30 London on 29 March 2026: 01:30 is skipped by the clocks, so the end moves forward to
    # 02:30 BST (01:30Z, RFC 5545 §3.3.5). BUG (calendars/recurrence.py local_to_utc moves gap times
    # back an hour, to 00:30Z): the end lands before the start, and add_blackout lets a bare
    # TimeInputError "a blackout must end after it starts" escape for an end the user typed after the start.
    clock.set(utc(2026, 3, 1))
    bid = add(db, clock, policy, start="2026-03-29 00:50", end="2026-03-29 01:30")
    assert [(o.start_at, o.end_at) for o in stored(db, bid)] == [(utc(2026, 3, 29, 0, 50), utc(2026, 3, 29, 1, 30))]
