"""The calendar through Slack and HTTP: flags and overrides, blackouts and their warnings, the feed, subscriptions."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from icalendar import Calendar
from sqlmodel import Session, select

from conftest import start_bot, serving
from storage.models import AuditEvent, CalendarSubscription, Outbox, Release, ReleaseFlag

UTC = timezone.utc


@pytest.fixture
def cal_bot(db, clock, policy, emulator):
    yield from serving(start_bot(db, clock, policy, emulator,
                                 {"RELEASEBOT_PUBLIC_URL": "https://releases.example.com"}))


def req(service="payments", start="2026-12-01 14:00", type_="minor", tz="UTC", duration="60m"):
    flags = {"minor": "feature", "patch": "none", "major": "breaking", "emergency": "incident"}[type_]
    incident = " incident=INC-1" if type_ == "emergency" else ""
    return (f'request service={service} version=1.0.0 type={type_} flags={flags}{incident} start="{start}" tz={tz} '
            f'duration={duration} '
            f'summary="Change {service}"')


def flags(db, rid=1, open_only=True) -> list[ReleaseFlag]:
    with Session(db) as s:
        q = select(ReleaseFlag).where(ReleaseFlag.release_id == rid)
        if open_only:
            q = q.where(ReleaseFlag.cleared_at.is_(None))
        return list(s.exec(q.order_by(ReleaseFlag.id)))


def state(db, rid=1) -> str:
    with Session(db) as s:
        return s.get(Release, rid).state


def reply(bot) -> str:
    return bot.emulator.calls_to("response_url")[-1].args.get("text") or ""


def approval_blocks(bot, rid=1) -> str:
    calls = [c for c in bot.emulator.calls if c.method in ("chat.postMessage", "chat.update")
             and f"REL-{rid} " in (c.args.get("text") or "") and not c.args.get("thread_ts")]
    return json.dumps(calls[-1].args["blocks"])


def test_lead_time_flag_blocks_approval_until_a_release_manager_overrides(bot, db):
    bot.command(req(start="2026-11-25 14:00"), user="U0DEV")  # 2 days out; minor needs 7
    [flag] = flags(db)
    assert flag.kind == "lead_time" and "needs at least 7d" in flag.detail
    assert "Planning checks flagged it" in reply(bot)
    shown = approval_blocks(bot)
    assert "needs at least 7d" in shown and "Next free slots" in shown and "<!date^" in shown
    bot.command("go REL-1", user="U0RM")
    bot.command("go REL-1", user="U0QA")
    assert state(db) == "pending"
    bot.command('override REL-1 kind=lead_time reason="customer commitment"', user="U0QA")
    assert "needs the release_manager role" in reply(bot)
    bot.command('override REL-1 kind=lead_time reason="customer commitment"', user="U0RM")
    assert state(db) == "approved"
    [f] = flags(db)
    assert (f.overridden_by, f.override_reason) == ("U0RM", "customer commitment")
    with Session(db) as s:
        refused = s.exec(select(AuditEvent).where(AuditEvent.action == "override_refused")).one()
    assert refused.actor == "U0QA" and refused.after["code"] == "wrong_role"


def test_blackout_flag_names_the_blackout_and_needs_an_executive(bot, db):
    bot.command('blackout add name="Peak trading" start="2026-11-30 00:00" end="2026-12-03 00:00" tz=UTC '
                'environments=production', user="U0RM")
    assert "Blackout 1 'Peak trading' added" in reply(bot)
    bot.command(req(), user="U0DEV")
    [flag] = flags(db)
    assert flag.kind == "blackout" and "Peak trading" in flag.detail and flag.ref == "blackout:1"
    bot.command('override REL-1 kind=blackout reason="regulator deadline"', user="U0RM")
    assert "needs the executive role" in reply(bot) and "VP-level" in reply(bot)
    bot.command('override REL-1 kind=blackout reason="regulator deadline"', user="U0EXEC")
    assert flags(db)[0].overridden_by == "U0EXEC"


def test_blackout_scoped_to_another_service_does_not_flag(bot, db):
    bot.command('blackout add name="Ledger freeze" start="2026-11-30 00:00" end="2026-12-03 00:00" tz=UTC '
                'services=ledger', user="U0RM")
    bot.command(req(service="payments"), user="U0DEV")
    assert flags(db) == []


def test_conflicts_name_the_other_release_and_the_environment_limit(bot, db):
    bot.command(req(service="payments"), user="U0DEV")
    bot.command(req(service="payments", start="2026-12-01 14:30"), user="U0DEV")
    bot.command(req(service="ledger", start="2026-12-01 14:15"), user="U0DEV")
    assert [(f.kind, f.ref) for f in flags(db, 2)] == [("conflict", "REL-1"), ("conflict", "env:production")]
    assert "overlaps REL-1" in flags(db, 2)[0].detail
    [env] = flags(db, 3)
    assert env.ref == "env:production" and "REL-1" in env.detail and "(1)" in env.detail


def test_reschedule_into_a_clean_window_clears_flags_and_resets_votes(bot, db):
    bot.command(req(service="payments"), user="U0DEV")
    bot.command(req(service="payments", start="2026-12-01 14:30"), user="U0DEV")
    bot.command("go REL-2", user="U0RM")
    assert flags(db, 2)
    bot.command('reschedule REL-2 start="2026-12-02 14:00"', user="U0DEV")
    assert flags(db, 2) == [] and len(flags(db, 2, open_only=False)) == 2
    bot.command("go REL-2", user="U0RM")
    bot.command("go REL-2", user="U0QA")
    assert state(db, 2) == "approved"


def test_blackout_warning_is_posted_once_a_day_ahead_and_not_again_after_restart(db, clock, policy, emulator):
    first = start_bot(db, clock, policy, emulator)
    try:
        first.command('blackout add name="Friday freeze" start="2026-11-27 16:00" end="2026-11-30 08:00" '
                      'tz=Europe/London repeat="FREQ=WEEKLY;BYDAY=FR"', user="U0RM")
        first.command(req(start="2026-12-04 17:00", tz="Europe/London"), user="U0DEV")
        clock.set(datetime(2026, 11, 26, 15, 59, tzinfo=UTC))
        first.deliver()
        assert not [c for c in emulator.calls_to("chat.postMessage") if "Friday freeze" in c.args["text"]]
        clock.set(datetime(2026, 11, 26, 16, 0, tzinfo=UTC))
        first.deliver()
        [warning] = [c for c in emulator.calls_to("chat.postMessage") if "Friday freeze" in c.args["text"]]
        assert "No release is scheduled inside it" in json.dumps(warning.args["blocks"])
    finally:
        first.slack.close()
        first.server.close()
    second = start_bot(db, clock, policy, emulator)  # a restart: same database, new process state
    try:
        second.svc.refresh_calendars()
        second.deliver()
        assert len([c for c in emulator.calls_to("chat.postMessage") if "Friday freeze" in c.args["text"]]) == 1
        clock.set(datetime(2026, 12, 3, 16, 0, tzinfo=UTC))  # the next Friday's warning lists REL-1
        second.svc.refresh_calendars()
        second.deliver()
        warnings = [c for c in emulator.calls_to("chat.postMessage") if "Friday freeze" in c.args["text"]]
        assert len(warnings) == 2 and "REL-1" in json.dumps(warnings[1].args["blocks"])
    finally:
        second.slack.close()
        second.server.close()


def test_calendar_agenda_uses_date_tokens_and_gives_the_feed_url(cal_bot, db):
    cal_bot.command(req(start="2026-12-01 14:00"), user="U0DEV")
    cal_bot.command('blackout add name="Close" start="2026-11-30 00:00" end="2026-11-30 23:00" tz=UTC', user="U0RM")
    cal_bot.command("calendar days=14", user="U0DEV")
    shown = json.dumps(cal_bot.emulator.calls_to("response_url")[-1].args["blocks"])
    assert "REL-1" in shown and "Close" in shown and "<!date^" in shown
    assert "https://releases.example.com/calendar.ics?token=U0DEV." in shown


def feed_url(bot, user="U0DEV") -> str:
    bot.command("calendar", user=user)
    shown = json.dumps(bot.emulator.calls_to("response_url")[-1].args["blocks"])
    token = shown.split("calendar.ics?token=")[1].split(" ")[0].split('"')[0]
    return f"{bot.url}/calendar.ics?token={token}"


def test_ics_feed_round_trip_keeps_uids_and_increases_sequence(cal_bot, db):
    cal_bot.command(req(start="2026-12-01 14:00", tz="Europe/London"), user="U0DEV")
    cal_bot.command('blackout add name="Friday freeze" start="2026-12-04 16:00" end="2026-12-07 08:00" '
                    'tz=America/New_York repeat="FREQ=WEEKLY;BYDAY=FR"', user="U0RM")
    url = feed_url(cal_bot)
    first = httpx.get(url)
    assert first.status_code == 200 and first.headers["content-type"] == "text/calendar; charset=utf-8"
    cal = Calendar.from_ical(first.content)
    assert cal.get("METHOD") is None
    events = {str(e["UID"]): e for e in cal.walk("VEVENT")}
    assert set(events) == {"release-1@releases.example.com", "blackout-1@releases.example.com"}
    assert {str(t["TZID"]) for t in cal.walk("VTIMEZONE")} == {"Europe/London", "America/New_York"}
    assert events["release-1@releases.example.com"]["DTSTART"].params["TZID"] == "Europe/London"
    assert "FREQ=WEEKLY" in events["blackout-1@releases.example.com"]["RRULE"].to_ical().decode()
    seq = int(events["release-1@releases.example.com"]["SEQUENCE"])
    cal_bot.command("edit REL-1 version=1.0.1", user="U0DEV")
    cal_bot.command('cancel REL-1 reason="superseded"', user="U0DEV")
    again = {str(e["UID"]): e for e in Calendar.from_ical(httpx.get(url).content).walk("VEVENT")}
    assert int(again["release-1@releases.example.com"]["SEQUENCE"]) > seq
    assert str(again["release-1@releases.example.com"]["STATUS"]) == "CANCELLED"


@pytest.mark.parametrize("query", ["", "?token=", "?token=U0DEV.0000", "?token=nobody"])
def test_feed_with_a_wrong_or_missing_token_is_404(cal_bot, query):
    assert httpx.get(f"{cal_bot.url}/calendar.ics{query}").status_code == 404


def test_feed_filters_by_service(cal_bot, db):
    cal_bot.command(req(service="payments"), user="U0DEV")
    cal_bot.command(req(service="ledger", start="2026-12-02 14:00"), user="U0DEV")
    url = feed_url(cal_bot) + "&service=ledger"
    uids = {str(e["UID"]) for e in Calendar.from_ical(httpx.get(url).content).walk("VEVENT")}
    assert uids == {"release-2@releases.example.com"}


ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:weekly@test
DTSTART;TZID=Europe/London:20261204T160000
DTEND;TZID=Europe/London:20261204T180000
RRULE:FREQ=WEEKLY;COUNT=3
SUMMARY:Payroll run
END:VEVENT
BEGIN:VEVENT
UID:weekly@test
RECURRENCE-ID;TZID=Europe/London:20261211T160000
DTSTART;TZID=Europe/London:20261211T100000
DTEND;TZID=Europe/London:20261211T120000
SUMMARY:Payroll run (moved)
END:VEVENT
BEGIN:VEVENT
UID:weekly@test
RECURRENCE-ID;TZID=Europe/London:20261218T160000
DTSTART;TZID=Europe/London:20261218T160000
DTEND;TZID=Europe/London:20261218T180000
STATUS:CANCELLED
SUMMARY:Payroll run
END:VEVENT
END:VCALENDAR
"""


