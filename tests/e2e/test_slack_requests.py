"""Request verification, escaping, and every command's clear answer to bad input."""
from __future__ import annotations

import time
from urllib.parse import urlencode

import pytest
from sqlmodel import Session, select

from storage.models import AuditEvent, Outbox, Release

LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-01 14:00" tz=Europe/London '
        'duration=60m summary="Add refunds"')


def count(db, model) -> int:
    with Session(db) as s:
        return len(list(s.exec(select(model))))


def reply(bot) -> str:
    return bot.emulator.calls_to("response_url")[-1].args["text"]


def command_body(text="request " + LINE.split(" ", 1)[1]):
    return urlencode({"command": "/release", "text": text, "user_id": "U0DEV", "team_id": "T0001",
                      "channel_id": "C0DEV", "trigger_id": "1.2.3", "response_url": "http://127.0.0.1:9/x"})


@pytest.mark.parametrize("case", ["unsigned", "forged", "stale", "wrong_secret"])
def test_unverified_requests_get_401_and_change_nothing(bot, db, case):
    body = command_body()
    if case == "unsigned":
        headers = {}
    elif case == "forged":
        headers = {**bot.slack.signed_headers(body), "X-Slack-Signature": "v0=" + "0" * 64}
    elif case == "stale":
        headers = bot.slack.signed_headers(body, timestamp=int(time.time()) - 6 * 60)
    else:
        from slack_client import SlackClient
        headers = SlackClient(bot.url, "not-the-secret").signed_headers(body)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    r = bot.slack.post_raw(body, headers)
    bot.idle()
    assert r.status_code == 401
    assert count(db, Release) == 0 and count(db, AuditEvent) == 0
    assert [c for c in bot.emulator.calls if c.method != "auth.test"] == []


def test_signed_request_just_inside_five_minutes_is_accepted(bot, db):
    bot.slack.command(LINE, user="U0DEV", timestamp=int(time.time()) - 4 * 60)
    bot.idle()
    assert count(db, Release) == 1


def test_user_text_is_escaped_so_nobody_can_ping_the_channel(bot, db):
    bot.command('request service=payments version=2.3.1 type=minor flags=feature '
                'start="2026-12-01 14:00" tz=Europe/London '
                'duration=60m summary="<!channel> & <@U0RM> <https://evil|click>"', user="U0DEV")
    with Session(db) as s:
        assert s.exec(select(Release)).one().summary == "<!channel> & <@U0RM> <https://evil|click>"
    post = bot.emulator.calls_to("chat.postMessage")[0]
    text = str(post.args["blocks"]) + post.args["text"]
    assert "<!channel>" not in text and "<@U0RM>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt; &amp; &lt;@U0RM&gt;" in text


def test_slack_escaped_input_is_stored_as_typed(bot, db):
    # Slack itself sends & < > escaped in slash command text.
    bot.command('request service=payments version=2.3.1 type=minor flags=feature '
                'start="2026-12-01 14:00" tz=Europe/London '
                'duration=60m summary="R&amp;D &lt;b&gt;"', user="U0DEV")
    with Session(db) as s:
        assert s.exec(select(Release)).one().summary == "R&D <b>"


@pytest.mark.parametrize("text, says, form", [
    ("deploy-all", "'deploy-all' is not a /release command", "/release help"),
    ('request service=payments version=1 type=huge flags=none start="2026-12-01 14:00" tz=UTC duration=1h summary=x',
     "'huge' is not a release type", "/release request service="),
    ('request service=payments version=1 type=minor flags=feature start="2026-13-01 14:00" tz=UTC duration=1h summary=x',
     "is not a date and time", "/release request service="),
    ('request service=payments version=1 type=minor flags=feature start="2026-12-01 14:00" tz=Europe/Londn duration=1h summary=x',
     "not an IANA time zone", "/release request service="),
    ('request service=payments version=1 type=minor flags=feature start="2026-12-01 14:00" tz=UTC duration=1h summary=x colour=red',
     "'colour' is not a field", "/release request service="),
    ('request summary="unclosed', "a quote is not closed", None),
    ("go REL-1 role=janitor", "'janitor' is not a role", "/release go REL-12"),
    ("go", "needs a release id", "/release go REL-12"),
    ("nogo REL-1", "a No-go needs a reason", "/release nogo REL-12"),
    ("cancel REL-1", "a cancellation needs a reason", "/release cancel REL-12"),
    ("show REL-99", "REL-99 does not exist", "/release show REL-12"),
    ("list everything", "list takes pending, upcoming or mine", "/release list"),
])
def test_bad_input_gets_an_ephemeral_answer_naming_what_is_wrong(bot, db, text, says, form):
    if text.startswith(("go REL-1", "nogo REL-1", "cancel REL-1")):
        bot.command(LINE, user="U0DEV")
    before = (count(db, Release), count(db, AuditEvent), count(db, Outbox))
    r = bot.command(text, user="U0RM")
    answer = r.json()["text"] if r.headers.get("content-type", "").startswith("application/json") else reply(bot)
    assert says in answer
    if form:
        assert form in answer
    assert "Traceback" not in answer
    assert (count(db, Release), count(db, AuditEvent), count(db, Outbox)) == before


def test_help_lists_every_command(bot):
    r = bot.command("help", user="U0DEV")
    text = r.json()["text"]
    for sub in ("request", "go", "nogo", "withdraw", "show", "list", "cancel", "edit", "accept"):
        assert f"/release {sub}" in text
    assert r.json()["response_type"] == "ephemeral"


def test_retried_delivery_of_a_request_creates_one_release(bot, db):
    bot.command(LINE, user="U0DEV", trigger_id="111.222.abc")
    bot.command(LINE, user="U0DEV", trigger_id="111.222.abc", retry_num=1)
    assert count(db, Release) == 1
    assert len(bot.emulator.calls_to("chat.postMessage")) == 1
    # the retry is the same delivery: dropped before the listener, so the person is answered once
    [answer] = bot.emulator.calls_to("response_url")
    assert answer.args["text"].startswith("REL-1 requested")


def test_a_retry_whose_first_delivery_never_arrived_is_handled(bot, db):
    bot.command(LINE, user="U0DEV", trigger_id="333.444.def", retry_num=1)
    assert count(db, Release) == 1
    assert reply(bot).startswith("REL-1 requested")


def test_unexpected_failure_is_a_sentence_not_a_traceback(bot, db, monkeypatch):
    import commands.release as release

    def broken(*a, **k):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(release, "_new_release", broken)
    bot.command(LINE, user="U0DEV")
    text = reply(bot)
    assert "Something went wrong on our side" in text and "disk on fire" not in text
    assert count(db, Release) == 0 and count(db, AuditEvent) == 0
