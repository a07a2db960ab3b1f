"""A local stand-in for Slack's Web API, answering the way Slack does.

Point the bot at it with SLACK_API_URL=emu.api_url. Everything it receives is
recorded in `calls`, and failures (rate limits, 5xx, Slack error codes) can be
queued with `fail_next` to exercise the bot's error handling. `delay` makes a
method slow (a send in flight, for SIGTERM and kill -9 tests, or a client timeout).

Standard library only, so it cannot drift with the SDK under test.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import itertools
from urllib.parse import parse_qsl, quote, unquote, urlsplit

# Form-encoded requests carry structured fields as JSON strings; Slack decodes them.
_JSON_FIELDS = ("blocks", "attachments", "view")
_CHANNEL_PREFIXES = ("C", "G", "D")
_USER_PREFIXES = ("U", "W")


@dataclass
class Call:
    method: str  # API method, or "response_url"
    args: dict  # request body (token removed), structured fields decoded
    token: str | None
    status: int  # HTTP status returned
    response: dict  # JSON body returned
    at: float  # time.time() when received
    injected: bool = False  # True when the answer came from fail_next
    response_url_name: str | None = None  # the `name` given to response_url()

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok"))


@dataclass
class _Failure:
    status: int
    error: str | None
    retry_after: int | None


class _SlackError(Exception):
    """Raised by method handlers; becomes HTTP 200 {"ok": false, "error": ...}, with
    response_metadata.messages when a second argument lists them (as Slack's invalid_arguments does)."""


def _require_channel(args: dict) -> str:
    channel = str(args.get("channel") or "")
    if not channel.startswith(_CHANNEL_PREFIXES):
        raise _SlackError("channel_not_found")
    return channel


def dm_of(user: str) -> str:
    """The id of the bot's own DM with `user`, which chat.postMessage to the user id opens."""
    return f"D{user}"


def _require_text(args: dict) -> None:
    if not (args.get("text") or args.get("blocks") or args.get("attachments")):
        raise _SlackError("no_text")


class SlackEmulator:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self.calls: list[Call] = []
        self.user_groups: dict[str, list[str]] = {}
        # Every user id is a member, except these: unknown to the workspace, deactivated, or bot users.
        self.missing_users: set[str] = set()
        self.deleted_users: set[str] = set()
        self.bot_users: set[str] = set()
        # users.info(include_locale=true) answers en-US, Slack's default, unless set here.
        self.locales: dict[str, str] = {}
        self.valid_tokens: set[str] = {"xoxb-test"}
        self.messages: dict[tuple[str, str], dict] = {}
        # Channels made with conversations.create (or make_channel): id -> {name, creator, members, is_archived}.
        # Other C… ids (the release channel) take messages without being listed here.
        self.channels: dict[str, dict] = {}
        self.pins: set[tuple[str, str]] = set()
        self.home_views: dict[str, dict] = {}  # user id -> the App Home view last published for them
        self.unreadable: set[str] = set()  # channels whose history the bot may not read (not_in_channel)
        self._channel_counter = itertools.count(1)
        # Channels the bot was never invited to: posting there answers not_in_channel, as Slack does without
        # chat:write.public. A D… channel is someone's DM: the bot is in none but its own (dm_of(user)).
        self.not_member: set[str] = set()
        # apps.connections.open answers with connections_url() when set (tests/socket_emulator.py does).
        self.connections_url: Callable[[], str] | None = None
        self._failures: dict[str, list[_Failure]] = {}
        self._delays: dict[str, float] = {}
        self._in_flight: Counter[str] = Counter()  # calls received, still being delayed
        self._healed = 0  # bumped by heal()/reset(): wakes delayed calls at once
        # One condition guards all state and wakes wait_for() on every recorded call.
        self._cond = threading.Condition()
        self._ts_counter = itertools.count(1)
        self._view_counter = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._methods = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "views.open": self._views_open,
            "views.push": self._views_open,  # same contract: trigger_id + view -> new view
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "usergroups.users.list": self._usergroups_users_list,
            "users.info": self._users_info,
            "users.lookupByEmail": self._users_lookup_by_email,
            "conversations.info": self._conversations_info,
            "conversations.create": self._conversations_create,
            "conversations.invite": self._conversations_invite,
            "conversations.archive": self._conversations_archive,
            "conversations.list": self._conversations_list,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "pins.add": self._pins_add,
            "apps.connections.open": self._apps_connections_open,
            "conversations.open": self._conversations_open,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
        }
        # files.uploadV2 (slack_sdk files_upload_v2): an upload URL per file, the bytes POSTed to it, then
        # completeUploadExternal shares it. files: file id -> {filename, length, data, title, channel, ...}.
        self.files: dict[str, dict] = {}
        self._file_counter = itertools.count(1)

    # ---- lifecycle -------------------------------------------------------

    def start(self) -> SlackEmulator:
        self._server = _Server((self.host, self.port), _Handler)
        self._server.emulator = self  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        # A short poll interval keeps stop() (which waits for the next poll) fast in per-test fixtures.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="slack-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> SlackEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api/"

    def response_url(self, name: str = "r") -> str:
        return f"http://{self.host}:{self.port}/response/{quote(name, safe='')}"

    # ---- test controls ---------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        with self._cond:
            return [c for c in self.calls if c.method == method]

    def said_to(self, user: str) -> list[str]:
        """The texts the bot told `user`, in order, whichever way reached them: a response_url handed out
        for one of their requests (tests/slack_client.py names it after them), an ephemeral message to
        them, or a DM (chat.postMessage to their user id)."""
        with self._cond:
            return [c.args.get("text") or "" for c in self.calls if c.ok and (
                (c.method == "response_url" and (c.response_url_name or "").endswith(f"-{user}"))
                or (c.method == "chat.postEphemeral" and c.args.get("user") == user)
                or (c.method == "chat.postMessage" and c.args.get("channel") == user))]

    def fail_next(
        self,
        method: str,
        n: int = 1,
        *,
        status: int = 200,
        error: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Make the next `n` calls to `method` ("*" = any method) fail."""
        if status == 200 and not error:
            raise ValueError("a status-200 failure needs an error code, e.g. error='channel_not_found'")
        with self._cond:
            self._failures.setdefault(method, []).extend(_Failure(status, error, retry_after) for _ in range(n))

    def delay(self, method: str, seconds: float) -> None:
        """Answer every call to `method` ("*" = any method) `seconds` late, until heal(), reset() or
        delay(method, 0). A failure queued with fail_next is taken when the call arrives, so a delayed
        call that fails was never accepted, even if its caller is gone when it answers."""
        with self._cond:
            if seconds > 0:
                self._delays[method] = seconds
            else:
                self._delays.pop(method, None)

    def in_flight(self, method: str) -> int:
        """Calls to `method` received and still being delayed (not yet in `calls`)."""
        with self._cond:
            return self._in_flight[method]

    def wait_in_flight(self, method: str, count: int = 1, timeout: float = 5.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._in_flight[method] >= count, timeout=timeout):
                raise AssertionError(f"no {count} delayed {method} call(s) in flight within {timeout}s")

    def reset(self) -> None:
        # Clear in place so references held by tests stay live.
        with self._cond:
            self.calls.clear()
            self._failures.clear()
            self._delays.clear()
            self._healed += 1
            self.messages.clear()
            self.channels.clear()
            self.pins.clear()
            self.files.clear()
            self.home_views.clear()
            self._ts_counter = itertools.count(1)

    def make_channel(self, name: str, creator: str = "UBOT") -> str:
        """A channel that exists already (made by someone, or by an earlier try of the bot)."""
        with self._cond:
            return self._new_channel(name, creator)

    def post_as(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> str:
        """A person's message, as if posted in Slack's client (the emulator stores it as Slack would)."""
        with self._cond:
            ts = self._next_ts()
            message = {"type": "message", "user": user, "text": text, "ts": ts}
            if thread_ts:
                message["thread_ts"] = thread_ts
            self.messages[(channel, ts)] = message
            return ts

    def heal(self) -> None:
        """Slack is back: drop queued failures and delays (delayed calls answer now), keep messages and
        the call record."""
        with self._cond:
            self._failures.clear()
            self._delays.clear()
            self._healed += 1
            self._cond.notify_all()

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Block until `count` successful calls to `method` were recorded; return them."""

        def successful() -> list[Call]:
            return [c for c in self.calls if c.method == method and c.ok]

        with self._cond:
            if self._cond.wait_for(lambda: len(successful()) >= count, timeout=timeout):
                return successful()
            summary = "\n".join(
                f"  {c.method} -> {c.status} {c.response.get('error') or ''}{' (injected)' if c.injected else ''}"
                for c in self.calls
            )
            raise AssertionError(
                f"expected {count} successful {method} call(s) within {timeout}s, "
                f"got {len(successful())}. Recorded calls:\n{summary or '  (none)'}"
            )

    # ---- request handling (called from server threads) -------------------

    def _handle(
        self, path: str, token: str | None, args: dict | None, parse_error: str | None
    ) -> tuple[int, dict, dict, str | None]:
        """Record and answer one request. Returns (status, extra headers, JSON body, text body or None)."""
        at = time.time()
        args = args or {}
        url_name = None
        if path.startswith("/api/"):
            method = path[len("/api/"):]
        elif path.startswith("/response/"):
            method, url_name = "response_url", unquote(path[len("/response/"):])
        else:
            method = path

        with self._cond:
            failure = self._pop_failure(method)
            delay = self._delays.get(method, self._delays.get("*", 0.0))
            if delay:
                healed = self._healed
                self._in_flight[method] += 1
                self._cond.notify_all()
                try:  # waiting releases the lock: other calls go on meanwhile
                    self._cond.wait_for(lambda: self._healed != healed, timeout=delay)
                finally:
                    self._in_flight[method] -= 1
            extra_headers: dict = {}
            text_body = None
            if failure:
                status, body, extra_headers = self._failure_response(failure)
            elif method == "response_url":
                # Slack's response_url answers with plain text, not JSON.
                status, body = (400, {"ok": False, "error": "invalid_payload"}) if parse_error else (200, {"ok": True})
                text_body = "invalid_payload" if parse_error else "ok"
            else:
                status, body = 200, self._dispatch(method, token, args, parse_error)
            self.calls.append(Call(method, args, token, status, body, at, bool(failure), url_name))
            self._cond.notify_all()
        return status, extra_headers, body, text_body

    def _pop_failure(self, method: str) -> _Failure | None:
        for key in (method, "*"):
            queue = self._failures.get(key)
            if queue:
                return queue.pop(0)
        return None

    @staticmethod
    def _failure_response(f: _Failure) -> tuple[int, dict, dict]:
        if f.status == 429:
            retry_after = 1 if f.retry_after is None else f.retry_after
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)}
        if f.status == 200:
            return 200, {"ok": False, "error": f.error}, {}
        default = "service_unavailable" if f.status == 503 else "internal_error"
        return f.status, {"ok": False, "error": f.error or default}, {}

    def _dispatch(self, method: str, token: str | None, args: dict, parse_error: str | None) -> dict:
        handler = self._methods.get(method)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token not in self.valid_tokens:
            return {"ok": False, "error": "invalid_auth"}
        if parse_error:
            return {"ok": False, "error": parse_error}
        try:
            return {"ok": True, **handler(args)}
        except _SlackError as e:
            out = {"ok": False, "error": e.args[0]}
            if len(e.args) > 1:
                out["response_metadata"] = {"messages": list(e.args[1])}
            return out

    def _next_ts(self) -> str:
        n = next(self._ts_counter)
        return f"{1700000000 + n // 10000}.{(n % 10000) * 100:06d}"

    # ---- Web API methods: return the body minus "ok", or raise _SlackError

    def _auth_test(self, args: dict) -> dict:
        return {
            "url": "https://emulated.slack.com/",
            "team": "Emulated",
            "user": "releasebot",
            "team_id": "T0001",
            "user_id": "UBOT",
            "bot_id": "B0001",
        }

    def _member_channel(self, args: dict) -> str:
        """The channel the bot may post in, or the Slack error for one it may not."""
        channel = str(args.get("channel") or "")
        if channel.startswith(_USER_PREFIXES):
            raise _SlackError("channel_not_found")
        channel = _require_channel(args)
        if channel.startswith("D") and not channel[1:].startswith(_USER_PREFIXES):
            raise _SlackError("channel_not_found")  # a DM between people: the bot cannot see it at all
        if channel in self.not_member:
            raise _SlackError("not_in_channel")
        return channel

    def _chat_post_message(self, args: dict) -> dict:
        channel = str(args.get("channel") or "")
        if channel.startswith(_USER_PREFIXES):
            # A user id opens (or finds) the bot's own DM with that person, and the answer names the DM.
            channel = dm_of(channel)
        else:
            channel = self._member_channel(args)
        _require_text(args)
        if self.channels.get(channel, {}).get("is_archived"):
            raise _SlackError("is_archived")
        ts = self._next_ts()
        message = {"type": "message", "user": "UBOT", "bot_id": "B0001", "text": args.get("text", ""), "ts": ts}
        for key in ("blocks", "attachments", "thread_ts", "metadata"):
            if key in args:
                message[key] = args[key]
        self.messages[(channel, ts)] = message
        return {"channel": channel, "ts": ts, "message": message}

    def _chat_update(self, args: dict) -> dict:
        channel = _require_channel(args)
        ts = str(args.get("ts") or "")
        if (channel, ts) not in self.messages:
            raise _SlackError("message_not_found")
        message = dict(self.messages[(channel, ts)])
        for key in ("text", "blocks", "attachments", "metadata"):
            if key in args:
                message[key] = args[key]
        self.messages[(channel, ts)] = message
        return {"channel": channel, "ts": ts, "text": message.get("text", ""), "message": message}

    def _chat_post_ephemeral(self, args: dict) -> dict:
        self._member_channel(args)
        if not args.get("user"):
            raise _SlackError("user_not_found")
        _require_text(args)
        # Ephemeral messages are not stored: Slack cannot chat.update them either.
        return {"message_ts": self._next_ts()}

    def _views_open(self, args: dict) -> dict:
        if not args.get("trigger_id"):
            raise _SlackError("invalid_trigger_id")
        bad = _invalid_pickers(args.get("view"))
        if bad:
            raise _SlackError("invalid_arguments", bad)
        return {"view": self._view(args, f"V{next(self._view_counter):08d}")}

    def _views_update(self, args: dict) -> dict:
        # Any id is accepted: views the bot updates may come from payloads the emulator never opened.
        view_id = args.get("view_id") or args.get("external_id")
        if not view_id:
            raise _SlackError("not_found")
        return {"view": self._view(args, view_id)}

    def _views_publish(self, args: dict) -> dict:
        user = str(args.get("user_id") or "")
        if not user:
            raise _SlackError("invalid_arguments", ["[ERROR] missing required field: user_id"])
        view = args.get("view")
        if not isinstance(view, dict) or view.get("type") != "home":
            raise _SlackError("invalid_arguments", ["[ERROR] a published view must be of type home"])
        bad = _view_limits(view)
        if bad:
            raise _SlackError("invalid_arguments", bad)
        with self._cond:
            self.home_views[user] = view
        return {"view": self._view(args, f"VH{user}")}

    def _view(self, args: dict, view_id: str) -> dict:
        view = args.get("view")
        if not isinstance(view, dict) or "type" not in view:
            raise _SlackError("invalid_arguments")
        return {
            "id": view_id,
            "team_id": "T0001",
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{view_id}",
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": "A0001",
            "bot_id": "B0001",
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            **view,
            "id": view_id,
        }

    def _usergroups_users_list(self, args: dict) -> dict:
        group = args.get("usergroup")
        if group not in self.user_groups:
            raise _SlackError("no_such_subteam")
        return {"users": list(self.user_groups[group])}

    def _user(self, user: str) -> dict:
        if user in self.missing_users:
            raise _SlackError("user_not_found")
        return {"id": user, "name": user.lower(), "deleted": user in self.deleted_users,
                "is_bot": user in self.bot_users, "tz": "Europe/London",
                "profile": {"email": f"{user.lower()}@example.com"}}

    def _users_info(self, args: dict) -> dict:
        user = str(args.get("user") or "")
        if not user:
            raise _SlackError("user_not_found")
        found = self._user(user)
        if str(args.get("include_locale")).lower() in ("true", "1"):
            found["locale"] = self.locales.get(user, "en-US")
        return {"user": found}

    def _users_lookup_by_email(self, args: dict) -> dict:
        # The addresses users.info hands out, <lowercased user id>@example.com, are the known ones.
        email = str(args.get("email") or "").strip().lower()
        local, at, domain = email.partition("@")
        if not at or domain != "example.com" or not re.fullmatch(r"[uw][a-z0-9]{2,}", local):
            raise _SlackError("users_not_found")
        if local.upper() in self.missing_users:
            raise _SlackError("users_not_found")
        return {"user": {**self._user(local.upper()), "name": local, "profile": {"email": email}}}

    def _conversations_info(self, args: dict) -> dict:
        channel = _require_channel(args)
        return {"channel": {"id": channel, "name": channel.lower(), "is_channel": channel.startswith("C"),
                            "is_member": channel not in self.not_member}}

    _CHANNEL_NAME = re.compile(r"^[a-z0-9_-]{1,80}$")

    def _new_channel(self, name: str, creator: str) -> str:
        channel = f"C0BR{next(self._channel_counter):05d}"
        self.channels[channel] = {"id": channel, "name": name, "creator": creator, "is_channel": True,
                                  "is_private": False, "is_archived": False, "members": {creator}}
        return channel

    def _channel(self, args: dict) -> dict:
        channel = self.channels.get(str(args.get("channel") or ""))
        if channel is None:
            raise _SlackError("channel_not_found")
        return channel

    @staticmethod
    def _public(channel: dict) -> dict:
        return {k: v for k, v in channel.items() if k != "members"}

    def _conversations_create(self, args: dict) -> dict:
        name = str(args.get("name") or "")
        if not name:
            raise _SlackError("invalid_name_required")
        if len(name) > 80:
            raise _SlackError("invalid_name_maxlength")
        if not self._CHANNEL_NAME.match(name):
            raise _SlackError("invalid_name_specials")
        if any(c["name"] == name for c in self.channels.values()):
            raise _SlackError("name_taken")
        return {"channel": self._public(self.channels[self._new_channel(name, "UBOT")])}

    def _conversations_invite(self, args: dict) -> dict:
        channel = self._channel(args)
        if channel["is_archived"]:
            raise _SlackError("is_archived")
        users = [u for u in str(args.get("users") or "").split(",") if u]
        if not users:
            raise _SlackError("no_user")
        for user in users:
            if user in self.missing_users:
                raise _SlackError("user_not_found")
            if user == "UBOT":
                raise _SlackError("cant_invite_self")
            if user in channel["members"]:
                raise _SlackError("already_in_channel")  # Slack refuses the whole call, unless force=true
        channel["members"].update(users)
        return {"channel": self._public(channel)}

    def _conversations_archive(self, args: dict) -> dict:
        channel = self._channel(args)
        if channel["is_archived"]:
            raise _SlackError("already_archived")
        channel["is_archived"] = True
        return {}

    def _conversations_list(self, args: dict) -> dict:
        exclude = str(args.get("exclude_archived", "")).lower() in ("true", "1")
        rows = [self._public(c) for c in self.channels.values() if not (exclude and c["is_archived"])]
        limit = int(args.get("limit") or 100)
        start = int(args.get("cursor") or 0)
        page, rest = rows[start:start + limit], rows[start + limit:]
        return {"channels": page, "response_metadata": {"next_cursor": str(start + limit) if rest else ""}}

    def _readable(self, args: dict) -> str:
        channel = _require_channel(args)
        if channel in self.unreadable:
            raise _SlackError("not_in_channel")
        if channel not in self.channels and not any(c == channel for c, _ in self.messages):
            raise _SlackError("channel_not_found")
        return channel

    @staticmethod
    def _in_range(ts: str, args: dict) -> bool:
        inclusive = str(args.get("inclusive", "")).lower() in ("true", "1")
        latest, oldest = args.get("latest"), args.get("oldest")
        if latest and (float(ts) > float(latest) or (not inclusive and ts == latest)):
            return False
        if oldest and (float(ts) < float(oldest) or (not inclusive and ts == oldest)):
            return False
        return True

    def _conversations_history(self, args: dict) -> dict:
        channel = self._readable(args)
        # The channel's own messages (thread replies are not in its history), newest first.
        rows = sorted((m for (c, _), m in self.messages.items()
                       if c == channel and m.get("thread_ts", m["ts"]) == m["ts"] and self._in_range(m["ts"], args)),
                      key=lambda m: float(m["ts"]), reverse=True)
        limit = int(args.get("limit") or 100)
        return {"messages": rows[:limit], "has_more": len(rows) > limit}

    def _conversations_replies(self, args: dict) -> dict:
        channel = self._readable(args)
        ts = str(args.get("ts") or "")
        if (channel, ts) not in self.messages:
            raise _SlackError("thread_not_found")
        parent = self.messages[(channel, ts)].get("thread_ts") or ts
        if (channel, parent) not in self.messages:
            raise _SlackError("thread_not_found")
        # Slack puts the thread's parent first, then the replies in the range, oldest first.
        replies = sorted((m for (c, t), m in self.messages.items()
                          if c == channel and m.get("thread_ts") == parent and t != parent
                          and self._in_range(t, args)), key=lambda m: float(m["ts"]))
        limit = int(args.get("limit") or 1000)
        rows = [self.messages[(channel, parent)], *replies]
        return {"messages": rows[:limit], "has_more": len(rows) > limit}

    def _pins_add(self, args: dict) -> dict:
        channel = _require_channel(args)
        ts = str(args.get("timestamp") or "")
        if (channel, ts) not in self.messages:
            raise _SlackError("message_not_found")
        if (channel, ts) in self.pins:
            raise _SlackError("already_pinned")
        self.pins.add((channel, ts))
        return {}

    def uploaded(self, channel: str | None = None) -> list[dict]:
        """Files shared by files.completeUploadExternal (to `channel` when given), oldest first."""
        with self._cond:
            return [f for f in self.files.values() if f.get("shared")
                    and (channel is None or f.get("channel") == channel)]

    def _conversations_open(self, args: dict) -> dict:
        users = str(args.get("users") or "")
        if not users:
            raise _SlackError("users_list_not_supplied")
        if "," in users:
            raise _SlackError("not_implemented")  # group DMs: not something releasebot opens
        user = users.strip()
        if user in self.missing_users:
            raise _SlackError("user_not_found")
        return {"channel": {"id": dm_of(user)}}

    def _files_get_upload_url(self, args: dict) -> dict:
        filename = str(args.get("filename") or "")
        try:
            length = int(args.get("length") or 0)
        except (TypeError, ValueError):
            length = 0
        if not filename:
            raise _SlackError("invalid_arguments")
        if length <= 0:
            raise _SlackError("invalid_length")
        file_id = f"F{next(self._file_counter):08d}"
        self.files[file_id] = {"id": file_id, "filename": filename, "length": length, "data": None,
                               "alt_txt": args.get("alt_txt"), "shared": False}
        return {"upload_url": f"http://{self.host}:{self.port}/upload/{file_id}", "file_id": file_id}

    def receive_upload(self, file_id: str, data: bytes) -> tuple[int, str]:
        """Step 2 of files.uploadV2: the bytes POSTed to the upload URL (plain HTTP, no token)."""
        with self._cond:
            f = self.files.get(file_id)
            self.calls.append(Call("upload", {"file_id": file_id, "bytes": len(data)}, None,
                                   200 if f else 404, {}, time.time(), False, None))
            self._cond.notify_all()
            if f is None:
                return 404, "file not found"
            if len(data) != f["length"]:
                return 400, f"length mismatch: announced {f['length']}, got {len(data)}"
            f["data"] = data
            return 200, f"OK - {len(data)}"

    def _files_complete_upload(self, args: dict) -> dict:
        files = args.get("files")
        if isinstance(files, str):
            try:
                files = json.loads(files)
            except ValueError:
                raise _SlackError("invalid_arguments") from None
        if not isinstance(files, list) or not files:
            raise _SlackError("invalid_arguments")
        channel = args.get("channel_id") or None
        if channel is not None:
            channel = self._member_channel({"channel": channel})
        shared = []
        for item in files:
            f = self.files.get(str((item or {}).get("id")))
            if f is None or f["data"] is None:
                raise _SlackError("file_not_found")
            f.update(shared=True, title=item.get("title") or f["filename"], channel=channel,
                     thread_ts=args.get("thread_ts"), initial_comment=args.get("initial_comment"))
            shared.append({"id": f["id"], "name": f["filename"], "title": f["title"], "size": len(f["data"])})
        return {"files": shared}

    def _apps_connections_open(self, args: dict) -> dict:
        # An app-level token must be in valid_tokens. Without a SocketEmulator no WebSocket server stands
        # behind the URL.
        if self.connections_url is not None:
            return {"url": self.connections_url()}
        return {"url": f"ws://{self.host}:{self.port}/link/?ticket=emulated"}


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A caller that went away (killed while its call was delayed) is not the emulator's error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        path = urlsplit(self.path).path
        if path.startswith("/upload/"):  # files.uploadV2's step 2: raw bytes, not a Web API call
            status, text = self.server.emulator.receive_upload(path[len("/upload/"):], self.rfile.read(length))
            payload = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        raw = self.rfile.read(length).decode("utf-8") if length else ""
        self._answer(urlsplit(self.path).path, raw, self.headers.get("Content-Type", ""))

    def do_GET(self) -> None:
        # Slack accepts query-string arguments too; slack_sdk never uses them.
        parts = urlsplit(self.path)
        self._answer(parts.path, parts.query, "application/x-www-form-urlencoded")

    def _answer(self, path: str, raw: str, content_type: str) -> None:
        args, error = _parse_body(raw, content_type)
        token = None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[len("Bearer "):]
        if args is not None and "json" not in content_type:
            # Slack reads a `token` field only from form/query arguments, never from JSON bodies.
            form_token = args.pop("token", None)
            token = token or form_token
        status, headers, body, text = self.server.emulator._handle(path, token, args, error)
        payload = (text if text is not None else json.dumps(body)).encode("utf-8")
        self.send_response(status)
        content_type = "text/plain" if text is not None else "application/json"
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args) -> None:
        pass  # keep pytest output clean; the calls list is the log


