"""The GitHub App's REST calls: a JWT (RS256, PyJWT) for the App, an installation token for each call, and
nothing but URLs under GITHUB_API_URL.

No call ever sleeps: a 403/429 with Retry-After (or an exhausted rate limit) and a 5xx raise RetryLater, and
the outbox tries the row again later (bot.delivery). A 401 renews the installation token and tries once more
at once. Installation tokens are cached until shortly before they expire.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from bot.delivery import DeadLetter, RetryLater
from bot.github.config import GitHubConfig

log = logging.getLogger(__name__)

JWT_BACKDATE = 60  # seconds: GitHub's clock may be behind ours
JWT_LIFETIME = 9 * 60  # GitHub allows at most 10 minutes
TOKEN_MARGIN = 5 * 60  # renew an installation token this long before it expires
TIMEOUT = 10.0


class OutsideApi(Exception):
    """A URL not under GITHUB_API_URL: never called."""


def under(api_url: str, url: str) -> bool:
    """Is `url` GITHUB_API_URL or below it (same scheme, host and port; the path inside the API's)?"""
    try:
        base, target = urlsplit(api_url.rstrip("/") + "/"), urlsplit(url)
    except ValueError:
        return False
    if (target.scheme, target.netloc.lower()) != (base.scheme, base.netloc.lower()):
        return False
    if target.username or target.password or ".." in target.path.split("/"):
        return False
    return (target.path.rstrip("/") + "/").startswith(base.path)


class GitHubApp:
    def __init__(self, config: GitHubConfig, http: httpx.Client | None = None):
        self._config = config
        self._http = http or httpx.Client(timeout=TIMEOUT, follow_redirects=False)
        self._tokens: dict[int, tuple[str, float]] = {}  # installation id -> (token, expires at, epoch s)
        self._lock = threading.Lock()

    @property
    def api_url(self) -> str:
        return self._config.api_url

    def app_jwt(self) -> str:
        now = int(time.time())
        claims = {"iat": now - JWT_BACKDATE, "exp": now + JWT_LIFETIME, "iss": self._config.app_id}
        return jwt.encode(claims, self._config.private_key, algorithm="RS256")

    def installation_token(self, installation_id: int, renew: bool = False) -> str:
        with self._lock:
            cached = self._tokens.get(installation_id)
            if cached and not renew and cached[1] - TOKEN_MARGIN > time.time():
                return cached[0]
        url = f"{self.api_url}/app/installations/{int(installation_id)}/access_tokens"
        resp = self._send("POST", url, {"Authorization": f"Bearer {self.app_jwt()}"}, None)
        if resp.status_code != 201:
            self._refused(resp, "the installation token")
        data = resp.json()
        expires = _epoch(data.get("expires_at")) or time.time() + 3600
        with self._lock:
            self._tokens[installation_id] = (data["token"], expires)
        return data["token"]

    def call(self, method: str, url: str, installation_id: int, body: dict[str, Any] | None = None) -> httpx.Response:
        """One REST call as the installation; RetryLater or DeadLetter when it did not go through."""
        if not under(self.api_url, url):
            log.error("GitHub: %s %s is not under GITHUB_API_URL (%s); not called", method, url[:300], self.api_url)
            raise OutsideApi(url)
        for renew in (False, True):
            token = self.installation_token(installation_id, renew=renew)
            resp = self._send(method, url, {"Authorization": f"token {token}"}, body)
            if resp.status_code != 401:
                break
            log.warning("GitHub: %s %s answered 401; renewing the installation token", method, url[:300])
        if resp.status_code >= 300:
            self._refused(resp, f"{method} {url[:300]}")
        return resp

    def user(self, login: str, installation_id: int) -> dict[str, Any]:
        resp = self.call("GET", f"{self.api_url}/users/{login}", installation_id)
        return resp.json() if resp.content else {}

    def _send(self, method: str, url: str, headers: dict[str, str], body) -> httpx.Response:
        headers = {**headers, "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
                   "User-Agent": "releasebot"}
        try:
            return self._http.request(method, url, headers=headers, json=body)
        except httpx.HTTPError as exc:  # refused, reset, timed out: try again later
            raise RetryLater(f"GitHub: {method} {url[:300]} failed: {type(exc).__name__}: {exc}") from None

    def _refused(self, resp: httpx.Response, what: str) -> None:
        status = resp.status_code
        error = f"GitHub answered {status} to {what}: {resp.text[:300]}"
        wait = _retry_after(resp)
        if status == 429 or (status == 403 and wait is not None):
            raise RetryLater(error, wait)
        if status >= 500:
            raise RetryLater(error)
        if status == 401:
            # still refused with a fresh token, or the JWT itself: the App's id or key is wrong, which is no one
            # row's fault (as Slack's invalid_auth): kept and retried until GITHUB_APP_* is fixed
            log.error("GitHub refused the App's credentials (%s); check GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY",
                      error)
            raise RetryLater(error)
        raise DeadLetter(error)


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if value is not None:
        try:
            return max(1.0, float(value))
        except ValueError:
            return 60.0
    if resp.headers.get("X-RateLimit-Remaining") == "0":
        reset = resp.headers.get("X-RateLimit-Reset", "")
        return max(1.0, float(reset) - time.time()) if reset.isdigit() else 60.0
    return None


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()
    except ValueError:
        return None
