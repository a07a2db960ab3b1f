"""The Pipeline API: CI/CD pipelines ask the deployment gate and report deployments.

    GET  /api/v1/releases/REL-n/gate?actor=…[&monitoring=1&rollback=1&oncall=1]
    POST /api/v1/releases/REL-n/deployments   {"status": "started"|"succeeded"|"failed"|"rolled_back",
                                               "actor": …, "artifact": …, "commit": …, "pipeline_url": …,
                                               "checklist": {"monitoring": true, …}, "note": …}

Each pipeline has its own bearer token (RELEASEBOT_API_TOKENS); only the
tokens' sha256 digests are kept, and the pipeline's name goes into every
event it reports ("U123 via pipeline:nightly"). The same use cases as the
Slack buttons do the work, so a pipeline gets the same gate and leaves the
same record. Answers are JSON; errors are {"error": "…"} with the status that
says what went wrong, never a traceback.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import parse_qs

from slack_sdk.errors import SlackApiError

from commands.deploy import (CHECKLIST, Deployer, check_gate, decide_rollback, finish_deployment,
                             never_approved, release_state, report_unapproved, start_deployment)
from commands.errors import InputError, NotFound
from commands.states import STABILISING
from commands.text import parse_ref

from bot.services import Services

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
_ROUTE = re.compile(r"^/api/v1/releases/([^/]+)/(gate|deployments)/?$")
_METHOD = {"gate": "GET", "deployments": "POST"}
# API status -> the outcome finish_deployment records (None: start_deployment)
STATUSES: dict[str, str | None] = {"started": None, "succeeded": "success", "failed": "failed",
                                   "rolled_back": "rolled_back"}
CHECK_KEYS = tuple(key for key, _ in CHECKLIST)
_BODY_FIELDS = {"status", "actor", "artifact", "commit", "pipeline_url", "checklist", "note"}
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_URL = re.compile(r"https?://\S+")
_TRUE, _FALSE = {"1", "true", "yes"}, {"0", "false", "no"}
_AUTH_HEADERS = (("WWW-Authenticate", 'Bearer realm="releasebot"'),)


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, tuple(headers)


@dataclass(frozen=True)
class Response:
    status: int
    body: Mapping[str, Any]
    headers: tuple[tuple[str, str], ...] = field(default=())


_REASON = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           405: "Method Not Allowed", 409: "Conflict", 413: "Content Too Large", 422: "Unprocessable Content",
           500: "Internal Server Error", 502: "Bad Gateway"}


def api_app(svc: Services) -> Callable:
    """The WSGI app that serves /api/v1/."""

    def application(environ, start_response) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", "GET").upper(), environ.get("PATH_INFO", "")
        pipeline = None
        try:
            pipeline = authenticate(svc.config.api_tokens, environ.get("HTTP_AUTHORIZATION", ""))
            response = _route(svc, pipeline, method, path, environ)
        except ApiError as exc:
            response = Response(exc.status, {"error": exc.message}, exc.headers)
        except Exception:  # noqa: BLE001 - the caller gets a status, the log gets the traceback
            log.exception("pipeline API: %s %s (pipeline %s) failed", method, path, pipeline)
            response = Response(500, {"error": "internal error"})
        if response.status == 401:
            log.warning("pipeline API: %s %s from %s refused: %s", method, path, environ.get("REMOTE_ADDR"),
                        response.body.get("error"))
        else:
            log.info("pipeline API: %s %s by pipeline %s -> %s", method, path, pipeline, response.status)
        payload = json.dumps(response.body, ensure_ascii=False).encode("utf-8")
        start_response(f"{response.status} {_REASON.get(response.status, '')}".strip(),
                       [("Content-Type", "application/json; charset=utf-8"), ("Cache-Control", "no-store"),
                        ("Content-Length", str(len(payload))), *response.headers])
        return [payload]

    return application


def authenticate(token_hashes: Mapping[str, str], header: str) -> str:
    """The name of the pipeline whose token this Authorization header carries."""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "missing bearer token: send Authorization: Bearer <token>", _AUTH_HEADERS)
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
    found = None
    for known, name in token_hashes.items():  # no early exit: every token costs the same
        if hmac.compare_digest(known, digest):
            found = name
    if found is None:
        raise ApiError(401, "invalid API token", _AUTH_HEADERS)
    return found


def _route(svc: Services, pipeline: str, method: str, path: str, environ) -> Response:
    m = _ROUTE.match(path)
    if not m:
        raise ApiError(404, f"no such endpoint: {path}; use /api/v1/releases/REL-n/gate or "
                            "/api/v1/releases/REL-n/deployments")
    ref, what = m.groups()
    if method != _METHOD[what]:
        raise ApiError(405, f"{path} takes {_METHOD[what]}, not {method}", [("Allow", _METHOD[what])])
    try:
        release_id = parse_ref(ref)
    except InputError:
        raise ApiError(400, f"'{ref}' is not a release id; a release id looks like REL-12") from None
    try:
        if what == "gate":
            return _gate(svc, release_id, environ)
        return _report(svc, pipeline, release_id, environ)
    except NotFound:
        raise ApiError(404, f"REL-{release_id} does not exist") from None
    except InputError as exc:
        raise ApiError(400, exc.message) from None


def _gate(svc: Services, release_id: int, environ) -> Response:
    params = _query(environ)
    unknown = sorted(set(params) - {"actor", *CHECK_KEYS})
    if unknown:
        raise ApiError(400, f"unknown parameter {', '.join(unknown)}; the gate takes actor, "
                            f"{', '.join(CHECK_KEYS)}")
    checklist = {key: _flag(key, params[key]) for key in CHECK_KEYS if key in params}
    actor = _required_actor(params.get("actor"))
    never_approved(svc.db, release_id)  # 404 before asking Slack about the actor
    user = resolve_actor(svc, actor)
    reasons = check_gate(svc.db, release_id, user, svc.clock, checklist)
    return Response(200, {"release": f"REL-{release_id}", "actor": user, "allowed": not reasons,
                          "reasons": reasons})


def _report(svc: Services, pipeline: str, release_id: int, environ) -> Response:
    body = _json_body(environ)
    unknown = sorted(set(body) - _BODY_FIELDS)
    if unknown:
        raise ApiError(400, f"unknown field {', '.join(unknown)}; a report has {', '.join(sorted(_BODY_FIELDS))}")
    status = body.get("status")
    if status not in STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(STATUSES)}, not {json.dumps(status)}")
    actor = _required_actor(body.get("actor"))
    artifact = _text(body, "artifact", 1000)
    commit = _text(body, "commit", 80)
    pipeline_url = _text(body, "pipeline_url", 2000)
    if pipeline_url and not _URL.fullmatch(pipeline_url):
        raise ApiError(400, "pipeline_url must be an http(s) URL")
    note = _text(body, "note", 2000)
    checklist = _checklist(body.get("checklist"))
    ref = f"REL-{release_id}"
    unapproved = never_approved(svc.db, release_id)
    user = resolve_actor(svc, actor)
    who = Deployer(user, svc.actor(user).roles, pipeline=pipeline)

    if unapproved:
        detail = " ".join(f"{k}={v}." for k, v in (("artifact", artifact), ("commit", commit),
                                                   ("pipeline_url", pipeline_url), ("note", note)) if v)
        reasons = check_gate(svc.db, release_id, user, svc.clock, checklist) if status == "started" else []
        nc = report_unapproved(svc.db, who, release_id, status, svc.clock, detail)
        _kick(svc)
        reasons.append(f"{ref} was never approved: a deployment reported for it is a non-conformance (QMS 6.2), "
                       f"recorded as non-conformance {nc.id} and posted to the release channel")
        return Response(409, {"release": ref, "allowed": False, "nonconformance": nc.id, "reasons": reasons})

    if status == "started":
        out = start_deployment(svc.db, who, release_id, checklist, svc.clock, artifact=artifact, commit=commit,
                               pipeline_url=pipeline_url)
        if out.refused:
            return Response(409, {"release": ref, "allowed": False, "reasons": out.data.get("reasons", [])})
        code = 201 if out.changed else 200  # 200: this deployer had already started it
    else:
        if status == "rolled_back" and release_state(svc.db, release_id) == STABILISING:
            # A pipeline that rolls back on its own after a success reports only the end: the
            # decision and the restoration are then one moment, as in a one-step Slack rollback.
            decided = decide_rollback(svc.db, who, release_id, note or "reported rolled back by the pipeline",
                                      svc.clock)
            if decided.refused:
                return Response(409, {"release": ref, "error": decided.message})
        out = finish_deployment(svc.db, who, release_id, STATUSES[status], svc.clock, svc.policy, note=note,
                                link=pipeline_url)
        if out.refused:
            return Response(409, {"release": ref, "error": out.message})
        code = 200
    if out.changed:
        _kick(svc)
    return Response(code, {"release": ref, "state": out.release.state, "message": out.message})


def resolve_actor(svc: Services, actor: str) -> str:
    """A Slack user id as given, or the user an email address belongs to."""
    if _USER_ID.fullmatch(actor):
        return actor
    if not _EMAIL.fullmatch(actor):
        raise ApiError(400, "actor must be a Slack user id (U… or W…) or an email address")
    try:
        user = svc.client.users_lookupByEmail(email=actor).get("user") or {}
    except SlackApiError as exc:
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else exc.response.status_code
        if error == "users_not_found":
            raise ApiError(422, f"no Slack user has the email address {actor}; give the actor's Slack user id "
                                "or an address Slack knows") from None
        log.warning("users.lookupByEmail failed: %s", error)
        raise ApiError(502, f"Slack could not look up {actor} ({error}); try again, or give the Slack user "
                            "id") from None
    except OSError as exc:
        log.warning("users.lookupByEmail failed: %s", exc)
        raise ApiError(502, f"Slack could not be reached to look up {actor}; try again, or give the Slack user "
                            "id") from None
    user_id = str(user.get("id") or "")
    if user.get("deleted"):
        raise ApiError(422, f"the Slack user with the email address {actor} is deactivated")
    if not _USER_ID.fullmatch(user_id):
        raise ApiError(502, f"Slack answered the lookup of {actor} without a user id")
    return user_id


def _kick(svc: Services) -> None:
    """Post what the change queued now; the scheduler retries whatever fails."""
    try:
        svc.delivery.run_once()
    except Exception:  # noqa: BLE001 - the rows stay in the outbox
        log.exception("immediate delivery after a pipeline report failed; the scheduler will retry")


# ---- request parsing ---------------------------------------------------------

def _query(environ) -> dict[str, str]:
    try:
        parsed = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True, strict_parsing=False,
                          errors="strict")
    except UnicodeDecodeError:
        raise ApiError(400, "the query string is not UTF-8") from None
    twice = sorted(k for k, v in parsed.items() if len(v) > 1)
    if twice:
        raise ApiError(400, f"{', '.join(twice)} is given twice")
    return {k: v[0].strip() for k, v in parsed.items()}


def _flag(key: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ApiError(400, f"{key} must be 1 (confirmed) or 0, not '{value}'")


def _json_body(environ) -> dict[str, Any]:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ApiError(400, "Content-Length is not a number") from None
    if length > MAX_BODY:
        raise ApiError(413, f"the body is {length} bytes; at most {MAX_BODY} are accepted")
    raw = environ["wsgi.input"].read(length) if length > 0 else b""
    if not raw.strip():
        raise ApiError(400, "the body must be a JSON object, like {\"status\": \"started\", \"actor\": \"U123\"}")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, f"the body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object, like {\"status\": \"started\", \"actor\": \"U123\"}")
    return data


def _required_actor(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ApiError(400, "actor is required: the Slack user id (U…) or email address of the person deploying")
    if not isinstance(value, str) or len(value) > 254:
        raise ApiError(400, "actor must be a Slack user id (U… or W…) or an email address")
    return value.strip()


def _text(body: Mapping[str, Any], key: str, limit: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{key} must be a string")
    value = value.strip()
    if len(value) > limit:
        raise ApiError(400, f"{key} is longer than {limit} characters")
    return value or None


def _checklist(value: Any) -> dict[str, bool]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        example = ", ".join(f'"{key}": true' for key in CHECK_KEYS)
        raise ApiError(400, f"checklist must be an object like {{{example}}}")
    unknown = sorted(set(value) - set(CHECK_KEYS))
    if unknown:
        raise ApiError(400, f"unknown checklist item {', '.join(unknown)}; the items are {', '.join(CHECK_KEYS)}")
    wrong = sorted(k for k, v in value.items() if not isinstance(v, bool))
    if wrong:
        raise ApiError(400, f"checklist {', '.join(wrong)} must be true or false")
    return dict(value)
