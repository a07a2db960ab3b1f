"""Slack's side of Socket Mode: apps.connections.open hands out a ws:// URL, and a WebSocket server behind it
delivers envelopes and records the bot's acknowledgements.

It behaves as Slack does where the bot can tell: every connection starts with a `hello`; an envelope stays
pending until an ack with its `envelope_id` arrives on a live connection, and a pending envelope is delivered
again on the next connection the bot opens (Events API envelopes with `retry_attempt` raised). Each URL
carries a one-time ticket, so a connection is only accepted after an apps.connections.open with a valid app
token. `lose_ack_of` makes an ack go missing and the connection drop, as a network failure would.

`SocketSlack` sends tests/slack_client.py's payloads, unchanged, as envelopes instead of signed HTTP.
"""
from __future__ import annotations

import json
import secrets
import threading
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, parse_qsl, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from slack_client import APP_ID, SlackClient

APP_TOKEN = "xapp-test"


@dataclass
class Ack:
    envelope_id: str
    payload: dict | None  # what the bot answered with (an ephemeral text, response_action=errors, …)
    connection: int  # index into SocketEmulator.connections


class SocketEmulator:
    def __init__(self, slack, app_token: str = APP_TOKEN, host: str = "127.0.0.1"):
        self.slack, self.host = slack, host
        self.acks: list[Ack] = []
        self.connections: list[ServerConnection] = []  # every WebSocket the bot opened, in order
        self.sent: list[dict] = []  # every envelope sent, redeliveries included
        self._pending: dict[str, dict] = {}  # envelope_id -> envelope, until acknowledged
        self._lose: set[str] = set()
        self._tickets: set[str] = set()
        self._cond = threading.Condition()
        slack.valid_tokens.add(app_token)
        slack.connections_url = self._issue_url  # apps.connections.open answers with this
        self._server = serve(self._serve, host, 0, process_request=self._check_ticket, ping_interval=None,
                             close_timeout=2)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="socket-emulator", daemon=True)
        self._thread.start()

    def hang_up(self) -> None:
        """Close every open connection from Slack's side."""
        with self._cond:
            live = [c for c in self.connections if c.state.name == "OPEN"]
        for connection in live:
            connection.close(1001, "going away")

    def stop(self) -> None:
        self.hang_up()
        self._server.shutdown()
        self._thread.join(timeout=5)

    # ---- test controls ---------------------------------------------------

    def deliver(self, kind: str, payload: dict, *, accepts_response_payload: bool = False) -> str:
        """Send an envelope on the live connection (or on the next one); return its envelope_id."""
        envelope = {"envelope_id": str(uuid.uuid4()), "type": kind, "payload": payload,
                    "accepts_response_payload": accepts_response_payload}
        if kind == "events_api":
            envelope.update(retry_attempt=0, retry_reason="")
        with self._cond:
            self._pending[envelope["envelope_id"]] = envelope
            live = self._live()
        if live is not None:
            self._send(live, envelope)
        return envelope["envelope_id"]

    def lose_ack_of(self, envelope_id: str) -> None:
        """When the bot acks this envelope, drop the ack and close the connection: to Slack it was never
        acknowledged, so it goes out again on the bot's next connection."""
        with self._cond:
            self._lose.add(envelope_id)

    def wait_ack(self, envelope_id: str, timeout: float = 10.0) -> Ack:
        with self._cond:
            if not self._cond.wait_for(lambda: self._ack_for(envelope_id), timeout=timeout):
                raise AssertionError(f"envelope {envelope_id} was not acknowledged within {timeout}s; "
                                     f"acks: {[a.envelope_id for a in self.acks]}")
            return self._ack_for(envelope_id)

    def wait_connections(self, count: int, timeout: float = 30.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.connections) >= count, timeout=timeout):
                raise AssertionError(f"the bot opened {len(self.connections)} connection(s), not {count}, "
                                     f"within {timeout}s")

    def pending(self) -> list[str]:
        with self._cond:
            return list(self._pending)

    # ---- server side -----------------------------------------------------

    def _issue_url(self) -> str:
        ticket = secrets.token_hex(8)
        with self._cond:
            self._tickets.add(ticket)
        return f"ws://{self.host}:{self.port}/link/?ticket={ticket}&app_id={APP_ID}"

    def _check_ticket(self, connection: ServerConnection, request):
        ticket = (parse_qs(urlsplit(request.path).query).get("ticket") or [""])[0]
        with self._cond:
            if ticket in self._tickets:
                self._tickets.discard(ticket)  # one connection per apps.connections.open
                return None
        return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid ticket: call apps.connections.open\n")

    def _live(self) -> ServerConnection | None:
        if self.connections and self.connections[-1].state.name == "OPEN":
            return self.connections[-1]
        return None

    def _send(self, connection: ServerConnection, envelope: dict) -> None:
        with self._cond:
            self.sent.append(envelope)
        try:
            connection.send(json.dumps(envelope))
        except ConnectionClosed:
            pass  # still pending: the next connection gets it

    def _serve(self, connection: ServerConnection) -> None:
        with self._cond:
            self.connections.append(connection)
            index = len(self.connections) - 1
            redeliver = list(self._pending.values())
            for envelope in redeliver:
                if envelope["type"] == "events_api":
                    envelope.update(retry_attempt=envelope["retry_attempt"] + 1, retry_reason="timeout")
            self._cond.notify_all()
        connection.send(json.dumps({"type": "hello", "num_connections": 1,
                                    "connection_info": {"app_id": APP_ID},
                                    "debug_info": {"host": "emulated", "approximate_connection_time": 3600}}))
        for envelope in redeliver:
            self._send(connection, envelope)
        try:
            for raw in connection:
                message = json.loads(raw)
                envelope_id = message.get("envelope_id")
                with self._cond:
                    if envelope_id in self._lose:
                        self._lose.discard(envelope_id)
                        lost = True
                    else:
                        lost = False
                        if self._pending.pop(envelope_id, None) is not None:
                            self.acks.append(Ack(envelope_id, message.get("payload"), index))
                        self._cond.notify_all()
                if lost:
                    connection.close(1001, "connection lost")
                    return
        except ConnectionClosed:
            pass

    def _ack_for(self, envelope_id: str) -> Ack | None:
        return next((a for a in self.acks if a.envelope_id == envelope_id), None)


