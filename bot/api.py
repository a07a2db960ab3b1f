"""The Pipeline API: CI/CD pipelines ask the deployment gate and report deployments.

    GET  /api/v1/releases/REL-n/gate?actor=…[&monitoring=1&rollback=1&oncall=1]
    POST /api/v1/releases/REL-n/deployments   {"status": "started"|"succeeded"|"failed"|"rolled_back",
                                               "actor": …, "artifact": …, "commit": …, "pipeline_url": …,
                                               "checklist": {"monitoring": true, …}, "note": …,
                                               "tag": …|null, "commit_time": ISO 8601,
                                               "rollback_decided_at": …, "restored_at": …}
    POST /api/v1/deployments                  a deployment naming no approved release (bot/api_deployments.py)
    POST /api/v1/releases/REL-n/assessment    {"ci": "passed"}   (an emergency's assessment item, QMS 4.6:
                                               the automated CI checks passed; recorded as the pipeline)
    POST /api/v1/releases/REL-n/evidence      {"phase", "status", "url", "summary", "artifact"}   (QMS 4.3)
    POST /api/v1/releases/REL-n/package       {"notes", "runbook", "rollback"}   (QMS 4.4; bot/api_evidence.py)

Each pipeline has its own bearer token (RELEASEBOT_API_TOKENS); only the
tokens' sha256 digests are kept, with what each token allows (environments,
and whether it may name a person or acts only as pipeline:<name>). The
pipeline's name goes into every event it reports ("U123 via pipeline:nightly").
A named person must be an active member of the workspace (bot/people.py).
The same use cases as the Slack buttons decide (commands.deploy,
commands.pipeline); this module only authenticates, parses and maps their
Outcome to a status. Answers are JSON; errors are {"error": "…"} with the
status that says what went wrong, never a traceback.
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

from commands.deploy import CHECKLIST, Deployer, check_gate, pipeline_identity, release_state
from commands.emergency import assess
from commands.errors import CouldNotCheck, InputError, NotFound
from commands.pipeline import STATUSES, Report, report_deployment
from commands.provenance import Provenance
from commands.rollback import RollbackTimes, parse_instant
from commands.text import UNSTORABLE, parse_ref, unstorable_field

from bot import api_evidence, api_incidents
from bot.config import ApiToken
from bot.logging_safe import loggable
from bot.people import EMAIL, USER_ID, NotAMember, SlackUnavailable
from bot.services import Services
from bot.times import iso_all

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
_ROUTE = re.compile(r"^/api/v1/releases/([^/]+)/(gate|deployments|assessment|evidence|package)/?$")
_METHOD = {"gate": "GET", "deployments": "POST", "assessment": "POST", "evidence": "POST", "package": "POST"}
CHECK_KEYS = tuple(key for key, _ in CHECKLIST)
_BODY_FIELDS = {"status", "actor", "artifact", "commit", "pipeline_url", "checklist", "note", "tag", "commit_time",
                "rollback_decided_at", "restored_at"}
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


_REASON = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
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
            log.exception("pipeline API: %s %s (pipeline %s) failed", loggable(method), loggable(path),
                          pipeline and pipeline.name)
            response = Response(500, {"error": "internal error"})
        if response.status == 401:
            # The method and path are the caller's: escaped, so a CR/LF in them cannot forge a line.
            log.warning("pipeline API: %s %s from %s refused: %s", loggable(method), loggable(path),
                        loggable(environ.get("REMOTE_ADDR")), response.body.get("error"))
        else:
            log.info("pipeline API: %s %s by pipeline %s -> %s", loggable(method), loggable(path),
                     pipeline and pipeline.name, response.status)
        # commands/ marks the times in its sentences; a pipeline reads them as ISO 8601 UTC.
        payload = json.dumps(iso_all(response.body), ensure_ascii=False).encode("utf-8")
        start_response(f"{response.status} {_REASON.get(response.status, '')}".strip(),
                       [("Content-Type", "application/json; charset=utf-8"), ("Cache-Control", "no-store"),
                        ("Content-Length", str(len(payload))), *response.headers])
        return [payload]

    return application


def authenticate(token_hashes: Mapping[str, ApiToken], header: str) -> ApiToken:
    """The pipeline (and what it may do) whose token this Authorization header carries."""
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


def _route(svc: Services, pipeline: ApiToken, method: str, path: str, environ) -> Response:
    if path.rstrip("/") == "/api/v1/deployments":  # a deployment naming no approved release (bot/api_deployments.py)
        return _unmatched(svc, pipeline, method, environ)
    if api_incidents.PATH.match(path):  # POST /api/v1/incidents (bot/api_incidents.py)
        return api_incidents.handle(svc, pipeline, method, environ)
    m = _ROUTE.match(path)
    if not m:
        raise ApiError(404, f"no such endpoint: {path}; use /api/v1/releases/REL-n/gate, "
                            "/api/v1/releases/REL-n/deployments, /api/v1/releases/REL-n/assessment, "
                            "/api/v1/deployments, /api/v1/incidents, /api/v1/releases/REL-n/evidence or "
                            "/api/v1/releases/REL-n/package")
    ref, what = m.groups()
    if method != _METHOD[what]:
        raise ApiError(405, f"{path} takes {_METHOD[what]}, not {method}", [("Allow", _METHOD[what])])
    try:
        release_id = parse_ref(ref)
    except NotFound as exc:  # past 32 bits: names no release
        raise ApiError(404, exc.message) from None
    except InputError:
        raise ApiError(400, f"'{ref}' is not a release id; a release id looks like REL-12") from None
    try:
        if what == "gate":
            return _gate(svc, pipeline, release_id, environ)
        if what == "assessment":
            return _assessment(svc, pipeline, release_id, environ)
        if what in ("evidence", "package"):
            handler = api_evidence.evidence if what == "evidence" else api_evidence.package
            return handler(svc, pipeline, release_id, _json_body(environ), ApiError, _kick)
        return _report(svc, pipeline, release_id, environ)
    except NotFound:
        raise ApiError(404, f"REL-{release_id} does not exist") from None
    except CouldNotCheck as exc:  # a user group lookup failed: nothing was written
        raise ApiError(502, exc.message) from None
    except InputError as exc:
        raise ApiError(400, exc.message) from None


def _unmatched(svc: Services, pipeline: ApiToken, method: str, environ) -> Response:
    from bot.api_deployments import report_unmatched  # it builds on this module's parsing
    if method != "POST":
        raise ApiError(405, f"/api/v1/deployments takes POST, not {method}", [("Allow", "POST")])
    try:
        return report_unmatched(svc, pipeline, environ)
    except NotFound as exc:
        raise ApiError(404, exc.message) from None
    except InputError as exc:
        raise ApiError(400, exc.message) from None


def _gate(svc: Services, pipeline: ApiToken, release_id: int, environ) -> Response:
    params = _query(environ)
    unknown = sorted(set(params) - {"actor", "artifact", "commit", *CHECK_KEYS})
    if unknown:
        raise ApiError(400, f"unknown parameter {', '.join(unknown)}; the gate takes actor, artifact, commit, "
                            f"{', '.join(CHECK_KEYS)}")
    checklist = {key: _flag(key, params[key]) for key in CHECK_KEYS if key in params}
    release_state(svc.db, release_id)  # 404 before asking Slack about the actor
    who = deployer(svc, pipeline, params.get("actor"))
    prov = Provenance(params.get("artifact") or None, params.get("commit") or None)
    reasons = check_gate(svc.db, release_id, who, svc.clock, checklist, svc.policy, prov)
    return Response(200, {"release": f"REL-{release_id}", "actor": who.user_id, "allowed": not reasons,
                          "reasons": reasons})


def _report(svc: Services, pipeline: ApiToken, release_id: int, environ) -> Response:
    body = _json_body(environ)
    unknown = sorted(set(body) - _BODY_FIELDS)
    if unknown:
        raise ApiError(400, f"unknown field {', '.join(unknown)}; a report has {', '.join(sorted(_BODY_FIELDS))}")
    status = body.get("status")
    if status not in STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(STATUSES)}, not {json.dumps(status)}")
    actor = body.get("actor")
    pipeline_url = _text(body, "pipeline_url", 2000)
    if pipeline_url and not _URL.fullmatch(pipeline_url):
        raise ApiError(400, "pipeline_url must be an http(s) URL")
    report = Report(status, _checklist(body.get("checklist")), artifact=_text(body, "artifact", 1000),
                    commit=_text(body, "commit", 80), pipeline_url=pipeline_url, note=_text(body, "note", 2000),
                    **provenance(body, status))
    if actor is not None or pipeline.act_for_people:
        _required_actor(actor)  # a malformed body is a 400 before anything is looked up
    release_state(svc.db, release_id)  # 404 before asking Slack about the actor
    who = deployer(svc, pipeline, actor)
    out = report_deployment(svc.db, who, release_id, report, svc.clock, svc.policy)
    if out.changed:
        _kick(svc)
    ref = f"REL-{release_id}"
    if "nonconformance" in out.data:
        return Response(409, {"release": ref, "allowed": False, "nonconformance": out.data["nonconformance"],
                              "reasons": out.data["reasons"]})
    if out.refused and status == "started":
        return Response(409, {"release": ref, "allowed": False, "reasons": out.data.get("reasons", [])})
    if out.refused:
        return Response(409, {"release": ref, "error": out.message})
    code = 201 if status == "started" and out.changed else 200  # 200: a repeat, already recorded
    return Response(code, {"release": ref, "state": out.release.state, "message": out.message})


def _assessment(svc: Services, pipeline: ApiToken, release_id: int, environ) -> Response:
    """The pipeline's part of an emergency's assessment: CI passed. The rest is people's, on the bridge."""
    body = _json_body(environ)
    if set(body) != {"ci"} or body["ci"] != "passed":
        raise ApiError(400, 'the body must be {"ci": "passed"}: a pipeline reports that the automated CI checks '
                            "passed; blast radius, rollback and scope are recorded on the bridge")
    out = assess(svc.db, pipeline_identity(pipeline.name), release_id, {"ci": "passed"}, svc.clock, svc.policy,
                 environments=pipeline.environments)
    ref = f"REL-{release_id}"
    if out.refused:
        return Response(409, {"release": ref, "error": out.message})
    if out.changed:
        _kick(svc)
    return Response(200, {"release": ref, "assessed": bool(out.data.get("assessed")), "message": out.message})


