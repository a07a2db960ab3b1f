"""A writer holding the database starves no ack: reads go on, and what must write before its ack
waits about a second, answers "busy, nothing was recorded" in that ack, and works when sent again.

The lock is held by the test's own connection (held_locks) for as long as the test says, so
nothing here sleeps: a read that waited for it, or an ack that did, would still be waiting when
the client (10 s) or the listeners' idle wait (10 s) gives up, well short of the 30 s long wait.
"""
from __future__ import annotations

import os

import httpx
from sqlmodel import Session, select

from bot.feed import token_for
from held_locks import release_row_locked, writer_holds_the_database
from slack_client import Recorder
from storage.models import Blackout, Release, Vote
from test_request_modal import values

LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-01 14:00" tz=Europe/London '
        'duration=60m summary="Add refunds"')
BLACKOUT = 'blackout add name="Peak trading" start="2026-11-30 00:00" end="2026-12-03 00:00" tz=UTC'
BUSY = ":hourglass: releasebot is busy; nothing was recorded. Try again in a moment."
FORM = values()  # a valid request form's state.values


def rows(db, model):
    with Session(db) as s:
        return list(s.exec(select(model)))


def answers(bot, prefix: str) -> list[str]:
    return [c.args.get("text") or "" for c in bot.emulator.calls_to("response_url")
            if (c.response_url_name or "").startswith(prefix)]


def click_go(bot, user: str):
    post = bot.emulator.calls_to("chat.postMessage")[0]
    return bot.click("vote_go", "1", user=user, channel=post.response["channel"], message_ts=post.response["ts"])


def test_show_list_and_the_feed_answer_while_a_writer_holds_the_database(bot, db, db_url):
    bot.command(LINE, user="U0DEV")
    feed = f"{bot.url}/calendar.ics?token={token_for(bot.svc, 'U0DEV')}"
    with writer_holds_the_database(db_url):
        assert bot.command("show REL-1", user="U0DEV").status_code == 200
        assert bot.command("list mine", user="U0DEV").status_code == 200
        got = httpx.get(feed, timeout=10)
        health = httpx.get(f"{bot.url}/healthz", timeout=10)
    assert health.status_code == 200
    shown, listed = bot.emulator.calls_to("response_url")[-2:]
    assert shown.args["text"] == "REL-1" and "Add refunds" in str(shown.args["blocks"])
    assert listed.args["text"] == "Releases" and "REL-1" in str(listed.args["blocks"])
    assert got.status_code == 200 and "UID:release-1@127.0.0.1" in got.text


def test_a_go_click_is_answered_busy_while_a_writer_holds_the_database_and_counts_when_sent_again(bot, db, db_url):
    bot.command(LINE, user="U0DEV")
    wire = Recorder(bot.slack)
    with writer_holds_the_database(db_url):
        assert click_go(bot, "U0QA").status_code == 200
        assert answers(bot, "action-") == [BUSY]
    assert rows(db, Vote) == []
    wire.replay(bot)  # the very same click: not taken for a replay, since nothing was kept of it
    [vote] = rows(db, Vote)
    assert (vote.voter_id, vote.decision) == ("U0QA", "go")
    assert answers(bot, "action-") == [BUSY, "Your Go on REL-1 is recorded as qa_lead."]  # the same click's url


def test_a_request_form_is_answered_busy_in_its_ack_and_makes_the_release_when_submitted_again(bot, db, db_url):
    wire = Recorder(bot.slack)
    with writer_holds_the_database(db_url):
        r = bot.submit("release_request", FORM, user="U0DEV", view_id="V0BUSY")
        body = r.json()
        assert body["response_action"] == "errors" and list(body["errors"].values()) == [BUSY]  # the form stays open
    assert rows(db, Release) == []
    r = wire.replay(bot)
    assert r.status_code == 200 and r.text == ""  # the form closes: done
    [release] = rows(db, Release)
    assert (release.service, release.request_key) == ("payments", "view:V0BUSY")


def test_a_command_that_writes_is_answered_busy_in_its_ack(bot, db, db_url):
    wire = Recorder(bot.slack)
    with writer_holds_the_database(db_url):
        r = bot.command(BLACKOUT, user="U0RM")
        assert r.json() == {"response_type": "ephemeral", "text": BUSY}
    assert rows(db, Blackout) == [] and answers(bot, "command-") == []
    wire.replay(bot)
    [blackout] = rows(db, Blackout)
    assert blackout.name == "Peak trading"
    [answer] = answers(bot, "command-")
    assert answer.startswith("Blackout 1 'Peak trading' added")


if os.environ.get("RELEASEBOT_TEST_DATABASE_URL"):
    # PostgreSQL locks rows: a decision holding a release keeps the Go click's work waiting after its ack,
    # never the ack itself (the claim of the click touches no release).
    def test_a_locked_release_holds_up_the_go_clicks_work_but_not_its_ack(bot, db, db_url):
        bot.command(LINE, user="U0DEV")
        post = bot.emulator.calls_to("chat.postMessage")[0]
        with release_row_locked(db_url, 1):
            assert bot.command("show REL-1", user="U0DEV").status_code == 200  # reads take no row lock
            assert bot.emulator.calls_to("response_url")[-1].args["text"] == "REL-1"
            r = bot.slack.block_action("vote_go", "1", user="U0QA", channel=post.response["channel"],
                                       message_ts=post.response["ts"])
            assert r.status_code == 200 and r.text == ""  # acked while the release is still held
            assert rows(db, Vote) == []  # its work waits for the lock
        bot.idle()
        [vote] = rows(db, Vote)
        # the click's own answer once the lock is gone, never "busy"
        assert vote.decision == "go" and answers(bot, "action-") == ["Your Go on REL-1 is recorded as qa_lead."]
