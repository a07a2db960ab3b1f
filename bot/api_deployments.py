"""POST /api/v1/deployments: a pipeline reports a deployment that names no approved release.

    {"service", "environment", "status", "artifact", "commit", "actor",
     optional "tag" (null: not built from a tag), "pipeline_url", "release" (REL-n), "commit_time"}

The rules are commands.unmatched's; this module authenticates (bot.api did),
parses and answers. A retry lands once:
- with an `Idempotency-Key` header, that key (per pipeline) is the delivery's identity, for good;
- without one, the body's sha256 (per pipeline) is, within REPLAY_WINDOW: the same body again within
  10 minutes is the same delivery; after 20 minutes it is a new one (in between, it depends on where
  the 10-minute buckets fall). Pipelines that may report the very same deployment twice on purpose
  should send the header.
"""
from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from commands.errors import InputError, NotFound
from commands.pipeline import STATUSES
from commands.rollback import parse_instant
from commands.text import parse_ref
from commands.unmatched import UnmatchedReport, record_unmatched

from bot.config import ApiToken
from bot.services import Services

REPLAY_WINDOW = timedelta(minutes=10)
REQUIRED = ("service", "environment", "status", "artifact", "commit", "actor")
OPTIONAL = ("tag", "pipeline_url", "release", "commit_time")
_LIMITS = {"service": 120, "environment": 60, "artifact": 1000, "commit": 80, "tag": 200, "pipeline_url": 2000}


def report_unmatched(svc: Services, pipeline: ApiToken, environ):
    # bot.api routes here, and its parsing is the one every endpoint uses
    from bot.api import _URL, ApiError, Response, _json_body, _kick, _required_actor, _text
    body = _json_body(environ)
    unknown = sorted(set(body) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ApiError(400, f"unknown field {', '.join(unknown)}; a deployment report has "
                            f"{', '.join(REQUIRED)} and optionally {', '.join(OPTIONAL)}")
    missing = [key for key in REQUIRED if body.get(key) in (None, "")]
    if missing:
        raise ApiError(400, f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required; a deployment "
                            f"report has {', '.join(REQUIRED)}")
    values = {key: _text(body, key, limit) for key, limit in _LIMITS.items()}
    status = body["status"]
    if status not in STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(STATUSES)}, not {json.dumps(status)}")
    if values["environment"] not in svc.policy.environments:
        raise ApiError(400, f"environment '{values['environment']}' is not one of the policy's environments: "
                            f"{', '.join(svc.policy.environments)}")
    if values["pipeline_url"] and not _URL.fullmatch(values["pipeline_url"]):
        raise ApiError(400, "pipeline_url must be an http(s) URL")
    if "tag" in body and body["tag"] is not None and not values["tag"]:
        raise ApiError(400, "tag must be the tag the artefact was built from, or null when it was not built from one")
    release_id = None
    if body.get("release") is not None:
        if not isinstance(body["release"], str):
            raise ApiError(400, "release must be a release id like REL-12")
        try:
            release_id = parse_ref(body["release"])
        except NotFound as exc:  # past 32 bits: names no release
            raise ApiError(404, exc.message) from None
        except InputError:
            raise ApiError(400, f"release '{body['release']}' is not a release id; a release id looks like REL-12"
                           ) from None
    commit_time = parse_instant(body["commit_time"], "commit_time") if body.get("commit_time") is not None else None
    report = UnmatchedReport(
        service=values["service"], environment=values["environment"], status=status,
        reporter=f"pipeline:{pipeline.name}", artifact=values["artifact"], commit=values["commit"],
        actor=_required_actor(body["actor"]), tag=values["tag"], untagged="tag" in body and body["tag"] is None,
        pipeline_url=values["pipeline_url"], release_id=release_id, commit_time=commit_time)
    identity, earlier = delivery_identity(pipeline.name, environ.get("HTTP_IDEMPOTENCY_KEY"), body, svc.clock.now())
    out = record_unmatched(svc.db, report, "api", identity, svc.clock, svc.policy, also=earlier)
    if out.created:
        _kick(svc)
    return Response(201 if out.created else 200,
                    {"unmatched": out.unmatched_id, "nonconformances": list(out.nonconformances),
                     "matching_release": out.matching, "message": out.message})


def delivery_identity(pipeline: str, key: str | None, body: dict[str, Any], now) -> tuple[str, tuple[str, ...]]:
    """The delivery's identity, and the identities an earlier try of it may have been recorded under."""
    if key is not None:
        key = key.strip()
        if not key or len(key) > 200:
            raise InputError("Idempotency-Key must be 1 to 200 characters")
        return f"api:{pipeline}:key:{hashlib.sha256(key.encode()).hexdigest()[:48]}", ()
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:48]
    bucket = int(now.timestamp() // REPLAY_WINDOW.total_seconds())
    return f"api:{pipeline}:body:{digest}:{bucket}", (f"api:{pipeline}:body:{digest}:{bucket - 1}",)
