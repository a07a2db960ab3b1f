"""The GitHub App's outbox rows, sent by bot.delivery like Slack's:
- github_webhook: a verified delivery; the protection rule request is decided (commands.github_gate), a
  deployment status recorded (commands.github_outcomes);
- github_recheck: a release that GitHub deployments wait on changed, or its window opened;
- github_answer: one call to a deployment's callback URL (an answer, or a status report).

Who deploys is the GitHub sender as a Slack user: [github.users] in the policy, else the sender's public
email (the payload's, or GET /users/{login}) looked up with Slack's users.lookupByEmail. When Slack or GitHub
cannot answer, the row is tried again later (RetryLater); "could not check" is never "no".
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any, Callable, Mapping

from commands import github_gate
from commands.errors import CouldNotCheck
from commands.github_gate import GITHUB_ANSWER, GITHUB_RECHECK, GITHUB_WEBHOOK, ProtectionRequest
from commands.github_outcomes import StatusEvent, deployer_of, deployment_status
from commands.deploy import Deployer
from storage.db import read
from storage.models import Outbox

from bot.delivery import RetryLater
from bot.github.client import GitHubApp, under
from bot.github.messages import callback_body
from bot.people import NotAMember, SlackUnavailable

log = logging.getLogger(__name__)

_RUN = re.compile(r"/repos/[^/]+/[^/]+/actions/runs/(\d+)(?:/|$)")


class Malformed(Exception):
    pass


class GitHubDelivery:
    def __init__(self, svc, app: GitHubApp | None = None):
        self._svc = svc
        self.app = app or GitHubApp(svc.config.github)

    def send(self, row: Outbox, done: Callable[..., None]) -> None:
        handler = {GITHUB_WEBHOOK: self._webhook, GITHUB_RECHECK: self._recheck, GITHUB_ANSWER: self._answer}
        try:
            result = handler[row.kind](row.payload)
        except CouldNotCheck as exc:  # Slack could not say who holds a role: nothing decided yet
            raise RetryLater(f"could not check: {exc.message}") from None
        except Malformed as exc:
            log.warning("github: outbox %s (%s) cannot be handled: %s", row.key, row.kind, exc)
            result = f"malformed: {exc}"
        done(row, result=(result or "done")[:200])

    # ---- deliveries ---------------------------------------------------------------------------------

    def _webhook(self, payload: Mapping[str, Any]) -> str:
        body = payload.get("body") or {}
        if payload.get("event") == "deployment_protection_rule":
            return self._protection(body)
        return self._status(body)

    def _protection(self, body: Mapping[str, Any]) -> str:
        if body.get("action") != "requested":
            return f"ignored: action {body.get('action')}"
        req = protection_request(body)
        if not under(self.app.api_url, req.callback_url):
            log.error("github: deployment %s of %s asks for an answer at %s, outside GITHUB_API_URL (%s): refused, "
                      "never called", req.deployment_id, req.repo, req.callback_url[:300], self.app.api_url)
            return "refused: the callback URL is outside GITHUB_API_URL"
        who, unmapped = self._person(req.sender, body.get("sender") or {}, req.installation_id, req.repo)
        out = github_gate.requested(self._svc.db, req, who, unmapped, self._svc.clock, self._svc.policy)
        return out.message or "decided"

    def _status(self, body: Mapping[str, Any]) -> str:
        ev = status_event(body)
        known = deployer_of(self._svc.db, ev.deployment_id)
        installation = _int((body.get("installation") or {}).get("id"), "installation.id")
        if known is not None:
            who = self._deployer(known, ev.repo)
        else:
            who, _ = self._person(ev.sender, body.get("sender") or {}, installation, ev.repo)
            # nobody it maps to: recorded as the App itself (pipeline:github), within the repository's mapping
            who = who or Deployer.itself(github_gate.PIPELINE, self._environments(ev.repo))
        # what it queued (the release's thread, a non-conformance) goes out in the delivery run's next round
        out = deployment_status(self._svc.db, ev, who, self._svc.clock, self._svc.policy)
        return out.message or "recorded"

    def _recheck(self, payload: Mapping[str, Any]) -> str:
        with read(self._svc.db) as session:
            pending = [(gr.id, gr.deployer_id, gr.repo) for gr in github_gate.waiting(session, payload["release_id"])]
        for request_id, user, repo in pending:
            who = self._deployer(user, repo) if user else None
            github_gate.recheck(self._svc.db, request_id, who, self._svc.clock, self._svc.policy)
        return f"rechecked {len(pending)}"

    def _answer(self, payload: Mapping[str, Any]) -> str:
        url = payload["callback_url"]
        if not under(self.app.api_url, url):  # checked when it arrived; never called, whatever wrote the row
            log.error("github: callback %s is outside GITHUB_API_URL; not called", url[:300])
            return "refused: outside GITHUB_API_URL"
        self.app.call("POST", url, int(payload["installation_id"]), callback_body(payload))
        return f"answered {payload.get('state') or 'status report'}"

    # ---- who deploys ------------------------------------------------------------------------------------

    def _environments(self, repo: str) -> frozenset[str]:
        mapping = self._svc.policy.github.repo(repo)
        return frozenset(mapping.environments.values()) if mapping else frozenset()

    def _deployer(self, user_id: str, repo: str) -> Deployer:
        actor = self._svc.actor(user_id)
        return github_gate.deployer(actor.user_id, actor.roles, actor.unresolved, self._environments(repo))

    def _person(self, login: str, sender: Mapping[str, Any], installation_id: int,
                repo: str) -> tuple[Deployer | None, str | None]:
        """The Slack user the GitHub sender is, or None and why it is nobody."""
        mapped = self._svc.policy.github.user(login)
        if mapped:
            return self._deployer(mapped, repo), None
        email = sender.get("email")
        if not isinstance(email, str) or not email:
            email = self.app.user(login, installation_id).get("email")  # raises RetryLater when GitHub fails
        nobody = (f"GitHub user {login} is not mapped to a Slack user: add {login} = \"U…\" under [github.users] "
                  "in the release policy")
        if not isinstance(email, str) or not email:
            return None, nobody + ", or make their email address public on GitHub"
        try:
            user = self._svc.people.member(email)
        except SlackUnavailable as exc:
            raise RetryLater(f"Slack could not look up {login}'s email: {exc}") from None
        except (NotAMember, ValueError):
            return None, nobody + "; their public email address matches no member of the Slack workspace"
        return self._deployer(user, repo), None


# ---- parsing GitHub's payloads ---------------------------------------------------------------------

def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Malformed(f"{what} is not a number")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise Malformed(f"{what} is missing")
    return value


def _deployment_payload(deployment: Mapping[str, Any]) -> dict[str, Any]:
    value = deployment.get("payload")
    if isinstance(value, str):  # GitHub keeps a deployment's payload as given: often a JSON string
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            value = {}
    return dict(value) if isinstance(value, dict) else {}


def run_url(callback_url: str, repository: Mapping[str, Any]) -> str | None:
    m = _RUN.search(callback_url)
    html = repository.get("html_url")
    if m and isinstance(html, str) and re.fullmatch(r"https://[^\s<>|]+", html):
        return f"{html.rstrip('/')}/actions/runs/{m.group(1)}"
    return None


def protection_request(body: Mapping[str, Any]) -> ProtectionRequest:
    deployment = body.get("deployment") or {}
    repository = body.get("repository") or {}
    callback = _str(body.get("deployment_callback_url"), "deployment_callback_url")
    return ProtectionRequest(
        deployment_id=_int(deployment.get("id"), "deployment.id"), repo=_str(repository.get("full_name"), "repository"),
        environment=_str(body.get("environment"), "environment"),
        installation_id=_int((body.get("installation") or {}).get("id"), "installation.id"),
        callback_url=callback, sender=_str((body.get("sender") or {}).get("login"), "sender.login"),
        run_url=run_url(callback, repository), sha=body.get("sha") or deployment.get("sha"),
        ref=body.get("ref") or deployment.get("ref"), payload=_deployment_payload(deployment))


def status_event(body: Mapping[str, Any]) -> StatusEvent:
    deployment = body.get("deployment") or {}
    status = body.get("deployment_status") or {}
    url = status.get("log_url") or status.get("target_url")
    return StatusEvent(
        deployment_id=_int(deployment.get("id"), "deployment.id"),
        repo=_str((body.get("repository") or {}).get("full_name"), "repository"),
        environment=_str(status.get("environment") or deployment.get("environment"), "environment"),
        state=_str(status.get("state"), "deployment_status.state"),
        sender=_str((body.get("sender") or {}).get("login"), "sender.login"),
        sha=deployment.get("sha"), ref=deployment.get("ref"),
        url=url if isinstance(url, str) and url.startswith("https://") else None,
        payload=_deployment_payload(deployment))
