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


COMMIT = "3f2a9c1"
PRODUCT_OWNER = "U0PO"


def artifact_of(db, release_id: int) -> str:
    r = release(db, release_id)
    return f"{r.service}:{r.version}"


def ready_to_deploy(db, clock: Clock, release_id: int, policy: Policy | None = None, *,
                    artifact: str | None = None, skip: tuple[str, ...] = ()) -> dict:
    """The release package the gate asks for (QMS 4.3, 4.4), recorded through the real use cases: a pass of
    every required test phase for the artefact (the pipeline's; UAT the product owner's) and every required
    document (the requester's). Returns the artefact and commit to start with (start_deployment's keywords).
    `skip`: items ("phase:uat", "document:runbook") left out, for a test of what the gate says."""
    from commands.package import set_documents
    from commands.validation import Recorder, record_result, required_documents, required_phases
    policy = policy or Policy.default()
    artifact = artifact or artifact_of(db, release_id)
    r = release(db, release_id)
    for phase in required_phases(policy, r):
        if f"phase:{phase}" in skip:
            continue
        who = (Recorder(Actor(PRODUCT_OWNER, frozenset({"product_owner"}))) if phase == "uat"
               else Recorder(Actor("pipeline:ci"), pipeline="ci"))
        out = record_result(db, who, release_id, phase, "passed", f"https://ci.test/{phase}", None, artifact,
                            clock, policy)
        assert out.changed, out.message
    docs = {key: (f"https://wiki.test/{key}" if key != "rollback" else "redeploy the previous artefact")
            for key, col in (("notes", "release_notes"), ("runbook", "runbook"), ("rollback", "rollback_plan"))
            if col in required_documents(policy, r) and f"document:{col}" not in skip and not getattr(r, col)}
    if docs:
        from commands.package import valid
        out = set_documents(db, dev(r.requester_id), release_id, valid(docs), clock)
        assert out.changed, out.message
    return {"artifact": artifact, "commit": COMMIT}


def start(db, clock: Clock, policy: Policy, release_id: int, who, checklist=None, **kw) -> Outcome:
    """A deployment started as the controlled path has it: the package recorded (ready_to_deploy) and the
    artefact and commit named. `who` is commands.deploy.Deployer; a pipeline's carries its name."""
    from commands.deploy import ALL_TICKED, start_deployment
    prov = ready_to_deploy(db, clock, release_id, policy)
    return start_deployment(db, who, release_id, ALL_TICKED if checklist is None else checklist, clock, policy,
                            **{**prov, **kw})
