"""Socket Mode: Slack's requests over a WebSocket the bot opens with its app token, instead of signed HTTP.

slack_sdk's built-in client does the protocol: apps.connections.open (against the Web API base URL) returns
the WebSocket URL; a dropped connection is noticed by the ping monitor and re-opened with a fresh
apps.connections.open; an envelope Slack did not get an ack for comes again on the new connection, and the
listeners' idempotency (request keys, one vote per person and round) makes it count once.
"""
from __future__ import annotations

import logging
from time import time

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.socket_mode.internals import run_bolt_app, send_response
from slack_bolt.response import BoltResponse
from slack_sdk.socket_mode.request import SocketModeRequest

from bot.services import Services

# How often the connection is pinged and checked (Bolt's default is 10): a closed or reset connection is
# re-opened at the next check, one that merely goes silent after four intervals without a pong.
PING_SECONDS = 5
log = logging.getLogger(__name__)


class _Handler(SocketModeHandler):
    def handle(self, client, req: SocketModeRequest) -> None:  # type: ignore[override]
        start = time()
        response = run_bolt_app(self.app, req)
        if response.status == 404:
            # No listener for it (an event type nobody subscribed the bot to). Acknowledge it anyway: unacked,
            # Slack would deliver it again and again. Over HTTP Bolt's 404 is the answer; here silence is not.
            response = BoltResponse(status=200, body="")
        send_response(client, req, response, start)


def connect(app: App, svc: Services) -> SocketModeHandler:
    """Open the connection and return once it is up; requests then run on the client's own threads. The
    ack half of each listener answers on the socket before its lazy half runs (process_before_response).
    Raises SlackApiError when Slack refuses the app token."""
    handler = _Handler(app, svc.config.app_token, web_client=svc.client, ping_interval=PING_SECONDS)
    handler.connect()
    if not handler.client.is_connected():
        # apps.connections.open answered but the WebSocket did not open; the monitor keeps trying.
        log.warning("Socket Mode connection not open yet; retrying every %s s", PING_SECONDS)
    return handler