class SocketSlack(SlackClient):
    """The payloads tests/slack_client.py builds, delivered as Socket Mode envelopes. Each request method
    returns the envelope_id instead of an HTTP response."""

    def __init__(self, socket: SocketEmulator, **kw):
        super().__init__("http://127.0.0.1", "unused: envelopes are not signed", emulator=socket.slack, **kw)
        self.socket = socket

    def _send_signed(self, body: str, retry_num, timestamp) -> str:
        # Only command() gets here (the others go through _send_payload): a slash command's form fields.
        fields = dict(parse_qsl(body, keep_blank_values=True))
        self.last_payload = fields
        return self.socket.deliver("slash_commands", fields, accepts_response_payload=True)

    def _send_payload(self, payload: dict, retry_num, timestamp) -> str:
        self.last_payload = payload
        return self.socket.deliver("interactive", payload,
                                   accepts_response_payload=payload["type"] == "view_submission")

    def event(self, event: dict) -> str:
        n = next(self._seq)
        payload = {"token": "verification-token", "team_id": self.team_id, "api_app_id": APP_ID, "event": event,
                   "type": "event_callback", "event_id": f"Ev{n:08d}", "event_time": 1700000000 + n,
                   "authorizations": [{"team_id": self.team_id, "user_id": "UBOT", "is_bot": True}],
                   "is_ext_shared_channel": False}
        return self.socket.deliver("events_api", payload)
