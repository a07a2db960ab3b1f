"""Socket Mode end to end: the real app and slack_sdk's built-in Socket Mode client (bot/socket_mode.py, as
`releasebot serve` starts it) against the emulator's apps.connections.open and WebSocket server."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import httpx
import pytest
from sqlmodel import Session, select

from bot.app import build_app
from bot.config import load_config
from bot.services import build_services
from storage.models import AuditEvent, Release, Vote

from conftest import CHANNEL, TrackingExecutor
from socket_emulator import APP_TOKEN, SocketEmulator, SocketSlack
from test_process import ROOT, base_env, free_port, wait_until_serving

LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-01 14:00" tz=Europe/London '
        'duration=60m summary="Add refunds"')


class SocketBot:
    """The bot connected over Socket Mode; no HTTP at all between Slack and the listeners."""

    def __init__(self, db, clock, policy, emulator):
        from bot import socket_mode
        env = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_APP_TOKEN": APP_TOKEN, "SLACK_API_URL": emulator.api_url,
               "RELEASE_CHANNEL": CHANNEL}  # no signing secret: Socket Mode needs none
        self.emulator = emulator
        self.socket = SocketEmulator(emulator)
        self.slack = SocketSlack(self.socket)
        self.svc = build_services(load_config(env), db, clock, policy)
        self.executor = TrackingExecutor()
        self.handler = socket_mode.connect(build_app(self.svc, self.executor), self.svc)
        self.socket.wait_connections(1)

    def close(self) -> None:
        # Slack hangs up first, so that closing does not wait out the client's 3 s receive timeout. Once
        # hang_up() returns the client has closed its socket, under its send lock; taking that lock waits
        # until it has also forgotten it, so close() does not close it a second time.
        self.socket.hang_up()
        session = self.handler.client.current_session
        if session is not None:
            with session.sock_send_lock:
                pass
        self.handler.close()
        self.socket.stop()
        self.slack.close()
        self.executor.shutdown(wait=True)

    def acked(self, envelope_id: str):
        """Wait for the ack, then for the listeners' after-ack work."""
        ack = self.socket.wait_ack(envelope_id)
        self.executor.wait_idle()
        return ack

    def approval_message(self):
        return self.emulator.calls_to("chat.postMessage")[0].response


@pytest.fixture
def sbot(db, clock, policy, emulator):
    running = SocketBot(db, clock, policy, emulator)
    yield running
    running.close()


def rows(db, model) -> list:
    with Session(db) as s:
        return list(s.exec(select(model).order_by(model.id)))


def votes(db) -> list[tuple[str, str]]:
    return [(v.voter_id, v.decision) for v in rows(db, Vote)]


def test_connection_is_opened_with_the_app_token_via_apps_connections_open(sbot):
    [opened] = sbot.emulator.calls_to("apps.connections.open")
    assert opened.token == APP_TOKEN
    assert len(sbot.socket.connections) == 1


def test_command_button_and_modal_arrive_over_the_socket_and_each_is_acknowledged(sbot, db):
    # A slash command answered in its ack: the ack's payload is the ephemeral reply.
    help_ack = sbot.acked(sbot.slack.command("help", user="U0DEV"))
    assert "/release request" in help_ack.payload["text"] and help_ack.payload["response_type"] == "ephemeral"

    request = sbot.slack.command(LINE, user="U0DEV")
    assert sbot.acked(request).envelope_id == request
    [rel] = rows(db, Release)
    assert (rel.ref, rel.requester_id, rel.state) == ("REL-1", "U0DEV", "pending")
    assert "REL-1" in sbot.emulator.calls_to("response_url")[-1].args["text"]

    post = sbot.approval_message()
    click = sbot.slack.block_action("vote_go", "1", user="U0RM", channel=post["channel"], message_ts=post["ts"])
    assert sbot.acked(click).payload is None
    assert votes(db) == [("U0RM", "go")]
    assert sbot.emulator.calls_to("chat.update")

    # A view submission: the ack carries the form's errors, and nothing is recorded...
    meta = json.dumps({"release": 1, "channel": CHANNEL})
    empty = sbot.slack.view_submission("nogo_reason", {"reason": {"reason": {"type": "plain_text_input",
                                                                             "value": " "}}},
                                       user="U0QA", private_metadata=meta)
    assert sbot.acked(empty).payload == {"response_action": "errors", "errors": {"reason": "A No-go needs a reason."}}
    assert votes(db) == [("U0RM", "go")]
    # ...and with a reason the No-go counts.
    reason = {"reason": {"reason": {"type": "plain_text_input", "value": "load tests failed"}}}
    assert sbot.acked(sbot.slack.view_submission("nogo_reason", reason, user="U0QA", private_metadata=meta))
    assert votes(db) == [("U0RM", "go"), ("U0QA", "nogo")]
    assert sbot.socket.pending() == []
    assert len(sbot.socket.acks) == len(sbot.socket.sent) == 5


