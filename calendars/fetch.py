"""Fetching a subscribed calendar politely and safely: timeouts, a size cap, conditional GET, the address policy.

Every connection, the first and each redirect hop, goes through CheckedBackend, which
resolves the host, checks every address against calendars.netpolicy and dials the
address it checked (TLS still verifies and sends SNI for the name). Redirects are
followed here, hop by hop, so each Location is checked before it is requested.

Errors are categories ("HTTP 404", "could not connect", …), never the server's words:
they are stored and posted to the release channel.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import httpcore
import httpx

from calendars.netpolicy import BAD_URL, AddressRefused, NetPolicy, Unresolvable

MAX_BYTES = 5 * 1024 * 1024
MAX_REDIRECTS = 3
TIMEOUT = httpx.Timeout(10.0, connect=5.0)  # per read; DEADLINE bounds the whole download
DEADLINE = 60.0

COULD_NOT_CONNECT = "could not connect"  # refused, closed, filtered or hanging: all one, or errors map ports
TIMED_OUT = "timed out"
TOO_LARGE = "too large"
TOO_MANY_REDIRECTS = "too many redirects"
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class Fetched:
    body: str | None  # None: not modified since the copy we hold
    etag: str | None
    last_modified: str | None


class FetchError(Exception):
    """str() is a category safe to show people."""


class CheckedBackend(httpcore.NetworkBackend):
    """Connects only to addresses the policy allows, and to exactly the address it checked."""

    def __init__(self, net: NetPolicy):
        self._net, self._sync = net, httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        last: Exception | None = None
        for address in self._net.addresses(host, port):  # raises AddressRefused / Unresolvable
            try:
                return self._sync.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last or httpcore.ConnectError(COULD_NOT_CONNECT)

    def connect_unix_socket(self, *args, **kwargs):
        raise AddressRefused("refused by policy: address not allowed")

    def sleep(self, seconds: float) -> None:
        self._sync.sleep(seconds)


class CheckedTransport(httpx.HTTPTransport):
    def __init__(self, net: NetPolicy):
        super().__init__(retries=0)
        # httpx builds its connection pool without a way to pass a network backend; this is the same
        # pool with ours, so the address check sits where the socket is opened.
        self._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(), retries=0,
                                             network_backend=CheckedBackend(net))


def fetch(url: str, etag: str | None = None, last_modified: str | None = None, *, net: NetPolicy | None = None,
          timeout: httpx.Timeout = TIMEOUT, max_bytes: int = MAX_BYTES, deadline: float = DEADLINE) -> Fetched:
    """GET url under the address policy `net` (default: public addresses only)."""
    net = net or NetPolicy.build()
    headers = {"Accept": "text/calendar, */*;q=0.5", "User-Agent": "releasebot"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    until = time.monotonic() + deadline
    try:
        # trust_env=False: an HTTP(S)_PROXY from the environment would dial the proxy, not the checked address
        with httpx.Client(transport=CheckedTransport(net), timeout=timeout, follow_redirects=False,
                          trust_env=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                net.check_url(url)
                with client.stream("GET", url, headers=headers) as resp:
                    if resp.status_code in _REDIRECTS and resp.headers.get("Location"):
                        url = str(resp.url.join(resp.headers["Location"]))
                        continue
                    return _read(resp, etag, last_modified, max_bytes, until)
            raise FetchError(TOO_MANY_REDIRECTS)
    except (AddressRefused, Unresolvable) as exc:
        raise FetchError(str(exc)) from None
    except httpx.InvalidURL:
        raise FetchError(BAD_URL) from None
    except (httpx.HTTPError, OSError, ValueError):  # ValueError/UnicodeError: e.g. an over-long host label
        raise FetchError(COULD_NOT_CONNECT) from None


def _read(resp: httpx.Response, etag, last_modified, max_bytes: int, until: float) -> Fetched:
    if resp.status_code == 304:
        return Fetched(None, etag, last_modified)
    if resp.status_code != 200:
        raise FetchError(f"HTTP {resp.status_code}")
    size, chunks = 0, []
    for chunk in resp.iter_bytes():
        if time.monotonic() > until:  # a server trickling bytes must not hold the sync
            raise FetchError(TIMED_OUT)
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(TOO_LARGE)
        chunks.append(chunk)
    body = b"".join(chunks).decode(resp.encoding or "utf-8", errors="replace")
    return Fetched(body, resp.headers.get("ETag"), resp.headers.get("Last-Modified"))
