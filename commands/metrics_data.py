"""What the KPIs are computed from, read set-based: three queries whatever the period's size.

1. one row per deployment of the measured environment started in the period, from deployment_fact (one
   row per deployment, so nothing here can count one twice; storage/deployment_facts.py), which holds its
   times as epoch seconds and when its release was last approved before it started;
2. the incidents linked to those deployments' releases;
3. the emergency releases of the same services from the period's start to a little after its end
   (a deployment late in the period may be followed by one just after it).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import String, and_, cast, literal, select
from sqlmodel import Session

from commands.states import CANCELLED
from storage import scan
from storage.deployment_facts import DeploymentFact, epoch
from storage.models import Incident, Release

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
    ref: str  # REL-n, made by the query: --explain names a release once for each figure it is in


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


def _raw(session: Session, query, binary: bool = False) -> list[tuple]:
    """The rows as the driver gives them: plain floats, strings and booleans need none of SQLAlchemy's
    per-value processing, which costs more than the query on 100k rows. binary: on PostgreSQL, in the
    binary format (a float arrives as its 8 bytes, not as text to parse: 4 times less of this process's
    time for 100k rows of them)."""
    result = session.execute(query.execution_options(**{scan.BINARY: True}) if binary else query)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def load(session: Session, start: datetime, end: datetime, environment: str, service: str | None = None) -> Facts:
    dialect = session.get_bind().dialect.name
    f, r, i = DeploymentFact.__table__, Release.__table__, Incident.__table__
    where = [f.c.environment == environment, f.c.started_at >= start, f.c.started_at < end, f.c.outcome.is_not(None)]
    if service:
        where.append(f.c.service == service)
    query = (select(f.c.release_id, f.c.service, f.c.type, f.c.outcome, f.c.started, f.c.finished,
                    f.c.rollback_decided, f.c.restored, f.c.stabilisation_ends, f.c.commit_time,
                    f.c.package_complete, f.c.requested, f.c.approved, literal("REL-") + cast(f.c.release_id, String))
             .where(*where).order_by(f.c.started_at, f.c.release_id))
    make = Row._make
    rows = [make(x) for x in _raw(session, query)]
    incidents: dict[int, list[LinkedIncident]] = defaultdict(list)
    linked = (select(i.c.key, i.c.caused_by_release_id, epoch(i.c.opened_at, dialect), epoch(i.c.resolved_at, dialect))
              .select_from(i.join(f, f.c.release_id == i.c.caused_by_release_id))
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