class CalendarServer:
    """A calendar host on 127.0.0.1 that can serve, refuse with 503, and answer 304 to a matching ETag."""

    def __init__(self):
        self.body, self.fail, self.requests, self.etag = ICS, False, [], '"v1"'
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(dict(self.headers))
                if outer.fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                if self.headers.get("If-None-Match") == outer.etag:
                    self.send_response(304)
                    self.end_headers()
                    return
                data = outer.body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/calendar")
                self.send_header("ETag", outer.etag)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/holidays.ics"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def calendar_host():
    host = CalendarServer()
    yield host
    host.close()


@pytest.fixture
def allow_bot(db, clock, policy, emulator):
    """Calendar hosts in tests are on 127.0.0.1, which only the allow-list admits."""
    yield from serving(start_bot(db, clock, policy, emulator, {"RELEASEBOT_CALENDAR_ALLOW": "127.0.0.1",
                                                      "RELEASEBOT_PUBLIC_URL": "https://releases.example.com"}))


def every_slack_call(bot) -> str:
    return json.dumps([c.args for c in bot.emulator.calls], default=str)


def test_subscribed_calendar_becomes_blackouts_with_overrides_and_cancellations(allow_bot, db, calendar_host):
    bot = allow_bot
    bot.command(f'blackout subscribe url={calendar_host.url} name="Payroll" tz=Europe/London', user="U0RM")
    subscribed, fetched = [c.args.get("text") or "" for c in bot.emulator.calls_to("response_url")[-2:]]
    assert "Subscribed to 'Payroll'" in subscribed and "you will be told" in subscribed
    assert "The calendar 'Payroll' is fetched" in fetched
    bot.command("blackout list", user="U0RM")
    listed = json.dumps(bot.emulator.calls_to("response_url")[-1].args["blocks"])
    assert "Payroll" in listed and "subscribed calendar" in listed
    bot.command(req(start="2026-12-11 10:30"), user="U0DEV")  # the moved instance
    bot.command(req(start="2026-12-18 16:30", service="ledger"), user="U0DEV")  # the cancelled one
    bot.command(req(start="2026-12-04 16:30", service="billing"), user="U0DEV")  # a normal one
    assert [f.kind for f in flags(db, 1)] == ["blackout"] and "Payroll run (moved)" in flags(db, 1)[0].detail
    assert flags(db, 2) == []
    assert [f.kind for f in flags(db, 3)] == ["blackout"]


