"""Incidents from the incident tool (POST /api/v1/incidents), linked to the release that caused them.

Upserted by the tool's id: a re-post with new fields (a resolution, a different caused_by) changes the row
and audits what changed; the same post again changes nothing and audits nothing. Change failure rate and
time to restore read these links (commands.metrics); a monthly report already frozen does not change
(commands.metrics_review)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from commands.errors import InputError, NotFound
from commands.outcome import Outcome
from storage import audit
from storage.db import transaction
from storage.models import Incident, Release


@dataclass(frozen=True)
class IncidentReport:
    key: str
    service: str
    opened_at: datetime
    resolved_at: datetime | None
    severity: str | None
    caused_by: int | None  # a release id

    def fields(self) -> dict[str, Any]:
        return {"service": self.service, "opened_at": self.opened_at, "resolved_at": self.resolved_at,
                "severity": self.severity, "caused_by_release_id": self.caused_by}


def _view(inc: Incident) -> dict[str, Any]:
    return {"id": inc.key, "service": inc.service, "opened_at": inc.opened_at, "resolved_at": inc.resolved_at,
            "severity": inc.severity, "caused_by": f"REL-{inc.caused_by_release_id}" if inc.caused_by_release_id else None}


def record_incident(db: Engine, who: str, report: IncidentReport, now: datetime) -> Outcome:
    """Insert or update the incident; Outcome.changed says whether anything was written."""
    if report.resolved_at is not None and report.resolved_at < report.opened_at:
        raise InputError("resolved_at is before opened_at")
    for attempt in range(2):  # two processes posting the same new incident at once: the loser updates
        try:
            with transaction(db) as session:
                return _upsert(session, who, report, now)
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def _upsert(session, who: str, report: IncidentReport, now: datetime) -> Outcome:
    release = None
    if report.caused_by is not None:
        release = session.get(Release, report.caused_by)
        if release is None:
            raise NotFound(f"REL-{report.caused_by} does not exist")
        if release.service != report.service:
            raise InputError(f"REL-{release.id} is a release of {release.service}, not {report.service}; "
                             "caused_by names a release of the incident's service")
    inc = session.exec(select(Incident).where(Incident.key == report.key).with_for_update()).first()
    if inc is None:
        inc = Incident(key=report.key, reported_by=who, recorded_at=now, updated_at=now, **report.fields())
        session.add(inc)
        session.flush()
        audit.record(session, actor=who, action="incident_recorded", release_id=report.caused_by, at=now,
                     after=_view(inc))
        return Outcome(f"incident {report.key} recorded", changed=True, data={"incident": _view(inc), "created": True})
    before = _view(inc)
    changes = {k: v for k, v in report.fields().items() if getattr(inc, k) != v}
    if not changes:
        return Outcome(f"incident {report.key} unchanged", data={"incident": before, "created": False})
    old_release = inc.caused_by_release_id
    for k, v in changes.items():
        setattr(inc, k, v)
    inc.updated_at = now
    after = _view(inc)
    action = "incident_relinked" if "caused_by_release_id" in changes else "incident_updated"
    # audited on the release it now names, and on the one it no longer names, so both records show it
    audit.record(session, actor=who, action=action, release_id=inc.caused_by_release_id or old_release, at=now,
                 before=before, after=after)
    if action == "incident_relinked" and old_release and inc.caused_by_release_id:
        audit.record(session, actor=who, action=action, release_id=old_release, at=now, before=before, after=after)
    return Outcome(f"incident {report.key} updated", changed=True, data={"incident": after, "created": False})
