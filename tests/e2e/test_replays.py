"""A signed delivery counts once: a replayed click, command or submission inside Slack's five-minute
signature window is answered "already done" and changes nothing; Slack's own retries are dropped silently."""
from __future__ import annotations

import json
from urllib.parse import parse_qs

from sqlmodel import Session, select

from slack_client import Recorder
from storage.models import AuditEvent, Blackout, Release, Vote

LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-01 14:00" tz=Europe/London '
        'duration=60m summary="Add refunds"')
BLACKOUT = 'blackout add name="Peak trading" start="2026-11-30 00:00" end="2026-12-03 00:00" tz=UTC'


def vote_of(db, user: str) -> Vote:
    with Session(db) as s:
        return s.exec(select(Vote).where(Vote.voter_id == user)).one()


def actions(db) -> list[str]:
    with Session(db) as s:
        return [e.action for e in s.exec(select(AuditEvent).order_by(AuditEvent.id))]


def click_go(bot, user: str):
    post = bot.emulator.calls_to("chat.postMessage")[0]
    return bot.click("vote_go", "1", user=user, channel=post.response["channel"], message_ts=post.response["ts"])


def answers_to(bot, url_name_prefix: str) -> list[str]:
    return [c.args.get("text") or "" for c in bot.emulator.calls_to("response_url")
            if (c.response_url_name or "").startswith(url_name_prefix)]


def test_a_replayed_go_click_does_not_bring_a_withdrawn_vote_back(bot, db):
    bot.command(LINE, user="U0DEV")
    wire = Recorder(bot.slack)
    click_go(bot, "U0QA")
    click = len(wire.sent) - 1
    assert vote_of(db, "U0QA").decision == "go"
    bot.command("withdraw REL-1", user="U0QA")
    assert vote_of(db, "U0QA").decision == "withdrawn"
    updates = len(bot.emulator.calls_to("chat.update"))

    r = wire.replay(bot, click)
    assert r.status_code == 200
    assert vote_of(db, "U0QA").decision == "withdrawn"
    assert actions(db) == ["requested", "vote_go", "vote_withdrawn"]
    assert bot.deliver() == 0 and len(bot.emulator.calls_to("chat.update")) == updates
    # the person is told, on the click's own response_url, that it was handled the first time
    first, told = answers_to(bot, "action-")[-2:]  # the click, then its replay, on the same response_url
    assert "recorded" in first.lower()
    assert "already" in told.lower() and "nothing changed" in told.lower()


def test_two_different_clicks_by_the_same_person_both_count(bot, db):
    bot.command(LINE, user="U0DEV")
    click_go(bot, "U0QA")
    bot.command("withdraw REL-1", user="U0QA")
    click_go(bot, "U0QA")  # a new click: its own action_ts
    assert vote_of(db, "U0QA").decision == "go"
    assert actions(db) == ["requested", "vote_go", "vote_withdrawn", "vote_go"]
    assert not [t for t in answers_to(bot, "action-") if "already" in t.lower()]


def test_a_replayed_blackout_add_makes_one_blackout(bot, db):
    wire = Recorder(bot.slack)
    bot.command(BLACKOUT, user="U0RM", trigger_id="4242.1.abc")
    r = wire.replay(bot)
    with Session(db) as s:
        assert len(list(s.exec(select(Blackout)))) == 1
    assert r.json()["response_type"] == "ephemeral" and "already" in r.json()["text"].lower()
    assert len(answers_to(bot, "command-")) == 1  # the first delivery's answer, and only that


def test_slack_retrying_a_command_is_dropped_without_a_second_answer(bot, db):
    wire = Recorder(bot.slack)
    bot.command(LINE, user="U0DEV", trigger_id="111.222.abc")
    r = wire.replay(bot, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert r.status_code == 200 and r.text == ""
    with Session(db) as s:
        assert len(list(s.exec(select(Release)))) == 1
    assert len(bot.emulator.calls_to("chat.postMessage")) == 1
    [answer] = answers_to(bot, "command-")
    assert answer.startswith("REL-1 requested")


def test_a_replayed_click_on_a_retry_header_is_dropped_silently(bot, db):
    bot.command(LINE, user="U0DEV")
    wire = Recorder(bot.slack)
    click_go(bot, "U0QA")
    bot.command("withdraw REL-1", user="U0QA")
    r = wire.replay(bot, 0, **{"X-Slack-Retry-Num": "2"})
    assert r.status_code == 200
    assert vote_of(db, "U0QA").decision == "withdrawn"
    assert answers_to(bot, "action-") == ["Your Go on REL-1 is recorded as qa_lead."]  # the first click's


def test_a_replayed_view_submission_is_already_done_but_a_corrected_one_counts(bot, db):
    bot.command(LINE, user="U0DEV")
    post = bot.emulator.calls_to("chat.postMessage")[0]
    bot.click("vote_nogo", "1", user="U0QA", channel=post.response["channel"], message_ts=post.response["ts"])
    meta = bot.emulator.calls_to("views.open")[0].args["view"]["private_metadata"]
    wire = Recorder(bot.slack)
    r = bot.submit("nogo_reason", {"reason": {"reason": {"value": " "}}}, user="U0QA", view_id="V0NOGO",
                   private_metadata=meta)
    assert r.json()["response_action"] == "errors"
    # Slack keeps the view as it was when it shows errors: the corrected submission may carry the same hash
    first, _ = wire.sent[-1]
    payload = json.loads(parse_qs(first.decode())["payload"][0])
    payload["view"]["state"]["values"] = {"reason": {"reason": {"value": "error budget spent"}}}
    bot.slack._send_payload(payload, None, None)
    bot.idle()
    assert vote_of(db, "U0QA").decision == "nogo"
    wire.replay(bot)
    assert vote_of(db, "U0QA").note == "error budget spent"
    assert actions(db) == ["requested", "vote_nogo"]
    assert "already" in bot.emulator.said_to("U0QA")[-1].lower()
