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
import logging
import math
import re
import threading
from collections import OrderedDict, deque
from datetime import datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import parse_qs, quote, urlsplit

from slack_sdk.errors import SlackApiError

from commands.agenda import FeedContext, feed_events, feed_people, feed_revision
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


log = logging.getLogger(__name__)

# Part of every ETag: bump it when what a feed looks like changes (a new property, another VTIMEZONE
# form), so a client holding the old body's ETag gets the new body instead of a 304.
FEED_FORMAT = 2
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


_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def uid_host(svc: Services, environ) -> str:
    """The host that qualifies UIDs (release-1@releasebot.example.com), so two installs' events never
    share one in a calendar: RELEASEBOT_PUBLIC_URL's host; without it, the host the client asked for
    (the one its subscription names, so stable for it); "releasebot" if neither is a host name."""
    for candidate in (svc.config.public_url, "//" + (environ.get("HTTP_HOST") or "")):
        try:
            host = (urlsplit(candidate or "").hostname or "").lower()
        except ValueError:
            continue
        if len(host) <= 253 and _HOST.fullmatch(host):
            return host
    return "releasebot"


class _Workspace:
    """The workspace's address (auth.test's url, https://<workspace>.slack.com/), for links to threads:
    asked once per process, and after a failure not again for RETRY, so a render never waits on Slack
    more than once in a while."""

    RETRY = timedelta(minutes=5)

    def __init__(self, svc: Services):
        self._svc, self._tried, self.url = svc, None, None
        self._lock = threading.Lock()

    def lookup(self) -> str | None:
        with self._lock:
            now = self._svc.clock.now()
            if self.url or (self._tried and now - self._tried < self.RETRY):
                return self.url
            self._tried = now
            try:
                url = self._svc.client.auth_test().get("url")
            except (SlackApiError, OSError) as exc:
                log.warning("feed: auth.test failed (%s); thread links wait for the next render",
                            getattr(exc, "response", None) and exc.response.get("error") or exc)
                return None
            if isinstance(url, str) and re.fullmatch(r"https://[A-Za-z0-9.-]+/?", url):
                self.url = url
            return self.url


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
    workspace = _Workspace(svc)
    calendar_policy = svc.policy.calendar

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
        keep = calendar_policy.feed_keep_cancelled
        past, ahead = calendar_policy.feed_past, calendar_policy.feed_ahead  # one horizon: revision and body
        revision = feed_revision(svc.db, day, service, keep, past, ahead)
        host = uid_host(svc, environ)

        def tag(names: dict, workspace_url: str | None) -> str:
            # Everything the body is made of: the database's part, then what comes from elsewhere (the UID
            # host, the thread links' workspace, the names known, the policy and the format).
            made_of = (FEED_FORMAT, revision.fingerprint, host, workspace_url, sorted(names.items()),
                       calendar_policy.feed_refresh, keep)
            return '"' + hashlib.sha256(repr(made_of).encode()).hexdigest()[:32] + '"'

        etag = tag(svc.people.known_names(), workspace.url)
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
                    url = workspace.lookup()
                    names, known = svc.people.names(feed_people(svc.db, day, service, past, ahead))
                    context = FeedContext(host=host, workspace_url=url, names=names, keep_cancelled=keep,
                                          past=past, ahead=ahead)
                    body = feed(feed_events(svc.db, day, service, context),
                                name="Releases" + (f": {service}" if service else ""),
                                refresh=calendar_policy.feed_refresh, horizon=day + ahead)
                    # A render that learnt names or the workspace made a body the next request's ETag
                    # describes, not this one's: it is labelled (and kept) as that one.
                    etag = tag(known, url)
                    validators[0] = ("ETag", etag)
                    cache.put(etag, body)
            finally:
                slots.release()
        start_response("200 OK", [("Content-Type", "text/calendar; charset=utf-8"),
                                  ("Content-Disposition", 'inline; filename="releases.ics"'),
                                  ("Content-Length", str(len(body))), *validators])
        return [b"" if method == "HEAD" else body]

    return application
