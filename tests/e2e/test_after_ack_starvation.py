"""After-ack work is not starved: a stalled calendar host or someone else's backlog never holds up a click.

The calendar host here stalls every fetch until the test lets it go (an Event), so the
assertions are about order: the Go click is recorded while the fetch is still stalled.
"""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlmodel import Session, select

from bot import calendar_sync
from bot.messages.release import GO_ACTION
from commands import announce
from storage.db import transaction
from storage.models import Outbox, Release, Vote

from conftest import start_bot

ICS = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:freeze-1@test\r\n"
       "DTSTAMP:20261101T000000Z\r\nDTSTART:20261224T000000Z\r\nDTEND:20261226T000000Z\r\nSUMMARY:Freeze\r\n"
       "END:VEVENT\r\nEND:VCALENDAR\r\n")
REQUEST = ('request service=payments version=1.0.0 type=minor flags=feature start="2026-12-01 14:00" tz=UTC '
           'duration=60m summary="Change payments"')


class StallingCalendar:
    """A calendar host on 127.0.0.1 that holds every request until `go` is set."""

    def __init__(self):
        self.arrived, self.go, self.served = threading.Event(), threading.Event(), 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.arrived.set()
                outer.go.wait(30)
                data = ICS.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/calendar")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                outer.served += 1

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/slow.ics"

    def close(self):
        self.go.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_host():
    host = StallingCalendar()
    yield host
    host.close()


@pytest.fixture
def allow_bot(db, clock, policy, emulator, slow_host):
    running = start_bot(db, clock, policy, emulator, {"RELEASEBOT_CALENDAR_ALLOW": "127.0.0.1"})
    yield running
    slow_host.go.set()  # whatever happened, nothing may stay stalled past the test
    running.slack.close()
    running.server.close()
    running.thread.join(timeout=5)
    running.executor.shutdown(wait=True)
    calendar_sync.wait_idle(30)


def test_a_stalled_calendar_fetch_does_not_hold_up_a_go_click(allow_bot, db, slow_host):
    bot = allow_bot
    bot.command(REQUEST, user="U0DEV")
    # More subscriptions than the listener executor has workers, each asking for a fetch now.
    for n in range(9):
        r = bot.slack.command(f'blackout subscribe url={slow_host.url}?n={n} name="Slow {n}"', user="U0RM")
        assert r.status_code == 200
    assert slow_host.arrived.wait(10)
    bot.slack.block_action(GO_ACTION, "1", user="U0QA")
    bot.executor.wait_idle()  # every listener's after-ack work is done …
    assert not slow_host.go.is_set() and slow_host.served == 0  # … while the fetch is still stalled
    with Session(db) as s:
        [vote] = s.exec(select(Vote)).all()
        assert (vote.voter_id, vote.decision) == ("U0QA", "go")
    answers = [c.args.get("text") or "" for c in bot.emulator.calls_to("response_url")]
    assert sum("you will be told when it is in" in a for a in answers) == 9

    slow_host.go.set()
    calendar_sync.wait_idle(30)
    told = [c.args.get("text") or "" for c in bot.emulator.calls_to("response_url")]
    assert sum("is fetched: its events are blackouts now" in t for t in told) == 9


def test_a_click_sends_only_its_own_releases_messages(bot, db, clock):
    bot.command(REQUEST, user="U0DEV")
    bot.command(REQUEST.replace("payments", "ledger"), user="U0DEV")
    with transaction(db) as s:  # someone else's row, due now: the scheduler's, not the clicker's
        other = s.get(Release, 2)
        announce.reminder(s, other, "approval_sla", clock.now(), clock.now(), key_suffix="someone-else")
    bot.click(GO_ACTION, "1", user="U0QA")
    due = select(Outbox).where(Outbox.sent_at.is_(None), Outbox.due_at <= clock.now())
    with Session(db) as s:
        rows = list(s.exec(due))
        assert [(r.release_id, r.key) for r in rows] == [(2, "reminder:2:approval_sla:someone-else")]
    updates = [c for c in bot.emulator.calls_to("chat.update") if "REL-1" in (c.args.get("text") or "")]
    assert updates, "the clicker's own release message is updated at once"
    assert bot.deliver() >= 0
    with Session(db) as s:
        assert s.exec(due).all() == []


@pytest.fixture
def hold(db):
    """Another writer holding the database (SQLite's write lock; PostgreSQL's lock on the inbox) until let go."""
    if db.dialect.name == "sqlite":
        import sqlite3
        conn = sqlite3.connect(db.url.database, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        let_go = conn.close  # closing rolls back
    else:
        from sqlalchemy import text
        conn = db.connect()
        conn.begin()
        conn.execute(text("LOCK TABLE inbox IN EXCLUSIVE MODE"))
        let_go = conn.close
    yield let_go
    let_go()


def test_a_held_database_is_answered_busy_in_the_ack_and_nothing_is_done(bot, db, hold):
    r = bot.slack.command(REQUEST, user="U0DEV")
    assert r.status_code == 200 and "busy" in r.json()["text"]
    hold()
    bot.executor.wait_idle()
    with Session(db) as s:
        assert s.exec(select(Release)).all() == []
    bot.command(REQUEST, user="U0DEV")  # trying again works
    with Session(db) as s:
        assert len(s.exec(select(Release)).all()) == 1
