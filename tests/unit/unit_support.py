"""Helpers for the unit tests that drive commands/ against the real `db` fixture."""
from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from commands.classification import Answers
from commands.clock import Clock
from commands.outcome import Actor, Outcome
from commands.policy import Policy
from commands.release import request_release
from storage.models import AuditEvent, Outbox, Release, Vote

RAW = {"service": "payments", "version": "2.3.1", "type": "minor", "start": "2026-12-01 14:00",
       "tz": "Europe/London", "duration": "60m", "summary": "Add refunds"}
REQUESTER = "U0DEV"  # holds no role
# A request must answer the classification questions; by default a test answers them as its type derives.
ANSWERS_FOR = {"patch": Answers(), "minor": Answers(feature=True), "major": Answers(breaking=True),
               "security": Answers(cve=True), "emergency": Answers(incident=True),
               "infrastructure": Answers(infrastructure=True)}


def dev(user_id: str = REQUESTER) -> Actor:
    return Actor(user_id, frozenset())


def request(db, clock: Clock, policy: Policy, *, requester: Actor | None = None, answers: Answers | None = None,
            request_key: str | None = None, **fields: Any) -> Outcome:
    raw = {**RAW, **fields}
    if answers is None:
        answers = ANSWERS_FOR.get(str(raw.get("type")).strip().lower(), Answers())
    if answers.incident:
        raw.setdefault("incident", "INC-1")  # an incident answer names its incident (QMS 4.6)
    return request_release(db, requester or dev(), raw, answers, clock, policy, request_key=request_key)


def new_release(db, clock, policy, **kw) -> int:
    out = request(db, clock, policy, **kw)
    assert out.changed and out.release is not None
    return out.release.id


def assessed(db, clock: Clock, release_id: int, who: str = "U0OPS") -> Outcome:
    """An emergency's whole assessment (QMS 4.6), which its co-approval waits for."""
    from commands.emergency import assess
    return assess(db, who, release_id, {"blast_radius": "payments only", "rollback": "redeploy 2.3.0",
                                        "scope": "confirmed", "ci": "passed"}, clock)


def release(db, release_id: int) -> Release:
    with Session(db, expire_on_commit=False) as s:
        return s.exec(select(Release).where(Release.id == release_id)).one()


def votes(db, release_id: int | None = None) -> list[Vote]:
    with Session(db, expire_on_commit=False) as s:
        q = select(Vote).order_by(Vote.id)
        if release_id is not None:
            q = q.where(Vote.release_id == release_id)
        return list(s.exec(q))


def events(db, release_id: int | None = None, action: str | None = None) -> list[AuditEvent]:
    with Session(db, expire_on_commit=False) as s:
        q = select(AuditEvent).order_by(AuditEvent.id)
        if release_id is not None:
            q = q.where(AuditEvent.release_id == release_id)
        if action is not None:
            q = q.where(AuditEvent.action == action)
        return list(s.exec(q))


def actions(db, release_id: int | None = None) -> list[str]:
    return [e.action for e in events(db, release_id)]


def outbox(db) -> list[Outbox]:
    with Session(db, expire_on_commit=False) as s:
        return list(s.exec(select(Outbox).order_by(Outbox.id)))


def outbox_keys(db) -> list[str]:
    return [r.key for r in outbox(db)]


def counts(db) -> tuple[int, int, int, int]:
    """(releases, votes, audit events, outbox rows): to show that nothing was written."""
    with Session(db) as s:
        return tuple(len(list(s.exec(select(m)))) for m in (Release, Vote, AuditEvent, Outbox))  # type: ignore