def test_failed_fetch_keeps_the_last_copy_and_warns_once(allow_bot, db, clock, calendar_host):
    bot = allow_bot
    bot.command(f'blackout subscribe url={calendar_host.url} name="Payroll" tz=Europe/London', user="U0RM")
    calendar_host.fail = True
    for _ in range(3):
        clock.advance(hours=3)
        bot.svc.refresh_calendars()
    warnings = [c for c in bot.emulator.calls_to("chat.postMessage") if "could not be fetched" in c.args["text"]]
    assert len(warnings) == 1 and "last good copy stays" in warnings[0].args["text"]
    bot.command(req(start="2026-12-04 16:30"), user="U0DEV")
    assert [f.kind for f in flags(db)] == ["blackout"]  # still known from the last good copy
    calendar_host.fail = False
    clock.advance(hours=3)
    bot.svc.refresh_calendars()
    assert calendar_host.requests[-1].get("If-None-Match") == '"v1"'  # conditional GET: 304, copy kept


def test_a_loopback_calendar_is_refused_without_the_allow_list(bot, db, calendar_host):
    bot.command(f'blackout subscribe url={calendar_host.url} name="Payroll"', user="U0RM")
    assert "refused by policy: address not allowed" in reply(bot) and "RELEASEBOT_CALENDAR_ALLOW" in reply(bot)
    assert calendar_host.requests == []  # never contacted
    with Session(db) as s:
        assert s.exec(select(CalendarSubscription)).all() == []


