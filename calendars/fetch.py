"""Fetching a subscribed calendar politely: timeouts, a size cap, conditional GET."""
from __future__ import annotations

from dataclasses import dataclass

import time

import httpx

MAX_BYTES = 5 * 1024 * 1024
TIMEOUT = httpx.Timeout(10.0, connect=5.0)  # per read; DEADLINE bounds the whole download
DEADLINE = 60.0


@dataclass(frozen=True)
class Fetched:
    body: str | None  # None: not modified since the copy we hold
    etag: str | None
    last_modified: str | None


class FetchError(Exception):
    pass


def fetch(url: str, etag: str | None = None, last_modified: str | None = None, *,
          client: httpx.Client | None = None, max_bytes: int = MAX_BYTES, deadline: float = DEADLINE) -> Fetched:
    headers = {"Accept": "text/calendar, */*;q=0.5", "User-Agent": "releasebot"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    own = client is None
    client = client or httpx.Client(timeout=TIMEOUT, follow_redirects=True, max_redirects=3)
    try:
        with client.stream("GET", url, headers=headers) as resp:
            if resp.status_code == 304:
                return Fetched(None, etag, last_modified)
            if resp.status_code != 200:
                raise FetchError(f"HTTP {resp.status_code} from {url}")
            size, chunks, until = 0, [], time.monotonic() + deadline
            for chunk in resp.iter_bytes():
                if time.monotonic() > until:  # a server trickling bytes must not hold the sync
                    raise FetchError(f"{url} took longer than {deadline:.0f} s")
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"{url} is larger than {max_bytes // (1024 * 1024)} MiB")
                chunks.append(chunk)
            body = b"".join(chunks).decode(resp.encoding or "utf-8", errors="replace")
            return Fetched(body, resp.headers.get("ETag"), resp.headers.get("Last-Modified"))
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:  # ValueError: e.g. an over-long host label
        raise FetchError(f"could not fetch {url}: {type(exc).__name__}: {exc}") from None
    finally:
        if own:
            client.close()