_DATE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])\Z")
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d\Z")


def _invalid_pickers(view) -> list[str]:
    """Slack refuses a view whose datepicker initial_date is not YYYY-MM-DD, or whose timepicker
    initial_time is not HH:mm (24-hour, two digits each), with invalid_arguments and a pointer."""
    bad = []
    blocks = view.get("blocks") if isinstance(view, dict) else None
    for i, block in enumerate(blocks or []):
        element = block.get("element") or {} if isinstance(block, dict) else {}
        for kind, key, pattern in (("datepicker", "initial_date", _DATE), ("timepicker", "initial_time", _TIME)):
            if element.get("type") == kind and key in element and not pattern.match(str(element[key])):
                bad.append(f"[ERROR] must match pattern \"{pattern.pattern}\" "
                           f"[json-pointer:/view/blocks/{i}/element/{key}]")
    return bad


def _view_limits(view: dict) -> list[str]:
    """What Slack refuses in a Home tab or modal: more than 100 blocks, a repeated block_id, a section text
    over 3,000 characters, a header over 150, a button's text over 75, more than 25 elements in actions."""
    blocks = view.get("blocks") or []
    bad = [f"[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]"] if len(blocks) > 100 else []
    ids = [b.get("block_id") for b in blocks if b.get("block_id")]
    if len(ids) != len(set(ids)):
        bad.append("[ERROR] duplicate block_id [json-pointer:/view/blocks]")
    for i, b in enumerate(blocks):
        text = (b.get("text") or {}).get("text") or ""
        if b.get("type") == "section" and len(text) > 3000 or b.get("type") == "header" and len(text) > 150:
            bad.append(f"[ERROR] text too long [json-pointer:/view/blocks/{i}/text]")
        buttons = [*(b.get("elements") or []), *([b["accessory"]] if b.get("accessory") else [])]
        if len(b.get("elements") or []) > 25:
            bad.append(f"[ERROR] no more than 25 items allowed [json-pointer:/view/blocks/{i}/elements]")
        if any(len((e.get("text") or {}).get("text") or "") > 75 for e in buttons if e.get("type") == "button"):
            bad.append(f"[ERROR] button text too long [json-pointer:/view/blocks/{i}]")
    return bad


def _parse_body(raw: str, content_type: str) -> tuple[dict | None, str | None]:
    """Return (args, error code). Error codes are the ones Slack uses for malformed input."""
    if "json" in content_type:
        # slack_sdk sends Content-Type: application/json with an empty body when a method has no args.
        try:
            args = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            return None, "invalid_json"
        if not isinstance(args, dict):
            return None, "invalid_json"
    else:
        args = dict(parse_qsl(raw, keep_blank_values=True))
    # Slack also accepts these as JSON strings inside a JSON body (slack_sdk passes str values through).
    for key in _JSON_FIELDS:
        if isinstance(args.get(key), str):
            try:
                args[key] = json.loads(args[key])
            except json.JSONDecodeError:
                return args, "invalid_arguments"
    return args, None
