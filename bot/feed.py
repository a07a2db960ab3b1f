"""The ICS feed: GET /calendar.ics?token=…[&service=…].

Each person's feed address carries a token derived from their Slack id with a
server secret (HMAC), so nothing needs storing and a wrong token looks exactly
like a missing page (404), revealing nothing.

Every member has a token and a big calendar takes seconds to render, so the feed
keeps to a bounded share of the server: a token may fetch FEED_BURST times per
FEED_WINDOW (then 429), the answer carries ETag and Last-Modified from the feed's
revision (commands.agenda.feed_revision, one query) and a matching conditional
GET is a 304, each (revision, service) is rendered once and served from memory,
and at most FEED_RENDERS renders run at once (the next is a 503 at once, not a
wait on a thread Slack's acks need).
"""
from __future__ import annotations

import hashlib
import hmac
import math
import threading
from collections import OrderedDict, deque
from datetime import datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import parse_qs, quote

from commands.agenda import feed_events, feed_revision
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


FEED_RENDERS = 2  # renders at once; each holds a waitress thread for as long as it takes
FEED_BURST, FEED_WINDOW = 3, timedelta(seconds=60)  # per token: a client refreshing a few feeds at once
CACHED_FEEDS = 16  # rendered bodies kept, least recently used dropped (a big feed is a few MiB)
RETRY_BUSY = 5  # seconds, when every render slot is taken


class _Limiter:
    """A token's fetches in the last FEED_WINDOW; only valid tokens get here, so it holds one entry per
    person who reads the feed."""

    def __init__(self):
        self._seen: dict[str, deque] = {}
        self._lock = threading.Lock()

    def retry_after(self, token: str, now: datetime) -> int:
        """0 if this fetch may go ahead (and counts it), else the seconds until one may."""
        with self._lock:
            seen = self._seen.setdefault(token, deque())
            while seen and seen[0] <= now - FEED_WINDOW:
                seen.popleft()
            if len(seen) >= FEED_BURST:
                return max(1, math.ceil((seen[0] + FEED_WINDOW - now).total_seconds()))
            seen.append(now)
            return 0


class _Cache:
    def __init__(self):
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            if key in self._bodies:
                self._bodies.move_to_end(key)
            return self._bodies.get(key)

    def put(self, key: str, body: bytes) -> None:
        with self._lock:
            self._bodies[key] = body
            while len(self._bodies) > CACHED_FEEDS:
                self._bodies.popitem(last=False)


def _not_modified(environ, etag: str, last_modified: datetime) -> bool:
    """RFC 9110 13.1: If-None-Match decides when present; otherwise If-Modified-Since."""
    match = environ.get("HTTP_IF_NONE_MATCH")
    if match is not None:
        tags = {t.strip().removeprefix("W/") for t in match.split(",")}
        return "*" in tags or etag in tags
    since = environ.get("HTTP_IF_MODIFIED_SINCE")
    if not since:
        return False
    try:
        when = parsedate_to_datetime(since)
    except (TypeError, ValueError, IndexError, OverflowError):
        return False
    return when.tzinfo is not None and last_modified.replace(microsecond=0) <= when


def feed_app(svc: Services):
    limiter, cache, slots = _Limiter(), _Cache(), threading.BoundedSemaphore(FEED_RENDERS)

    def application(environ, start_response):
        method = environ.get("REQUEST_METHOD")
        if method not in ("GET", "HEAD"):
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
        now = svc.clock.now()
        wait = limiter.retry_after(token, now)
        if wait:
            start_response("429 Too Many Requests", [("Content-Type", "text/plain; charset=utf-8"),
                                                      ("Retry-After", str(wait))])
            return [b"this feed was fetched too often; try again later\n"]
        service = (query.get("service") or [None])[0]
        # The window moves once a day, so a day's feed is one revision until something in it changes.
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        revision = feed_revision(svc.db, day, service)
        etag = '"' + hashlib.sha256(repr(revision.fingerprint).encode()).hexdigest()[:32] + '"'
        validators = [("ETag", etag), ("Last-Modified", format_datetime(revision.last_modified, usegmt=True)),
                      ("Cache-Control", "private, max-age=300")]
        if _not_modified(environ, etag, revision.last_modified):
            start_response("304 Not Modified", validators)
            return [b""]
        body = cache.get(etag)
        if body is None:
            if not slots.acquire(blocking=False):
                start_response("503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8"),
                                                           ("Retry-After", str(RETRY_BUSY))])
                return [b"the calendar is being prepared; try again shortly\n"]
            try:
                body = cache.get(etag)  # another request may have rendered it meanwhile
                if body is None:
                    body = feed(feed_events(svc.db, day, service),
                                name="Releases" + (f": {service}" if service else ""))
                    cache.put(etag, body)
            finally:
                slots.release()
        start_response("200 OK", [("Content-Type", "text/calendar; charset=utf-8"),
                                  ("Content-Disposition", 'inline; filename="releases.ics"'),
                                  ("Content-Length", str(len(body))), *validators])
        return [b"" if method == "HEAD" else body]

    return application