def test_the_bots_own_feed_cannot_be_subscribed(allow_bot, db):
    allow_bot.command('blackout subscribe url=https://releases.example.com/calendar.ics?token=abc name="Loop"',
                      user="U0RM")
    assert "the bot's own address" in reply(allow_bot)
    with Session(db) as s:
        assert s.exec(select(CalendarSubscription)).all() == []


def test_a_server_answering_with_secrets_never_has_them_quoted(allow_bot, db, calendar_host):
    calendar_host.body = "DB_PASSWORD=secret\r\nAWS_SECRET_ACCESS_KEY=secret2\r\n"
    allow_bot.command(f'blackout subscribe url={calendar_host.url} name="Payroll"', user="U0RM")
    assert calendar_host.requests  # it was fetched (the allow-list admits 127.0.0.1)
    [warning] = [c for c in allow_bot.emulator.calls_to("chat.postMessage") if "could not be fetched" in c.args["text"]]
    assert "not an iCalendar file" in warning.args["text"]
    assert "secret" not in every_slack_call(allow_bot).lower()
    with Session(db) as s:
        [sub] = s.exec(select(CalendarSubscription)).all()
        assert sub.last_error == "not an iCalendar file" and sub.body is None
        assert "secret" not in json.dumps([o.payload for o in s.exec(select(Outbox))]).lower()
    allow_bot.command("blackout list", user="U0RM")
    assert "not an iCalendar file" in json.dumps(allow_bot.emulator.calls_to("response_url")[-1].args["blocks"])


