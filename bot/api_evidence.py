"""The Pipeline API's part of the release package (QMS 4.3, 4.4): test evidence and documents.

    POST /api/v1/releases/REL-n/evidence   {"phase", "status", "url", "summary", "artifact"}
    POST /api/v1/releases/REL-n/package    {"notes", "runbook", "rollback"}

A pipeline records as itself (pipeline:<name>), within its token's environments. UAT is a person's
act: a pipeline reporting it gets 403. Both answer what the gate still misses (commands.validation.missing)
for the artefact, so a pipeline can tell whether it may go on to deploy.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from commands.errors import InputError
from commands.outcome import Actor
from commands.package import KEYS, set_documents, valid
from commands.validation import Recorder, record_result

from bot.times import iso

EVIDENCE_FIELDS = ("phase", "status", "url", "summary", "artifact")


def evidence(svc, pipeline, release_id: int, body: dict[str, Any], error: Callable, kick: Callable):
    from bot.api import Response
    unknown = sorted(set(body) - set(EVIDENCE_FIELDS))
    if unknown:
        raise error(400, f"unknown field {', '.join(unknown)}; evidence has {', '.join(EVIDENCE_FIELDS)}")
    values = {k: _string(body, k, error) for k in EVIDENCE_FIELDS}
    who = Recorder(Actor(f"pipeline:{pipeline.name}"), pipeline=pipeline.name, environments=pipeline.environments)
    out = record_result(svc.db, who, release_id, values["phase"], values["status"], values["url"], values["summary"],
                        values["artifact"], svc.clock, svc.policy)
    ref = f"REL-{release_id}"
    if out.refused:
        code = 403 if "product_owner" in out.data.get("needs_roles", ()) else 409
        return Response(code, {"release": ref, "error": out.message})
    kick(svc)
    recorded = {k: (iso(v) if isinstance(v, datetime) else v) for k, v in out.data["result"].items()}
    return Response(201, {"release": ref, "recorded": recorded, "missing": out.data["missing"],
                          "message": out.message})


def package(svc, pipeline, release_id: int, body: dict[str, Any], error: Callable, kick: Callable):
    from bot.api import Response
    unknown = sorted(set(body) - set(KEYS))
    if unknown or not body:
        raise error(400, f"unknown field {', '.join(unknown)}; the package has {', '.join(KEYS)}" if unknown
                    else f"give at least one of {', '.join(KEYS)}")
    try:
        docs = valid({k: _string(body, k, error) for k in body})
    except InputError as exc:
        raise error(400, exc.message) from None
    out = set_documents(svc.db, Actor(f"pipeline:{pipeline.name}"), release_id, docs, svc.clock,
                        pipeline=pipeline.name, environments=pipeline.environments)
    ref = f"REL-{release_id}"
    if out.refused:
        return Response(409, {"release": ref, "error": out.message})
    if out.changed:
        kick(svc)
    return Response(200, {"release": ref, "documents": out.data.get("documents", []), "message": out.message})


def _string(body: dict[str, Any], key: str, error: Callable) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise error(400, f"{key} must be a string")
    return value
