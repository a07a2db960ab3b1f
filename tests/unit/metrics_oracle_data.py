"""The oracle's reads (frozen copy of commands/metrics_data.py before issue 13's performance work).

What the KPIs are computed from, read set-based: three queries whatever the period's size.

1. one row per deployment of the measured environment started in the period (a deployment is one row:
   release_id is unique on deployment, so nothing here can count one twice), with its times as epoch
   seconds (SQLite's julianday, PostgreSQL's extract: parsing 100k timestamps in Python costs more than
   the query) and when its release was last approved before it started;
2. the incidents linked to those deployments' releases;
3. the emergency releases of the same services from the period's start to a little after its end
   (a deployment late in the period may be followed by one just after it).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Float, and_, cast, func, select
from sqlmodel import Session

from commands.states import CANCELLED
from storage.models import AuditEvent, Deployment, Incident, Release

_UNIX_JULIAN = 2440587.5  # julianday of 1970-01-01T00:00Z
# how far after the period an emergency can still follow one of its deployments: the longest stabilisation
_AFTER = timedelta(days=8)


class Row(NamedTuple):
    """One deployment, its times in epoch seconds (None where not recorded). A tuple: 100k of them are made
    per quarter, straight from the database cursor."""

    release_id: int
    service: str
    type: str
    outcome: str
    started: float
    finished: float | None
    rollback_decided: float | None
    restored: float | None
    stabilisation_ends: float | None
    commit_time: float | None
    package_complete: bool | None
    requested: float
    approved: float | None

    @property
    def ref(self) -> str:
        return f"REL-{self.release_id}"


class LinkedIncident(NamedTuple):
    key: str
    release_id: int
    opened: float
    resolved: float | None


@dataclass
class Facts:
    rows: list[Row]
    incidents: dict[int, list[LinkedIncident]]  # by the causing release
    emergencies: dict[str, list[tuple[float, int]]]  # service -> (requested window start, release id), sorted


def epoch(column, dialect: str):
    if dialect == "sqlite":  # to the millisecond: julianday's float carries noise below that
        return func.round((func.julianday(column) - _UNIX_JULIAN) * 86400.0, 3)
    return cast(func.extract("epoch", column), Float)


def _raw(session: Session, query) -> list[tuple]:
    """The rows as the driver gives them: plain floats, strings and booleans need none of SQLAlchemy's
    per-value processing, which costs more than the query on 100k rows."""
    result = session.execute(query)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def load(session: Session, start: datetime, end: datetime, environment: str, service: str | None = None) -> Facts:
    dialect = session.get_bind().dialect.name
    d, r, a, i = (m.__table__ for m in (Deployment, Release, AuditEvent, Incident))
    approved = (select(func.max(a.c.at))
                .where(a.c.release_id == d.c.release_id, a.c.action == "approved", a.c.at <= d.c.started_at)
                .scalar_subquery())
    where = [d.c.started_at >= start, d.c.started_at < end, d.c.outcome.is_not(None), r.c.environment == environment]
    if service:
        where.append(r.c.service == service)
    joined = d.join(r, r.c.id == d.c.release_id)
    query = (select(d.c.release_id, r.c.service, r.c.effective_type, d.c.outcome, epoch(d.c.started_at, dialect),
                    epoch(d.c.finished_at, dialect), epoch(d.c.rollback_decided_at, dialect),
                    epoch(d.c.restored_at, dialect), epoch(d.c.stabilisation_ends_at, dialect),
                    epoch(d.c.commit_time, dialect), d.c.package_complete, epoch(r.c.created_at, dialect),
                    epoch(approved, dialect))
             .select_from(joined).where(*where).order_by(d.c.started_at, d.c.release_id))
    make = Row._make
    rows = [make(x) for x in _raw(session, query)]
    incidents: dict[int, list[LinkedIncident]] = defaultdict(list)
    linked = (select(i.c.key, i.c.caused_by_release_id, epoch(i.c.opened_at, dialect), epoch(i.c.resolved_at, dialect))
              .select_from(i.join(d, d.c.release_id == i.c.caused_by_release_id).join(r, r.c.id == d.c.release_id))
              .where(*where).order_by(i.c.opened_at, i.c.key))
    for key, rid, opened, resolved in _raw(session, linked):
        incidents[rid].append(LinkedIncident(key, rid, opened, resolved))
    emergencies: dict[str, list[tuple[float, int]]] = defaultdict(list)
    em_where = [r.c.effective_type == "emergency", r.c.state != CANCELLED, r.c.environment == environment,
                r.c.start_at >= start, r.c.start_at < end + _AFTER]
    if service:
        em_where.append(r.c.service == service)
    for svc, at, rid in _raw(session, select(r.c.service, epoch(r.c.start_at, dialect), r.c.id)
                             .where(and_(*em_where)).order_by(r.c.start_at)):
        emergencies[svc].append((at, rid))
    return Facts(rows, dict(incidents), dict(emergencies))