def test_a_calendar_cut_at_the_cap_says_so_once_and_in_the_list(allow_bot, db, clock, calendar_host):
    calendar_host.body = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:f@test\r\n"
                          "DTSTAMP:20260101T000000Z\r\nDTSTART:20270601T000000Z\r\nDURATION:PT1M\r\n"
                          "RRULE:FREQ=MINUTELY;COUNT=1000000000\r\nSUMMARY:Flood\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    allow_bot.command(f'blackout subscribe url={calendar_host.url} name="Flood"', user="U0RM")
    clock.advance(hours=3)
    allow_bot.svc.refresh_calendars()  # a 304 and the kept copy applied again: no second note
    notes = [c for c in allow_bot.emulator.calls_to("chat.postMessage") if "was cut short" in c.args["text"]]
    assert len(notes) == 1 and "at most 5000" in notes[0].args["text"]
    allow_bot.command("blackout list", user="U0RM")
    assert "cut short" in json.dumps(allow_bot.emulator.calls_to("response_url")[-1].args["blocks"])


def test_only_release_managers_manage_blackouts(bot, db):
    bot.command('blackout add name="x" start="2026-12-01 00:00" end="2026-12-02 00:00" tz=UTC', user="U0QA")
    assert "Only a release manager" in reply(bot)
    bot.command('blackout add name="x" start="2026-12-01 00:00" end="2026-11-30 00:00" tz=UTC', user="U0RM")
    assert "end: must be after start" in reply(bot) and "/release blackout add" in reply(bot)
    bot.command('blackout add name="x" start="2026-12-01 00:00" end="2026-12-02 00:00" tz=UTC repeat="FREQ=NEVER"',
                user="U0RM")
    assert "repeat:" in reply(bot) and "RRULE" in reply(bot)
    bot.command('blackout add name="x" start="2026-12-01 00:00" end="2026-12-01 00:05" tz=UTC '
                'repeat="FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23;'
                'BYMINUTE=0,10,20,30,40,50"', user="U0RM")
    assert "repeat: a blackout repeats at most daily" in reply(bot) and "BYHOUR" in reply(bot)
    bot.command("blackout remove 9", user="U0RM")
    assert "there is no blackout 9" in reply(bot)


def test_show_lists_planning_flags_and_how_they_were_resolved(bot, db):
    bot.command(req(start="2026-11-25 14:00"), user="U0DEV")
    bot.command('override REL-1 kind=lead_time reason="hotfix for a customer"', user="U0RM")
    bot.command("show REL-1", user="U0OPS")
    shown = json.dumps(bot.emulator.calls_to("response_url")[-1].args["blocks"])
    assert "Planning checks" in shown and "lead_time" in shown and "hotfix for a customer" in shown


def thread_texts(bot) -> list[str]:
    return [c.args.get("text") or "" for c in bot.emulator.calls_to("chat.postMessage") if c.args.get("thread_ts")]


def test_a_blackout_added_over_an_approved_release_flags_it_and_only_an_executive_lifts_it(bot, db):
    bot.command(req(), user="U0DEV")
    bot.command("go REL-1", user="U0RM")
    bot.command("go REL-1", user="U0QA")
    assert state(db) == "approved"
    bot.command('blackout add name="Peak trading" start="2026-11-30 00:00" end="2026-12-03 00:00" tz=UTC',
                user="U0RM")
    assert "It covers REL-1" in reply(bot)
    assert state(db) == "pending" and [f.ref for f in flags(db)] == ["blackout:1"]
    assert any("Blackout *Peak trading*" in t and "no longer approved" in t and "<!date^" in t
               for t in thread_texts(bot))
    assert "Peak trading" in approval_blocks(bot)
    bot.command("blackout remove 1", user="U0RM")
    assert "covers REL-1" in reply(bot) and "needs the executive role" in reply(bot)
    bot.command('reschedule REL-1 start="2026-12-01 14:01"', user="U0RM")  # the old bypass
    assert [f.ref for f in flags(db)] == ["blackout:1"]
    bot.command("go REL-1", user="U0RM")
    bot.command("go REL-1", user="U0QA")
    assert state(db) == "pending"
    bot.command("blackout remove 1", user="U0EXEC")
    assert "needs a written reason" in reply(bot)
    bot.command('blackout remove 1 reason="the board lifted the freeze"', user="U0EXEC")
    assert "Its flag is cleared on REL-1" in reply(bot)
    assert state(db) == "approved" and flags(db) == []
    assert any("lifted by <@U0EXEC>" in t and "the board lifted the freeze" in t for t in thread_texts(bot))
    with Session(db) as s:
        refused = s.exec(select(AuditEvent).where(AuditEvent.action == "blackout_remove_refused")).one()
    assert (refused.actor, refused.release_id, refused.after["releases"]) == ("U0RM", None, ["REL-1"])


