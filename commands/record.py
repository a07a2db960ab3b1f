"""Reading the release record: everything about one release, for the person asking and the auditor,
and the lists people browse. Nothing here writes; every read is a read-only transaction."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import or_
from sqlalchemy.engine import Engine
from sqlmodel import select

from commands import bridge, decision_log
from commands.approval import ApprovalStatus
from commands.clock import Clock
from commands.outcome import Actor
from commands.release import approval_of, load
from commands.states import LIVE_STATES, PENDING
from storage import audit
from storage.db import read
from storage.models import (AuditEvent, Deployment, Emergency, Incident, NonConformance, Release, ReleaseFlag,
                            SignOff, Task, TestResult, UnmatchedDeployment, Vote, Waiver)


@dataclass(frozen=True)
class ReleaseRecord:
    """Everything an auditor asks about one release: who authorised it and why,
    what changed, how it was deployed and validated, and what happened after."""

    release: Release
    status: ApprovalStatus  # of the current round
    votes: list[Vote]  # every round, oldest first
    trail: list[AuditEvent]
    deployment: Deployment | None = None
    signoffs: list[SignOff] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    nonconformances: list[NonConformance] = field(default_factory=list)
    flags: list[ReleaseFlag] = field(default_factory=list)  # every planning flag ever raised, cleared or not
    emergency: Emergency | None = None  # an emergency's bridge record (QMS 4.6)
    decision_log: list = field(default_factory=list)  # commands.decision_log.LogLine, oldest first
    test_results: list[TestResult] = field(default_factory=list)  # every report, oldest first (the latest per phase counts)
    waivers: list[Waiver] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)  # incidents this release caused
    unmatched: list[UnmatchedDeployment] = field(default_factory=list)  # deployments of it reported unapproved


def show_release(db: Engine, release_id: int) -> ReleaseRecord:
    with read(db) as session:
        release = load(session, release_id)
        rid = release.id

        def rows(model):
            return list(session.exec(select(model).where(model.release_id == rid).order_by(model.id)))
        deployments = rows(Deployment)
        trail = audit.trail(session, rid)
        emergency = bridge.of(session, rid)
        log = decision_log.merged(trail, decision_log.entries(session, rid)) if emergency else []
        incidents = list(session.exec(select(Incident).where(Incident.caused_by_release_id == rid)
                                      .order_by(Incident.opened_at, Incident.id)))
        return ReleaseRecord(release, approval_of(session, release), rows(Vote), trail,
                             deployments[0] if deployments else None, rows(SignOff), rows(Task),
                             rows(NonConformance), rows(ReleaseFlag), emergency, log,
                             test_results=rows(TestResult), waivers=rows(Waiver), incidents=incidents,
                             unmatched=rows(UnmatchedDeployment))


def list_releases(db: Engine, actor: Actor, which: str | None, clock: Clock, limit: int = 20,
                  offset: int = 0) -> list[Release]:
    now = clock.now()
    query = select(Release)
    if which == "pending":
        query = query.where(Release.state == PENDING).order_by(Release.start_at)
    elif which == "upcoming":
        query = query.where(Release.state.in_(LIVE_STATES), Release.end_at >= now).order_by(Release.start_at)
    elif which == "mine":
        voted = select(Vote.release_id).where(Vote.voter_id == actor.user_id)
        query = query.where(or_(Release.requester_id == actor.user_id, Release.id.in_(voted))) \
                     .order_by(Release.id.desc())
    else:
        query = query.order_by(Release.id.desc())
    with read(db) as session:
        return list(session.exec(query.offset(offset).limit(limit)))
