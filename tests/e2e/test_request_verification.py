"""Who may reach the listeners over HTTP, in each mode.

HTTP mode: every request to /slack/events must carry Slack's signature. Socket Mode: Slack's requests come over
the WebSocket the bot opened, so /slack/events is not served at all, signed or not. The pipeline API, the feed
and /healthz have their own credentials and work the same in both modes.
"""
from __future__ import annotations

import contextlib
import json
from urllib.parse import urlencode

import httpx
import pytest
from sqlmodel import Session, select

from bot.feed import token_for
from commands.outcome import Actor
from commands.release import request_release
from commands.request import parse_flags
from commands.text import parse_command
from storage.models import AuditEvent, Release, Vote

from conftest import CHANNEL, SIGNING_SECRET, start_bot
from slack_client import SlackClient

LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-01 14:00" tz=Europe/London '
        'duration=60m summary="Add refunds"')
API_TOKEN = "dp-0123456789abcdef0123"
SOCKET = {"SLACK_APP_TOKEN": "xapp-test"}


class Unsigned(SlackClient):
    """Slack's payloads exactly, sent without a signature: what anyone who can reach the port can do."""

    def _send_signed(self, body, retry_num, timestamp):
        return self.post_raw(body.encode("utf-8"), {"Content-Type": "application/x-www-form-urlencoded"})


@contextlib.contextmanager
def running(db, clock, policy, emulator, env):
    bot = start_bot(db, clock, policy, emulator, env_overrides=env)
    try:
        yield bot
    finally:
        bot.slack.close()
        bot.server.close()
        bot.thread.join(timeout=5)
        bot.executor.shutdown(wait=True)


def rows(db, model) -> list:
    with Session(db) as s:
        return list(s.exec(select(model).order_by(model.id)))


def requested(db, clock, policy) -> Release:
    """REL-1, made directly through commands/: the tests here are about what reaches the listeners."""
    args = parse_command(LINE).args
    answers = parse_flags(args.pop("flags"))
    return request_release(db, Actor("U0DEV"), args, answers, clock, policy).release


def forger(bot, how: str) -> SlackClient:
    if how == "unsigned":
        return Unsigned(bot.url, "", emulator=bot.emulator)
    if how == "wrong_secret":
        return SlackClient(bot.url, "not-the-secret", emulator=bot.emulator)
    return SlackClient(bot.url, SIGNING_SECRET, emulator=bot.emulator)  # correctly signed


def forge(slack: SlackClient, what: str) -> httpx.Response:
    if what == "request":
        return slack.command(LINE, user="U0FORGED")
    # A Go vote from the release manager, on REL-1's approval message.
    return slack.block_action("vote_go", "1", user="U0RM", channel=CHANNEL)


def nothing_happened(bot, db) -> None:
    assert [(r.ref, r.requester_id) for r in rows(db, Release)] == [("REL-1", "U0DEV")]
    assert [(v.voter_id, v.decision) for v in rows(db, Vote)] == []
    assert [e.action for e in rows(db, AuditEvent)] == ["requested"]
    assert [c.method for c in bot.emulator.calls if c.method != "auth.test"] == []


# ---- Socket Mode: /slack/events is not served --------------------------------------------------------------


@pytest.mark.parametrize("what", ["request", "go_vote"])
@pytest.mark.parametrize("how, secret", [("unsigned", ""), ("unsigned", SIGNING_SECRET),
                                         ("wrong_secret", SIGNING_SECRET), ("signed", SIGNING_SECRET)])
def test_in_socket_mode_slack_events_over_http_is_404_and_changes_nothing(db, clock, policy, emulator, what,
                                                                          how, secret):
    requested(db, clock, policy)
    with running(db, clock, policy, emulator, {**SOCKET, "SLACK_SIGNING_SECRET": secret}) as bot:
        with forger(bot, how) as slack:
            r = forge(slack, what)
        bot.idle()
        nothing_happened(bot, db)
        assert r.status_code == 404


# ---- HTTP mode: every request is verified ------------------------------------------------------------------


@pytest.mark.parametrize("what", ["request", "go_vote"])
@pytest.mark.parametrize("how", ["unsigned", "wrong_secret"])
def test_in_http_mode_an_unverified_request_or_vote_gets_401_and_changes_nothing(bot, db, clock, policy, what,
                                                                                 how):
    requested(db, clock, policy)
    with forger(bot, how) as slack:
        r = forge(slack, what)
    bot.idle()
    assert r.status_code == 401
    nothing_happened(bot, db)


def test_in_http_mode_a_signed_go_vote_counts(bot, db, clock, policy):
    # The other tests' control: the same vote, signed, is recorded.
    requested(db, clock, policy)
    forge(bot.slack, "go_vote")
    bot.idle()
    assert [(v.voter_id, v.decision) for v in rows(db, Vote)] == [("U0RM", "go")]


@pytest.mark.parametrize("body", [
    {"type": "url_verification", "challenge": "abc", "token": "x"},
    {"type": "event_callback", "team_id": "T0001", "event": {"type": "app_home_opened", "user": "U0RM"}},
])
def test_in_http_mode_unsigned_events_and_challenges_get_401(bot, db, clock, policy, body):
    requested(db, clock, policy)
    r = bot.slack.post_raw(json.dumps(body), {"Content-Type": "application/json"})
    bot.idle()
    assert r.status_code == 401 and "abc" not in r.text
    nothing_happened(bot, db)


def test_in_http_mode_an_unsigned_ssl_check_runs_no_listener(bot, db, clock, policy):
    # Slack's certificate check is the one unsigned request it sends; Bolt answers it with an empty 200 before
    # any listener. A command smuggled into one must not run.
    requested(db, clock, policy)
    fields = {"ssl_check": "1", "token": "x", "command": "/release", "text": LINE, "user_id": "U0FORGED",
              "team_id": "T0001", "channel_id": CHANNEL, "trigger_id": "1.2.3", "response_url": "http://127.0.0.1:9/"}
    r = bot.slack.post_raw(urlencode(fields), {"Content-Type": "application/x-www-form-urlencoded"})
    bot.idle()
    assert r.status_code == 200 and r.text == ""
    nothing_happened(bot, db)


# ---- the pipeline API, the feed and /healthz, in both modes ------------------------------------------------


@pytest.mark.parametrize("mode", ["http", "socket"])
def test_pipeline_api_feed_and_health_work_the_same_in_both_modes(db, clock, policy, emulator, mode):
    env = {"RELEASEBOT_API_TOKENS": f"deploy-pipeline={API_TOKEN}", "RELEASEBOT_FEED_SECRET": "feed-secret-1"}
    if mode == "socket":
        env.update({**SOCKET, "SLACK_SIGNING_SECRET": ""})
    requested(db, clock, policy)
    with running(db, clock, policy, emulator, env) as bot, httpx.Client(base_url=bot.url, timeout=10) as http:
        assert http.get("/healthz").json()["status"] == "ok"
        gate = "/api/v1/releases/REL-1/gate?actor=U0RM"
        assert http.get(gate).status_code == 401
        answer = http.get(gate, headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert answer.status_code == 200 and answer.json()["release"] == "REL-1"
        assert answer.json()["allowed"] is False  # pending, not approved
        feed = http.get("/calendar.ics", params={"token": token_for(bot.svc, "U0DEV")})
        assert feed.status_code == 200 and "UID:release-1@127.0.0.1" in feed.text  # the host asked for
        assert http.get("/calendar.ics", params={"token": "U0DEV.0000"}).status_code == 404