def test_cancelling_a_release_clears_the_conflict_it_caused_in_the_others_thread(bot, db):
    bot.command(req(), user="U0DEV")
    bot.command(req(start="2026-12-01 14:30", service="ledger"), user="U0DEV")
    assert [f.ref for f in flags(db, 2)] == ["env:production"]
    bot.command('cancel REL-1 reason="merged into REL-2"', user="U0DEV")
    assert flags(db, 2) == []
    assert any("REL-1 was cancelled, so it no longer conflicts with REL-2" in t for t in thread_texts(bot))


@pytest.fixture
def windowed_bot(db, clock, emulator):
    from commands.policy import Policy
    from conftest import ROLES
    policy = Policy.from_mapping({"roles": ROLES, "calendar": {"windows": {"production": {
        "days": "Mon-Thu", "start": "09:00", "end": "16:00", "tz": "Europe/London"}}}}, source="test policy")
    yield from serving(start_bot(db, clock, policy, emulator))


def test_a_request_outside_the_deployment_windows_is_flagged_with_the_free_slots(windowed_bot, db):
    bot = windowed_bot
    bot.command(req(start="2026-12-05 10:00"), user="U0DEV")  # a Saturday
    assert "falls outside the production deployment windows" in reply(bot)
    shown = approval_blocks(bot)
    assert "deployment windows" in shown and "Next free slots" in shown
    bot.command("go REL-1", user="U0RM")
    bot.command("go REL-1", user="U0QA")
    assert state(db) == "pending"
    bot.command('override REL-1 kind=window reason="weekend traffic is lowest"', user="U0RM")
    assert state(db) == "approved"
    assert "kind=lead_time|window|blackout|conflict" in bot.command("help", user="U0DEV").json()["text"]


def test_a_calendar_event_moved_onto_a_release_flags_it_and_one_moved_off_holds_its_flag(allow_bot, db, clock,
                                                                                         calendar_host):
    bot = allow_bot
    bot.command(f'blackout subscribe url={calendar_host.url} name="Payroll" tz=Europe/London', user="U0RM")
    bot.command(req(start="2026-12-04 16:30", service="billing"), user="U0DEV")  # in the 4 December run
    bot.command(req(start="2026-12-09 10:30", service="ledger"), user="U0DEV")  # clean, then approved
    bot.command("go REL-2", user="U0RM")
    bot.command("go REL-2", user="U0QA")
    assert [f.kind for f in flags(db, 1)] == ["blackout"] and flags(db, 2) == [] and state(db, 2) == "approved"
    calendar_host.body = ICS.replace("DTSTART;TZID=Europe/London:20261204T160000",
                                     "DTSTART;TZID=Europe/London:20261209T100000").replace(
        "DTEND;TZID=Europe/London:20261204T180000", "DTEND;TZID=Europe/London:20261209T120000")
    calendar_host.etag = '"v2"'
    clock.advance(hours=3)
    bot.svc.refresh_calendars()
    assert [f.kind for f in flags(db, 2)] == ["blackout"] and state(db, 2) == "pending"
    assert [f.kind for f in flags(db, 1)] == ["blackout"]  # moved off, but only an executive shortens a blackout
    texts = thread_texts(bot)
    assert any("now covers REL-2" in t and "no longer approved" in t for t in texts)
    assert any("*Payroll run* no longer covers REL-1" in t and "needs an executive" in t for t in texts)
