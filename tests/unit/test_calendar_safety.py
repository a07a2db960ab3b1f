"""Subscribed calendars under hostile input: the address policy at subscribe time, the allow-list setting,
nothing of a response quoted to people, and capped expansion written outside the expansion's time."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from bot.config import ConfigError, load_config
from calendars import ics
from calendars.netpolicy import NetPolicy, parse_allow
from commands import blackout
from commands.blackout import fetch_failed, fetched, list_blackouts, subscribe, subscription_status
from commands.errors import InputError
from conftest import START, actor
from storage.models import AuditEvent, Blackout, BlackoutOccurrence, CalendarSubscription, Outbox

RM = "U0RM"
ENV = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "s", "RELEASE_CHANNEL": "C0RELEASE"}


def vcalendar(*events: tuple[str, ...]) -> str:
    body = "".join("BEGIN:VEVENT\r\nDTSTAMP:20260101T000000Z\r\n" + "".join(f"{l}\r\n" for l in ev)
                   + "END:VEVENT\r\n" for ev in events)
    return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//test//EN\r\n" + body + "END:VCALENDAR\r\n"


# Starts months ahead, so the test is about the cap and not about queuing a warning for each occurrence.
FLOOD = vcalendar(("UID:flood@test", "DTSTART:20270601T000000Z", "DTEND:20270601T000100Z",
                   "RRULE:FREQ=MINUTELY;COUNT=1000000000", "SUMMARY:Flood"))


def resolver(table):
    def resolve(host, port):
        from calendars.netpolicy import Unresolvable
        if host not in table:
            raise Unresolvable("could not connect")
        return table[host]
    return resolve


def nothing_written(db) -> bool:
    with Session(db) as s:
        return (s.exec(select(CalendarSubscription)).all() == [] and s.exec(select(Blackout)).all() == []
                and s.exec(select(AuditEvent)).all() == [])


@pytest.mark.parametrize("url", ["http://127.0.0.1:5432/", "http://[::1]:1/x", "http://169.254.169.254/latest/",
                                 "http://[::ffff:127.0.0.1]/c.ics", "http://0.0.0.0/", "http://10.0.0.8/c.ics",
                                 "https://internal.corp.example/c.ics"])
def test_subscribing_to_a_forbidden_address_is_refused_and_writes_nothing(db, clock, policy, url):
    net = NetPolicy.build(resolver=resolver({"internal.corp.example": ["10.1.2.3"]}))
    with pytest.raises(InputError) as err:
        subscribe(db, actor(RM), {"url": url, "name": "Holidays"}, clock, policy, net=net)
    assert "refused by policy: address not allowed" in str(err.value) and err.value.field == "url"
    assert nothing_written(db)


def test_the_allow_list_admits_an_internal_calendar(db, clock, policy):
    net = NetPolicy.build(parse_allow("internal.corp.example"),
                          resolver=resolver({"internal.corp.example": ["10.1.2.3"]}))
    out = subscribe(db, actor(RM), {"url": "https://internal.corp.example/c.ics", "name": "Holidays"}, clock,
                    policy, net=net)
    assert out.changed


def test_the_bots_own_feed_is_not_a_calendar_source(db, clock, policy):
    net = NetPolicy.build(own_urls=["https://releases.example.com"], resolver=resolver({}))
    with pytest.raises(InputError, match="the bot's own address"):
        subscribe(db, actor(RM), {"url": "https://RELEASES.example.com/calendar.ics?token=abc", "name": "Loop"},
                  clock, policy, net=net)
    assert nothing_written(db)


def test_config_parses_the_allow_list_and_names_a_bad_entry():
    cfg = load_config({**ENV, "RELEASEBOT_CALENDAR_ALLOW": "calendar.corp.example, 10.20.0.0/16,127.0.0.1",
                       "RELEASEBOT_PUBLIC_URL": "https://releases.example.com"})
    assert cfg.calendar_allow.hosts == {"calendar.corp.example"} and len(cfg.calendar_allow.networks) == 2
    assert cfg.calendar_net.own_hosts == {"releases.example.com"}
    assert not load_config(ENV).calendar_allow
    with pytest.raises(ConfigError, match="RELEASEBOT_CALENDAR_ALLOW .*'10.0.0.0/99'.*CIDR"):
        load_config({**ENV, "RELEASEBOT_CALENDAR_ALLOW": "ok.example,10.0.0.0/99"})


def subscribed(db, clock, policy) -> int:
    return subscribe(db, actor(RM), {"url": "https://calendar.test/h.ics", "name": "Holidays"}, clock, policy,
                     net=NetPolicy.build(resolver=resolver({}))).data["subscription"]


def notes(db) -> list[Outbox]:
    with Session(db) as s:
        return list(s.exec(select(Outbox).where(Outbox.kind == "channel_note").order_by(Outbox.id)))


def test_a_response_that_is_not_a_calendar_is_never_quoted(db, clock, policy):
    sub_id = subscribed(db, clock, policy)
    with pytest.raises(ics.CalendarError) as err:
        fetched(db, sub_id, START, policy, body="DB_PASSWORD=secret\r\n", etag=None, last_modified=None)
    fetch_failed(db, sub_id, START, str(err.value))
    with Session(db) as s:
        sub = s.get(CalendarSubscription, sub_id)
    assert sub.last_error == "not an iCalendar file" and sub.body is None
    assert "secret" not in json.dumps([n.payload for n in notes(db)])


def test_a_flooding_calendar_is_cut_at_the_cap_and_reported_once(db, clock, policy):
    sub_id = subscribed(db, clock, policy)
    assert fetched(db, sub_id, START, policy, body=FLOOD, etag=None, last_modified=None) == ics.MAX_OCCURRENCES
    with Session(db) as s:
        carrier = s.exec(select(Blackout).where(Blackout.subscription_id == sub_id)).one()
        assert len(s.exec(select(BlackoutOccurrence).where(BlackoutOccurrence.blackout_id == carrier.id)).all()) \
            == ics.MAX_OCCURRENCES
    blackout.refresh_all(db, START + timedelta(hours=3), policy)  # applied again: not said again
    [note] = [n for n in notes(db) if n.payload["event"] == "subscription_cut_short"]
    assert note.payload["limit"] == ics.MAX_OCCURRENCES and note.payload["name"] == "Holidays"
    status = subscription_status(db)
    assert "cut short" in status[carrier.id] and str(ics.MAX_OCCURRENCES) in status[carrier.id]
    assert [b.id for b, _ in list_blackouts(db, START)] == [carrier.id]


def test_expansion_happens_outside_the_write_transaction(db, clock, policy, monkeypatch):
    sub_id = subscribed(db, clock, policy)
    open_transactions, seen = [0], []
    real_transaction, real_expand = blackout.transaction, ics.expand_calendar

    from contextlib import contextmanager

    @contextmanager
    def counting(engine):
        open_transactions[0] += 1
        try:
            with real_transaction(engine) as session:
                yield session
        finally:
            open_transactions[0] -= 1

    def expand(*args, **kwargs):
        seen.append(open_transactions[0])
        return real_expand(*args, **kwargs)
    monkeypatch.setattr(blackout, "transaction", counting)
    monkeypatch.setattr(ics, "expand_calendar", expand)
    small = vcalendar(("UID:w@test", "DTSTART:20261201T100000Z", "DTEND:20261201T110000Z",
                       "RRULE:FREQ=WEEKLY;COUNT=5", "SUMMARY:Weekly"))
    fetched(db, sub_id, START, policy, body=small, etag=None, last_modified=None)
    blackout.refresh_all(db, START + timedelta(hours=3), policy)
    assert len(seen) == 2 and set(seen) == {0}