def deployer(svc: Services, pipeline: ApiToken, actor: Any) -> Deployer:
    """Who the request deploys as: the pipeline itself, or the workspace member it names."""
    itself = pipeline_identity(pipeline.name)
    if actor is None and not pipeline.act_for_people or actor == itself:
        return Deployer.itself(pipeline.name, pipeline.environments)
    actor = _required_actor(actor)
    if actor.startswith("pipeline:"):
        raise ApiError(400, f"a pipeline acts only as itself ({itself}), not as {actor}")
    try:
        user = svc.people.member(actor)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    except NotAMember as exc:
        raise ApiError(422, str(exc)) from None
    except SlackUnavailable as exc:
        raise ApiError(502, str(exc)) from None
    return Deployer.of(svc.actor(user), pipeline.name, pipeline.environments, pipeline.act_for_people)


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
    bad = unstorable_field(parsed)
    if bad is not None:
        raise ApiError(400, f"the query string {UNSTORABLE}" if not bad else f"{bad} {UNSTORABLE}")
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
    bad = unstorable_field(data)
    if bad is not None:  # JSON's \u0000 and lone \ud800 escapes decode to text no database keeps
        raise ApiError(400, f"{bad or 'a field name'} {UNSTORABLE}")
    return data


def _required_actor(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ApiError(400, "actor is required: the Slack user id (U…) or email address of the person deploying")
    if not isinstance(value, str) or len(value) > 254:
        raise ApiError(400, "actor must be a Slack user id (U… or W…) or an email address")
    value = value.strip()
    if not (USER_ID.fullmatch(value) or EMAIL.fullmatch(value) or value.startswith("pipeline:")):
        raise ApiError(400, "actor must be a Slack user id (U… or W…) or an email address")
    return value


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


def provenance(body: Mapping[str, Any], status: str) -> dict[str, Any]:
    """tag (null, said: not built from a tag), commit_time, and a rollback's two times, from a report."""
    times = {key: parse_instant(body[key], key) for key in ("rollback_decided_at", "restored_at")
             if body.get(key) is not None}
    if times and status != "rolled_back":
        raise ApiError(400, f"{', '.join(times)} belong to a rolled_back report, not {status}")
    if "tag" in body and body["tag"] is not None and not _text(body, "tag", 200):
        raise ApiError(400, "tag must be the tag the artefact was built from, or null when it was not built from one")
    return {"tag": _text(body, "tag", 200), "untagged": "tag" in body and body["tag"] is None,
            "commit_time": parse_instant(body["commit_time"], "commit_time") if body.get("commit_time") is not None
            else None,
            "times": RollbackTimes(times.get("rollback_decided_at"), times.get("restored_at")) if times else None}


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
