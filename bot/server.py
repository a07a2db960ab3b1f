"""HTTP: Slack's events endpoint (HTTP mode only), the pipeline API, the feed and a health check, as one WSGI
app for waitress.

The port is public, so nothing here trusts a request before it has proved itself: a Slack request's body is
capped and its signature checked on the raw bytes before Bolt parses anything; the API and the feed each run
on a bounded share of waitress's threads, so whatever they are asked, Slack's acks keep threads of their own.
"""
from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import threading
import time
from typing import Callable, Iterable
from urllib.parse import parse_qs

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from sqlalchemy import text
from sqlalchemy.engine import Engine

from storage import outbox
from storage.db import read

from bot.api import api_app
from bot.delivery import NOT_IN_CHANNEL_CODES
from bot.feed import feed_app
from bot.http_prologue import Answered, plain as _plain, posted_body
from bot.services import Services

log = logging.getLogger(__name__)

# Slack's payloads are a few KiB (a modal submission is the largest); 1 MiB is generous.
SLACK_MAX_BODY = 1024 * 1024
SIGNATURE_MAX_AGE = 5 * 60  # seconds; what Slack and Bolt allow
THREADS = 16  # the default of RELEASEBOT_HTTP_THREADS (bot.config), which `releasebot serve` passes instead
# At most this many pipeline API requests at once (each may wait on Slack's users.info); more get 503.
API_CONCURRENCY = 3
# With the feed's own bound (bot.feed.FEED_RENDERS = 2), at least 6 - 3 - 2 = 1 thread is always left for
# Slack (RELEASEBOT_HTTP_THREADS is at least 6); 11 by default.
RETRY_BUSY = "5"

# waitress: refuse any body larger than the largest route accepts before receiving it (waitress answers 413 on
# Content-Length, or as soon as a chunked body passes it); drop connections idle for 10 s, checked every 2 s, so
# half-open sockets cannot hold the connection slots; poll() because select() cannot watch more than 1024.
SERVER_OPTIONS = {"threads": THREADS, "connection_limit": 500, "channel_timeout": 10, "cleanup_interval": 2,
                  "max_request_body_size": SLACK_MAX_BODY, "asyncore_use_poll": True, "ident": "releasebot"}


def wsgi_app(app: App, db: Engine, svc: Services) -> Callable:
    # In Socket Mode Slack's requests arrive over the WebSocket (bot/socket_mode.py), so /slack/events is not
    # served: whatever comes there over HTTP is not from Slack, signed or not.
    slack = None if svc.config.app_token else app.inbox.acks.answering(
        verified(SlackRequestHandler(app, path="/slack/events"), svc.config.signing_secret))
    pipeline, github = api_app(svc), None  # bearer tokens, not Slack signatures
    if svc.config.github is not None:  # HMAC-signed deliveries; each is one write and a 202
        from bot.github.webhook import webhook_app
        github = webhook_app(svc)

    def machines(environ, start_response) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") == "/github/webhook":
            return github(environ, start_response)
        return pipeline(environ, start_response)

    # pipelines and GitHub share one bounded share of the threads, so Slack's acks keep theirs
    api = bounded(machines, API_CONCURRENCY, "pipeline API / GitHub webhook")
    calendar = feed_app(svc)  # a per-person token in the URL, for calendar clients; bounds itself

    def application(environ, start_response) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/slack/events" and slack is not None:
            return slack(environ, start_response)
        if path.startswith("/api/"):
            return api(environ, start_response)
        if path == "/github/webhook" and github is not None:
            return api(environ, start_response)
        if path == "/calendar.ics":
            return calendar(environ, start_response)
        if path == "/healthz":
            status, body = health(db)
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return _plain(start_response, "404 Not Found", b"not found\n")

    return application


def health(db: Engine) -> tuple[str, bytes]:
    """/healthz: the database answers, and how many messages the bot could not post because it is not in
    their channel (dead letters, so every process says the same)."""
    try:
        with read(db) as session:  # a health check never waits behind a writer
            session.execute(text("SELECT 1"))
        missing = outbox.dead_letters(db, *NOT_IN_CHANNEL_CODES)
    except Exception:  # noqa: BLE001 - health checks answer, they do not raise
        return "503 Service Unavailable", json.dumps({"status": "database unavailable"}).encode() + b"\n"
    return "200 OK", json.dumps({"status": "ok", "not_in_channel": missing}).encode() + b"\n"


def verified(slack: Callable, signing_secret: str) -> Callable:
    """Slack's endpoint: the body capped, read once, and its signature checked on the raw bytes before Bolt
    sees it; a request that is not Slack's is answered here, without any parsing."""
    secret = signing_secret.encode("utf-8")

    def application(environ, start_response) -> Iterable[bytes]:
        body = posted_body(environ, start_response, SLACK_MAX_BODY)
        if isinstance(body, Answered):
            return body
        if not signed(secret, body, environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", ""),
                      environ.get("HTTP_X_SLACK_SIGNATURE", "")):
            if _ssl_check(body):
                # Slack's certificate check is the one request it does not sign: an empty 200, no listener.
                return _plain(start_response, "200 OK", b"")
            log.warning("slack events: unsigned or forged request from %s refused", environ.get("REMOTE_ADDR"))
            return _plain(start_response, "401 Unauthorized", b"invalid signature\n")
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return _plain(start_response, "400 Bad Request", b"body is not UTF-8\n")
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
        try:
            return slack(environ, start_response)
        except Exception:  # noqa: BLE001 - Slack gets a status, the log gets the traceback
            log.exception("slack events: a signed request failed")
            return _plain(start_response, "500 Internal Server Error", b"internal error\n")

    return application


def signed(secret: bytes, body: bytes, timestamp: str, signature: str) -> bool:
    """Slack's v0 signature over the raw bytes, from the last five minutes. slack_sdk's SignatureVerifier
    computes the same HMAC but decodes the body first, which a hostile body can make fail; this never
    decodes anything."""
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12 and signature.isascii()):
        return False
    if abs(time.time() - int(timestamp)) > SIGNATURE_MAX_AGE:
        return False
    base = b"v0:" + timestamp.encode("ascii") + b":" + body
    expected = "v0=" + hmac.new(secret, base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def _ssl_check(body: bytes) -> bool:
    try:
        return parse_qs(body.decode("utf-8"), max_num_fields=20).get("ssl_check") == ["1"]
    except ValueError:  # not UTF-8, or too many fields: not Slack's check
        return False


def bounded(inner: Callable, limit: int, name: str) -> Callable:
    """At most `limit` requests in `inner` at once; the next is told to come back (503), never queued on
    waitress's threads."""
    slots = threading.BoundedSemaphore(limit)

    def application(environ, start_response) -> Iterable[bytes]:
        if not slots.acquire(blocking=False):
            log.warning("%s: %d requests already in progress; answered 503", name, limit)
            return _plain(start_response, "503 Service Unavailable", b"busy, try again shortly\n",
                          [("Retry-After", RETRY_BUSY)])
        try:
            return list(inner(environ, start_response))
        finally:
            slots.release()

    return application
