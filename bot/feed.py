"""The ICS feed: GET /calendar.ics?token=…[&service=…].

Each person's feed address carries a token derived from their Slack id with a
server secret (HMAC), so nothing needs storing and a wrong token looks exactly
like a missing page (404), revealing nothing.
"""
from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs, quote

from commands.agenda import feed_events
from commands.text import SERVICE_NAME
from calendars.ics import feed

from bot.services import Services


def _secret(svc: Services) -> bytes:
    # In Socket Mode there may be no signing secret; the app token is then the
    # server secret. Never derive from an empty string: anyone could compute it.
    base = svc.config.signing_secret or svc.config.app_token
    if not (svc.config.feed_secret or base):
        raise RuntimeError("no secret to derive calendar feed tokens from")
    configured = svc.config.feed_secret or ("feed:" + base)
    return hashlib.sha256(configured.encode()).digest()


def token_for(svc: Services, user_id: str) -> str:
    mac = hmac.new(_secret(svc), f"calendar-feed:{user_id}".encode(), hashlib.sha256).hexdigest()[:32]
    return f"{user_id}.{mac}"


def feed_url(svc: Services, user_id: str, service: str | None = None) -> str | None:
    if not svc.config.public_url:
        return None
    url = f"{svc.config.public_url.rstrip('/')}/calendar.ics?token={token_for(svc, user_id)}"
    return url + (f"&service={quote(service)}" if service else "")


def valid(svc: Services, token: str) -> bool:
    user, _, _mac = token.partition(".")
    return bool(user) and hmac.compare_digest(token_for(svc, user), token)


def feed_app(svc: Services):
    def application(environ, start_response):
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        query = parse_qs(environ.get("QUERY_STRING", ""))
        # service= becomes the calendar's name: CR/LF or other control characters there are a 400, not a 500.
        if any(not SERVICE_NAME.match(s) for s in query.get("service") or []):
            start_response("400 Bad Request", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"service= is a service name: letters, digits, '.', '_' or '-' (at most 80)\n"]
        if not all(t.isascii() for t in query.get("token") or []):  # tokens are ASCII: anything else is none
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found\n"]
        token = (query.get("token") or [""])[0]
        if not valid(svc, token):
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found\n"]
        service = (query.get("service") or [None])[0]
        body = feed(feed_events(svc.db, svc.clock.now(), service), name="Releases" + (f": {service}" if service else ""))
        start_response("200 OK", [("Content-Type", "text/calendar; charset=utf-8"),
                                  ("Content-Disposition", 'inline; filename="releases.ics"'),
                                  ("Cache-Control", "private, max-age=300")])
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else body]

    return application