def test_an_event_envelope_is_acknowledged_even_though_no_listener_wants_it(sbot, db):
    # (app_home_opened has a listener now, the App Home tab; a channel's rename has none)
    event = sbot.slack.event({"type": "channel_rename", "channel": {"id": "C0RELEASES", "name": "releases",
                                                                    "created": 1700000000},
                              "event_ts": "1700000000.000100"})
    ack = sbot.acked(event)
    assert ack.envelope_id == event and ack.payload is None
    assert sbot.socket.pending() == []
    assert rows(db, AuditEvent) == []
    assert [c.method for c in sbot.emulator.calls if c.method != "apps.connections.open"] == []


def test_the_ack_goes_out_before_the_slow_work(sbot, db):
    # The command's reply (its after-ack work) is held by Slack; the ack must not wait for it.
    sbot.emulator.delay("response_url", 30)
    request = sbot.slack.command(LINE, user="U0DEV")
    sbot.socket.wait_ack(request)
    sbot.emulator.wait_in_flight("response_url")
    assert sbot.emulator.calls_to("response_url") == []
    sbot.emulator.heal()
    sbot.executor.wait_idle()
    assert "REL-1" in sbot.emulator.calls_to("response_url")[-1].args["text"]


def test_a_dropped_connection_is_reopened_and_the_unacknowledged_envelope_counts_once(sbot, db):
    request = sbot.slack.command(LINE, user="U0DEV")
    sbot.socket.lose_ack_of(request)  # the bot handles it, but its ack is lost as the connection drops
    sbot.socket.wait_connections(2)
    ack = sbot.acked(request)
    assert ack.connection == 1  # acknowledged on the new connection, after redelivery
    assert [e["envelope_id"] for e in sbot.socket.sent] == [request, request]
    assert [c.token for c in sbot.emulator.calls_to("apps.connections.open")] == [APP_TOKEN, APP_TOKEN]
    # Delivered twice, done once: one release, one approval message. The redelivery is a replay of a
    # delivery already seen (bot/replay.py), so its ack itself says it was already done.
    assert [r.ref for r in rows(db, Release)] == ["REL-1"]
    assert [e.action for e in rows(db, AuditEvent)] == ["requested"]
    assert sbot.svc.delivery.run_once() == 0
    assert len(sbot.emulator.calls_to("chat.postMessage")) == 1
    replies = [c.args["text"] for c in sbot.emulator.calls_to("response_url")]
    assert len(replies) == 1 and "REL-1 requested" in replies[0]
    assert "Already done" in json.dumps(ack.payload)

    # The new connection carries the next request as usual.
    post = sbot.approval_message()
    click = sbot.slack.block_action("vote_go", "1", user="U0RM", channel=post["channel"], message_ts=post["ts"])
    assert sbot.acked(click).connection == 1
    assert votes(db) == [("U0RM", "go")]


def test_releasebot_serve_in_socket_mode_takes_slack_over_the_socket_and_not_over_http(emulator, db_url):
    socket = SocketEmulator(emulator)
    port = free_port()
    env = base_env(emulator, db_url, PORT=str(port), SLACK_APP_TOKEN=APP_TOKEN, SLACK_SIGNING_SECRET="")
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url, proc)
        socket.wait_connections(1)
        with SocketSlack(socket) as slack:
            # this process runs on the real clock: a start relative to it never falls into the past
            request = slack.command(LINE.replace('start="2026-12-01 14:00"', 'start="in 30 days"'), user="U0DEV")
            socket.wait_ack(request)
        [post] = emulator.wait_for("chat.postMessage", timeout=15)
        assert "payments" in str(post.args["blocks"])
        unsigned = httpx.post(f"{url}/slack/events", content="command=/release&text=help",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert unsigned.status_code == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.stdout.read()
        socket.stop()
    assert "Traceback" not in out and "mode: Socket Mode, connected to Slack" in out
    assert "channel: C0RELEASES, the bot is a member" in out  # checked in Socket Mode too
