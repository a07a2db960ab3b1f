"""Shared by the GitHub e2e tests: the App's key and settings, signed deliveries, the policy mapping, and
GitHub's payloads as GitHub sends them."""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from datetime import datetime, timezone

import httpx
import pytest

from commands.policy import Policy

from conftest import ROLES, serving, start_bot
from github_emulator import APP_ID, GitHubEmulator, new_key
from package_steps import ARTIFACT

UTC = timezone.utc
SECRET = "github-webhook-secret-0123456789"
REPO = "acme/payments"
HTML = f"https://github.com/{REPO}"
# conftest's clock starts at 2026-11-23 09:00 UTC; this window is past the minor type's 7-day lead time
LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-15 10:00" tz=UTC '
        'duration=60m summary="Add refunds"')
IN_WINDOW = datetime(2026, 12, 15, 10, 5, tzinfo=UTC)
CHECKED = {"monitoring": True, "rollback": True, "oncall": True}
# what a deploy workflow puts in the deployment's payload: the release, the artefact it built (the production
# gate asks for one carrying the release's version; the commit is the deployment's sha), the checklist
PAYLOAD = {"release": "REL-1", "artifact": ARTIFACT, "checklist": CHECKED}
USERS = {"octocat": "U0OPS", "qa-person": "U0QA"}
_KEY = new_key()  # one RSA key for the session: generating one costs a noticeable fraction of a second
_ids = itertools.count(1000)


def github_policy() -> Policy:
    return Policy.from_mapping({"roles": ROLES, "github": {
        "repos": {REPO: {"service": "payments", "environments": {"production": "production",
                                                                  "staging": "staging"}}},
        "users": USERS}}, source="test policy")


@pytest.fixture
def policy() -> Policy:
    return github_policy()


@pytest.fixture
def github():
    emu = GitHubEmulator(public_key=_KEY[1]).start()
    yield emu
    emu.stop()


def github_env(github: GitHubEmulator) -> dict[str, str]:
    return {"GITHUB_APP_ID": APP_ID, "GITHUB_APP_PRIVATE_KEY": _KEY[0], "GITHUB_WEBHOOK_SECRET": SECRET,
            "GITHUB_API_URL": github.api_url}


@pytest.fixture
def gh_bot(db, clock, policy, emulator, github):
    yield from serving(start_bot(db, clock, policy, emulator, env_overrides=github_env(github)))


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(bot, event: str, payload: dict, delivery: str | None = None, signature: str | None = "good",
            raw: bytes | None = None) -> httpx.Response:
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery or f"d-{next(_ids)}",
               "Content-Type": "application/json"}
    if signature == "good":
        headers["X-Hub-Signature-256"] = sign(body)
    elif signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return httpx.post(f"{bot.url}/github/webhook", content=body, headers=headers, timeout=10)


def protection(github: GitHubEmulator, *, deployment: int, run: int, sender: str = "octocat",
               environment: str = "production", payload: dict | None = None, ref: str = "main",
               callback: str | None = None) -> dict:
    return {
        "action": "requested", "environment": environment, "event": "push", "sha": "a1b2c3d4e5f6", "ref": ref,
        "deployment_callback_url": callback or github.callback_url(REPO, run),
        "deployment": {"id": deployment, "sha": "a1b2c3d4e5f6", "ref": ref, "environment": environment,
                       "payload": json.dumps(payload if payload is not None else PAYLOAD)},
        "repository": {"full_name": REPO, "html_url": HTML},
        "installation": {"id": 77}, "sender": {"login": sender, "type": "User"},
    }


def status(*, deployment: int, state: str, sender: str = "octocat", environment: str = "production",
           payload: dict | None = None, ref: str = "main") -> dict:
    return {
        "action": "created",
        "deployment_status": {"state": state, "environment": environment,
                              "log_url": f"{HTML}/actions/runs/5/job/6", "target_url": ""},
        "deployment": {"id": deployment, "sha": "a1b2c3d4e5f6", "ref": ref, "environment": environment,
                       "payload": payload if payload is not None else PAYLOAD},
        "repository": {"full_name": REPO, "html_url": HTML},
        "installation": {"id": 77}, "sender": {"login": sender, "type": "User"},
    }
