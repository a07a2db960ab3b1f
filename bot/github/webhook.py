"""POST /github/webhook: GitHub's deliveries, verified, recorded, answered 202 at once.

Nothing is trusted before the X-Hub-Signature-256 HMAC (GITHUB_WEBHOOK_SECRET) of the raw body checks out,
compared in constant time; anything else is a 401 and writes nothing. A verified delivery becomes one outbox
row keyed by X-GitHub-Delivery, so a redelivery (GitHub's at-least-once) finds its row and is handled once,
and the work runs after the answer (GitHub waits 10 s at most), in whichever process claims the row: a
restart loses nothing.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from typing import Callable, Iterable

from commands.github_gate import GITHUB_WEBHOOK, stream
from commands.text import unstorable_field
from storage import outbox
from storage.db import Busy, ack_write

from bot.http_prologue import Answered, plain as _plain, posted_body
from bot.logging_safe import loggable
from bot.services import Services

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # bot.server.SLACK_MAX_BODY: waitress refuses larger bodies before this sees them
EVENTS = ("deployment_protection_rule", "deployment_status")
_DELIVERY = re.compile(r"[A-Za-z0-9-]{1,100}")


def signature_ok(secret: bytes, body: bytes, header: str) -> bool:
    if not header.isascii() or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


def webhook_app(svc: Services) -> Callable:
    secret = svc.config.github.webhook_secret.encode("utf-8")

    def application(environ, start_response) -> Iterable[bytes]:
        body = posted_body(environ, start_response, MAX_BODY)
        if isinstance(body, Answered):
            return body
        if not signature_ok(secret, body, environ.get("HTTP_X_HUB_SIGNATURE_256", "")):
            log.warning("github webhook: unsigned or forged delivery from %s refused",
                        loggable(environ.get("REMOTE_ADDR")))
            return _plain(start_response, "401 Unauthorized", b"invalid signature\n")
        delivery, event = environ.get("HTTP_X_GITHUB_DELIVERY", ""), environ.get("HTTP_X_GITHUB_EVENT", "")
        if not _DELIVERY.fullmatch(delivery):
            return _plain(start_response, "400 Bad Request", b"X-GitHub-Delivery is missing or malformed\n")
        if event == "ping":
            return _plain(start_response, "200 OK", b"pong\n")
        if event not in EVENTS:
            log.info("github webhook: %s delivery %s ignored", loggable(event), delivery)
            return _plain(start_response, "202 Accepted", b"ignored: releasebot handles deployment_protection_rule "
                                                          b"and deployment_status\n")
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            return _plain(start_response, "400 Bad Request", b"the body is not JSON\n")
        if not isinstance(data, dict) or unstorable_field(data) is not None:
            return _plain(start_response, "400 Bad Request", b"the body is not a JSON object the bot can keep\n")
        deployment = data.get("deployment") if isinstance(data.get("deployment"), dict) else {}
        dep_id = deployment.get("id")
        try:
            with ack_write(svc.db) as session:
                added = outbox.enqueue(session, key=f"github-delivery:{delivery}", kind=GITHUB_WEBHOOK,
                                       at=svc.clock.now(), payload={"event": event, "delivery": delivery, "body": data},
                                       stream=stream(dep_id) if isinstance(dep_id, int) else None)
        except Busy:
            return _plain(start_response, "503 Service Unavailable", b"busy, redeliver shortly\n",
                          [("Retry-After", "5")])
        log.info("github webhook: %s delivery %s %s", event, delivery, "recorded" if added else "already recorded")
        return _plain(start_response, "202 Accepted", b"recorded\n" if added else b"already recorded\n")

    return application
