"""POST /api/v1/incidents: an incident tool (a PagerDuty-style webhook) reports an incident and the release
that caused it.

    {"id": "INC-42", "service": "payments", "opened_at": "2026-11-23T10:05:00Z",
     "resolved_at": "2026-11-23T11:00:00Z" | null, "severity": "P1" | null, "caused_by": "REL-12" | null}

Same bearer tokens as the pipeline API (bot/api.py authenticates); the token's pipeline is the reporter
("pipeline:<name>" in the audit log). Upsert by id (commands.incidents): 201 when new, 200 when updated or
unchanged. Unknown fields, bad times or a malformed REL are 400; a REL that does not exist is 404.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from commands.deploy import pipeline_identity
from commands.errors import InputError, NotFound
from commands.incidents import IncidentReport, record_incident
from commands.text import SERVICE_NAME, parse_ref

from bot.config import ApiToken
from bot.services import Services

PATH = re.compile(r"^/api/v1/incidents/?$")
FIELDS = ("id", "service", "opened_at", "resolved_at", "severity", "caused_by")
_KEY = re.compile(r"^[A-Za-z0-9_.:#/-]{1,200}\Z", re.ASCII)


def handle(svc: Services, pipeline: ApiToken, method: str, environ) -> Any:
    from bot.api import ApiError, Response, _json_body  # the one shape of an API answer and body
    if method != "POST":
        raise ApiError(405, f"/api/v1/incidents takes POST, not {method}", [("Allow", "POST")])
    body = _json_body(environ)
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise ApiError(400, f"unknown field {', '.join(unknown)}; an incident has {', '.join(FIELDS)}")
    key = body.get("id")
    if not isinstance(key, str) or not _KEY.match(key.strip()):
        raise ApiError(400, 'id is required: the incident tool\'s id, like "INC-42" (letters, digits, . _ : # / -)')
    service = body.get("service")
    if not isinstance(service, str) or not SERVICE_NAME.match(service.strip()):
        raise ApiError(400, 'service is required: a service name, like "payments"')
    opened = _time(body, "opened_at", required=True)
    resolved = _time(body, "resolved_at", required=False)
    severity = body.get("severity")
    if severity is not None and (not isinstance(severity, str) or not 0 < len(severity.strip()) <= 20):
        raise ApiError(400, 'severity is a short label like "P1", or null')
    caused = body.get("caused_by")
    release_id = None
    if caused is not None:
        if not isinstance(caused, str):
            raise ApiError(400, 'caused_by is a release id like "REL-12", or null')
        try:
            release_id = parse_ref(caused)
        except NotFound as exc:
            raise ApiError(404, exc.message) from None
        except InputError:
            raise ApiError(400, f"caused_by '{caused}' is not a release id; a release id looks like REL-12") from None
    report = IncidentReport(key.strip(), service.strip(), opened, resolved,
                            severity.strip() if isinstance(severity, str) else None, release_id)
    try:
        out = record_incident(svc.db, pipeline_identity(pipeline.name), report, svc.clock.now())
    except NotFound as exc:
        raise ApiError(404, exc.message) from None
    except InputError as exc:
        raise ApiError(400, exc.message) from None
    status = 201 if out.data.get("created") else 200
    shown = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in out.data["incident"].items()}
    return Response(status, {"incident": shown, "changed": out.changed, "message": out.message})


def _time(body: dict, key: str, *, required: bool) -> datetime | None:
    from bot.api import ApiError
    value = body.get(key)
    if value is None:
        if required:
            raise ApiError(400, f'{key} is required: an ISO 8601 time with its zone, like "2026-11-23T10:05:00Z"')
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise ApiError(400, f'{key} must be an ISO 8601 time with its zone, like "2026-11-23T10:05:00Z"')
    return at.astimezone(timezone.utc)
