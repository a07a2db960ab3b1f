"""Plays Slack's side of the Events API: sends signed requests to a running Bolt app.

Payload shapes follow what Slack really sends (slash commands as form fields,
interactions as a form field `payload=<json>`), so the app's request parsing and
signature verification are exercised exactly as in production.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import time
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import httpx

if TYPE_CHECKING:
    from slack_emulator import SlackEmulator

APP_ID = "A0001"
TEAM_DOMAIN = "emulated"
# The deprecated verification token: Slack still sends it, Bolt ignores it.
VERIFICATION_TOKEN = "verification-token"
# One sequence for every client of the process: two clients clicking for the same person in the same second
# (benchmarks/ack_burst.py's) must not send the same action_ts, which would make the second a replay.
_CLICKS = itertools.count(1)


class SlackClient:
    def __init__(
        self,
        base_url: str,
        signing_secret: str,
        *,
        team_id: str = "T0001",
        emulator: SlackEmulator | None = None,
    ):
        self.url = base_url.rstrip("/") + "/slack/events"
        self.signing_secret = signing_secret
        self.team_id = team_id
        self.emulator = emulator
        self.last_payload: dict | None = None  # what the last command/action/submission sent
        self._seq = itertools.count(1)
        self._http = httpx.Client(timeout=10.0)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SlackClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- signing ---------------------------------------------------------

    def signed_headers(self, body: str, timestamp: int | None = None) -> dict:
        ts = int(time.time()) if timestamp is None else timestamp
        basestring = f"v0:{ts}:{body}".encode("utf-8")
        digest = hmac.new(self.signing_secret.encode("utf-8"), basestring, hashlib.sha256).hexdigest()
        return {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": f"v0={digest}",
        }

    def post_raw(self, body: bytes | str, headers: dict) -> httpx.Response:
        return self._http.post(self.url, content=body, headers=headers)

    def _send_signed(self, body: str, retry_num: int | None, timestamp: int | None) -> httpx.Response:
        headers = self.signed_headers(body, timestamp)
        if retry_num is not None:
            # Slack retries when the app did not ack within 3 s.
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        # Sign and send the very same bytes: re-encoding could change what was signed.
        return self.post_raw(body.encode("utf-8"), headers)

    def _send_payload(self, payload: dict, retry_num: int | None, timestamp: int | None) -> httpx.Response:
        self.last_payload = payload
        return self._send_signed(urlencode({"payload": json.dumps(payload)}), retry_num, timestamp)

    # ---- payload pieces --------------------------------------------------

    def _trigger_id(self) -> str:
        return f"{next(self._seq)}.{secrets.randbelow(10**9)}.{secrets.token_hex(16)}"

    def _action_ts(self) -> str:
        # Slack's action_ts tells one click from the next; two clicks in a test may share a microsecond.
        return f"{int(time.time())}.{next(_CLICKS):06d}"

    def _response_url(self, kind: str, user: str) -> str:
        name = f"{kind}-{next(self._seq)}-{user}"  # whose request it answers (SlackEmulator.said_to)
        if self.emulator is not None:
            return self.emulator.response_url(name)
        return f"https://hooks.slack.com/{kind}s/{self.team_id}/{name}/{secrets.token_hex(12)}"

    def _user(self, user: str) -> dict:
        return {"id": user, "username": user.lower(), "name": user.lower(), "team_id": self.team_id}

    def _team(self) -> dict:
        return {"id": self.team_id, "domain": TEAM_DOMAIN}

    # ---- requests Slack sends --------------------------------------------

    def command(
        self,
        text: str,
        *,
        user: str = "U_ALICE",
        command: str = "/release",
        channel: str = "C_RELEASES",
        retry_num: int | None = None,
        timestamp: int | None = None,
        trigger_id: str | None = None,
    ) -> httpx.Response:
        fields = {
            "token": VERIFICATION_TOKEN,
            "team_id": self.team_id,
            "team_domain": TEAM_DOMAIN,
            "channel_id": channel,
            "channel_name": channel.lower(),
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": self._response_url("command", user),
            "trigger_id": trigger_id or self._trigger_id(),
        }
        self.last_payload = fields
        return self._send_signed(urlencode(fields), retry_num, timestamp)

    def block_action(
        self,
        action_id: str,
        value: str,
        *,
        user: str = "U_BOB",
        channel: str = "C_RELEASES",
        message_ts: str = "1700000000.000100",
        block_id: str = "b",
        retry_num: int | None = None,
        timestamp: int | None = None,
    ) -> httpx.Response:
        message = {"type": "message", "user": "UBOT", "bot_id": "B0001", "ts": message_ts, "text": "", "blocks": []}
        if self.emulator is not None and (channel, message_ts) in self.emulator.messages:
            # Slack sends the message the button sits on, as it currently is.
            message = self.emulator.messages[(channel, message_ts)]
        payload = {
            "type": "block_actions",
            "user": self._user(user),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
            "trigger_id": self._trigger_id(),
            "team": self._team(),
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": channel.lower()},
            "message": message,
            "state": {"values": {}},
            "response_url": self._response_url("action", user),
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": block_id,
                    "text": {"type": "plain_text", "text": value, "emoji": True},
                    "value": value,
                    "type": "button",
                    "action_ts": self._action_ts(),
                }
            ],
        }
        return self._send_payload(payload, retry_num, timestamp)

    def home_action(self, action_id: str, value: str, *, user: str, view: dict | None = None,
                    retry_num: int | None = None) -> httpx.Response:
        """A button on the App Home tab: Slack sends the published view, and no channel, message or
        response_url."""
        view = {"id": f"VH{user}", "type": "home", "blocks": [], "private_metadata": "", "callback_id": "",
                "state": {"values": {}}, "hash": "1.h", **(view or {})}
        payload = {
            "type": "block_actions",
            "user": self._user(user),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "container": {"type": "view", "view_id": view["id"]},
            "trigger_id": self._trigger_id(),
            "team": self._team(),
            "enterprise": None,
            "is_enterprise_install": False,
            "view": view,
            "actions": [{"action_id": action_id, "block_id": "b", "value": value, "type": "button",
                         "text": {"type": "plain_text", "text": value, "emoji": True},
                         "action_ts": self._action_ts()}],
        }
        return self._send_payload(payload, retry_num, None)

    def app_home_opened(self, user: str, *, tab: str = "home", **kw) -> httpx.Response:
        return self.event({"type": "app_home_opened", "user": user, "channel": f"D{user}", "tab": tab}, **kw)

    def reaction_added(self, channel: str, ts: str, *, user: str, reaction: str = "pushpin",
                       item_user: str | None = None, **kw) -> httpx.Response:
        return self.event({"type": "reaction_added", "user": user, "reaction": reaction,
                           "item": {"type": "message", "channel": channel, "ts": ts},
                           **({"item_user": item_user} if item_user else {}), "event_ts": f"{int(time.time())}.000200"},
                          **kw)

    def view_block_action(self, action_id: str, view: dict, state_values: dict, *, user: str = "U_ALICE",
                          block_id: str | None = None) -> httpx.Response:
        """An interactive element inside an open modal changed (dispatch_action)."""
        view = {**view, "state": {"values": state_values}, "hash": view.get("hash") or "1.h"}
        payload = {
            "type": "block_actions",
            "team": self._team(),
            "user": self._user(user),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "container": {"type": "view", "view_id": view.get("id")},
            "trigger_id": self._trigger_id(),
            "view": view,
            "actions": [{"action_id": action_id, "block_id": block_id or action_id, "type": "checkboxes",
                         "action_ts": self._action_ts()}],
        }
        return self._send_payload(payload, None, None)

    def view_submission(
        self,
        callback_id: str,
        state_values: dict,
        *,
        user: str = "U_ALICE",
        private_metadata: str = "",
        view_id: str | None = None,
        retry_num: int | None = None,
        timestamp: int | None = None,
    ) -> httpx.Response:
        view_id = view_id or f"V_SUB{next(self._seq):04d}"
        payload = {
            "type": "view_submission",
            "team": self._team(),
            "user": self._user(user),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "trigger_id": self._trigger_id(),
            "view": {
                "id": view_id,
                "team_id": self.team_id,
                "type": "modal",
                "blocks": [],
                "private_metadata": private_metadata,
                "callback_id": callback_id,
                "state": {"values": state_values},
                "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
                "title": {"type": "plain_text", "text": "Releasebot"},
                "clear_on_close": False,
                "notify_on_close": False,
                "close": {"type": "plain_text", "text": "Cancel"},
                "submit": {"type": "plain_text", "text": "Submit"},
                "previous_view_id": None,
                "root_view_id": view_id,
                "app_id": APP_ID,
                "external_id": "",
                "app_installed_team_id": self.team_id,
                "bot_id": "B0001",
            },
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        return self._send_payload(payload, retry_num, timestamp)


    def shortcut(self, callback_id: str, *, user: str = "U_ALICE", retry_num: int | None = None) -> httpx.Response:
        """A global shortcut (the lightning menu): no channel, no response_url, a trigger_id for a form."""
        payload = {
            "type": "shortcut",
            "token": VERIFICATION_TOKEN,
            "action_ts": self._action_ts(),
            "team": self._team(),
            "user": self._user(user),
            "is_enterprise_install": False,
            "enterprise": None,
            "callback_id": callback_id,
            "trigger_id": self._trigger_id(),
        }
        return self._send_payload(payload, retry_num, None)

    def event(self, event: dict, *, event_id: str | None = None, bot_user: str = "UBOT",
              retry_num: int | None = None, timestamp: int | None = None) -> httpx.Response:
        """An Events API delivery (JSON body), with the authorizations Slack names the installed bot in.
        The same event_id again is Slack's retry of it."""
        body = {
            "token": VERIFICATION_TOKEN,
            "team_id": self.team_id,
            "api_app_id": APP_ID,
            "event": {"event_ts": f"{int(time.time())}.000{next(self._seq):03d}", **event},
            "type": "event_callback",
            "event_id": event_id or f"Ev{next(self._seq):08d}",
            "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": None, "team_id": self.team_id, "user_id": bot_user,
                                "is_bot": True, "is_enterprise_install": False}],
            "is_ext_shared_channel": False,
        }
        self.last_payload = body
        raw = json.dumps(body)
        headers = {**self.signed_headers(raw, timestamp), "Content-Type": "application/json"}
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        return self.post_raw(raw.encode("utf-8"), headers)


class Recorder:
    """Keeps the exact signed bytes and headers of every request a SlackClient sends, as someone who
    captured them off the wire would, so a test can send the very same request again."""

    def __init__(self, slack):
        self.sent: list[tuple[bytes, dict]] = []
        self._post = slack.post_raw
        slack.post_raw = self._record

    def _record(self, body, headers):
        self.sent.append((body, dict(headers)))
        return self._post(body, headers)

    def replay(self, bot, index: int = -1, **extra_headers):
        body, headers = self.sent[index]
        response = self._post(body, {**headers, **extra_headers})
        bot.idle()
        return response
