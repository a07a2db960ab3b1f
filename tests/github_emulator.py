"""A local stand-in for GitHub's REST API, as far as a deployment protection rule app uses it.

- POST /app/installations/{id}/access_tokens: checks the App's JWT (RS256) against the public key, and its
  claims (iss is the App id, iat backdated no more than a minute into the past... at most 10 minutes of
  life), and hands out an installation token that expires in an hour;
- POST /repos/{owner}/{repo}/actions/runs/{run}/deployment_protection_rule: the callback; needs a live
  installation token, records the call, answers 204; counts status reports (at most 10 per run, as GitHub)
  and refuses a second answer (422);
- GET /users/{login}: a user's public profile (`emails` sets the public ones).

Everything received is in `calls`; `fail_next(n, status, retry_after=)` makes the next n calls fail.
Standard library plus PyJWT (what the bot signs with), so it cannot drift with the client under test.
"""
from __future__ import annotations

import json
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

APP_ID = "424242"
_TOKENS = re.compile(r"^/app/installations/(\d+)/access_tokens$")
_CALLBACK = re.compile(r"^/repos/([^/]+/[^/]+)/actions/runs/(\d+)/deployment_protection_rule$")
_USER = re.compile(r"^/users/([A-Za-z0-9-]+)$")


def new_key() -> tuple[str, str]:
    """(private PEM, public PEM) of a fresh RSA key for an App."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


@dataclass
class Call:
    method: str
    path: str
    body: dict
    status: int
    authorization: str
    injected: bool = False


@dataclass
class _Failure:
    status: int
    retry_after: int | None


@dataclass
class GitHubEmulator:
    public_key: str
    app_id: str = APP_ID
    host: str = "127.0.0.1"
    calls: list[Call] = field(default_factory=list)
    emails: dict[str, str] = field(default_factory=dict)  # login -> public email
    token_lifetime: int = 3600
    tokens: dict[str, tuple[int, float]] = field(default_factory=dict)  # token -> (installation, expires)
    answered: dict[int, str] = field(default_factory=dict)  # run id -> state
    reports: dict[int, int] = field(default_factory=dict)  # run id -> status reports
    jwt_problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: list[_Failure] = []
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> "GitHubEmulator":
        self._server = _Server((self.host, 0), _Handler)
        self._server.emulator = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="github-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self._server.server_address[1]}"

    def callback_url(self, repo: str, run: int) -> str:
        return f"{self.api_url}/repos/{repo}/actions/runs/{run}/deployment_protection_rule"

    def fail_next(self, n: int = 1, status: int = 500, retry_after: int | None = None) -> None:
        with self._lock:
            self._failures += [_Failure(status, retry_after) for _ in range(n)]

    def revoke_tokens(self) -> None:
        """Every installation token handed out stops working (as when it expired early)."""
        with self._lock:
            self.tokens.clear()

    def calls_to(self, kind: str) -> list[Call]:
        """kind: "token", "callback" or "user"."""
        pattern = {"token": _TOKENS, "callback": _CALLBACK, "user": _USER}[kind]
        with self._lock:
            return [c for c in self.calls if pattern.match(c.path)]

    def callbacks(self) -> list[dict]:
        """The bodies of the callback calls GitHub took (204)."""
        return [c.body for c in self.calls_to("callback") if c.status == 204]

    # ---- handling ------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: dict, authorization: str) -> tuple[int, dict | None, dict]:
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
            self._record(Call(method, path, body, failure.status, authorization, injected=True))
            return failure.status, {"message": "injected failure"}, headers
        status, answer = self._route(method, path, body, authorization)
        self._record(Call(method, path, body, status, authorization))
        return status, answer, {}

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _route(self, method: str, path: str, body: dict, authorization: str) -> tuple[int, dict | None]:
        m = _TOKENS.match(path)
        if m and method == "POST":
            return self._access_token(int(m.group(1)), authorization)
        m = _CALLBACK.match(path)
        if m and method == "POST":
            return self._callback(int(m.group(2)), body, authorization)
        m = _USER.match(path)
        if m and method == "GET":
            if self._installation(authorization) is None:
                return 401, {"message": "Bad credentials"}
            login = m.group(1)
            return 200, {"login": login, "id": abs(hash(login)) % 10**8, "email": self.emails.get(login.lower())}
        return 404, {"message": "Not Found"}

    def _access_token(self, installation: int, authorization: str) -> tuple[int, dict]:
        scheme, _, token = authorization.partition(" ")
        problem = self._jwt_problem(token) if scheme == "Bearer" else "not a Bearer JWT"
        if problem:
            with self._lock:
                self.jwt_problems.append(problem)
            return 401, {"message": f"A JSON web token could not be decoded: {problem}"}
        token = "ghs_" + secrets.token_hex(16)
        expires = time.time() + self.token_lifetime
        with self._lock:
            self.tokens[token] = (installation, expires)
        at = datetime.fromtimestamp(expires, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return 201, {"token": token, "expires_at": at}

    def _jwt_problem(self, token: str) -> str | None:
        try:
            claims = jwt.decode(token, self.public_key, algorithms=["RS256"], options={"require": ["iat", "exp",
                                                                                                 "iss"]})
        except jwt.PyJWTError as exc:
            return f"{type(exc).__name__}: {exc}"
        now = time.time()
        if str(claims["iss"]) != self.app_id:
            return f"iss {claims['iss']} is not the App id"
        if claims["iat"] > now + 5:
            return "iat is in the future"
        if claims["exp"] - claims["iat"] > timedelta(minutes=10).total_seconds():
            return "exp is more than 10 minutes after iat"
        return None

    def _installation(self, authorization: str) -> int | None:
        scheme, _, token = authorization.partition(" ")
        with self._lock:
            found = self.tokens.get(token) if scheme == "token" else None
        if found is None or found[1] < time.time():
            return None
        return found[0]

    def _callback(self, run: int, body: dict, authorization: str) -> tuple[int, dict | None]:
        if self._installation(authorization) is None:
            return 401, {"message": "Bad credentials"}
        if not isinstance(body.get("environment_name"), str) or not isinstance(body.get("comment"), str):
            return 422, {"message": "environment_name and comment are required"}
        if len(body["comment"]) > 1024:
            return 422, {"message": "comment is too long (maximum is 1024 characters)"}
        with self._lock:
            if run in self.answered:
                return 422, {"message": "the deployment protection rule was already answered"}
            state = body.get("state")
            if state is None:
                if self.reports.get(run, 0) >= 10:
                    return 422, {"message": "at most 10 status reports per deployment"}
                self.reports[run] = self.reports.get(run, 0) + 1
            elif state in ("approved", "rejected"):
                self.answered[run] = state
            else:
                return 422, {"message": "state must be approved or rejected"}
        return 204, None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self._answer("POST")

    def do_GET(self) -> None:
        self._answer("GET")

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        emu: GitHubEmulator = self.server.emulator  # type: ignore[attr-defined]
        status, answer, headers = emu.handle(method, urlsplit(self.path).path, body,
                                             self.headers.get("Authorization", ""))
        data = json.dumps(answer).encode() if answer is not None else b""
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass
