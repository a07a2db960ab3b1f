"""The evidence packet: one release's record as the six answers an ISO 20000 auditor asks for
(../shared/seeds/iso20000-release-deployment-guide.txt), each item marked present, missing or exception.

- present: the record holds it.
- missing: the procedure asks for it and the record does not hold it (or holds it only as "not recorded").
- exception: it happened outside the normal path, on the record: an override, a waiver, an accepted (or
  unaccepted) misclassification, a non-conformance.

This is data, not presentation: bot/evidence_render.py turns it into HTML, Markdown and JSON. Texts are
plain and unescaped (renderers escape); times are commands.text.when markers, ISO 8601 in UTC once rendered
(bot.times.iso_all). Nothing here writes."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from commands import evidence_chain, evidence_package
from commands.classification import QUESTIONS
from commands.deferred import LABELS as DEFERRED
from commands.deploy import CHECKLIST
from commands.record import ReleaseRecord, show_release
from commands.text import when

SCHEMA_VERSION = "1.0"
PRESENT, MISSING, EXCEPTION = "present", "missing", "exception"
MARKS = (PRESENT, MISSING, EXCEPTION)
# The day role holders and the policy digest began to be recorded with each vote: a vote before it says so.
RECORDED_SINCE = "2026-12-01"
SECTIONS = (
    ("authorisation", "Who authorised it and why"),
    ("change", "What changed"),
    ("risk", "How risk was assessed"),
    ("validation", "How it was validated"),
    ("deployment", "When and how it was deployed"),
    ("after", "What happened after"),
)


@dataclass(frozen=True)
class Item:
    label: str
    mark: str  # present | missing | exception
    text: str
    exception: str | None = None  # override | waiver | misclassification | nonconformance


@dataclass(frozen=True)
class Section:
    key: str
    number: int
    title: str
    items: list[Item]

    def count(self, mark: str) -> int:
        return sum(1 for i in self.items if i.mark == mark)


@dataclass(frozen=True)
class TrailEvent:
    id: int
    seq: int | None
    at: str
    actor: str
    action: str
    reason: str | None
    prev_hash: str | None
    hash: str | None


@dataclass(frozen=True)
class Packet:
    schema_version: str
    generated_at: str
    release: dict[str, Any]
    sections: list[Section]
    trail: list[TrailEvent]
    chain: evidence_chain.ChainStatus
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def iso(dt: datetime | None) -> str | None:
    """A time in the packet: a commands.text.when marker, which the renderers turn into ISO 8601, in UTC."""
    return when(dt) if dt is not None else None


def packet(db: Engine, release_id: int, now: datetime, policy: Any | None = None) -> Packet:
    """policy: the one in force, which says which test phases and documents the release's type requires."""
    rec = show_release(db, release_id)
    return build(rec, evidence_chain.status(db), now, policy)


def build(rec: ReleaseRecord, chain: evidence_chain.ChainStatus, now: datetime, policy: Any | None = None) -> Packet:
    r = rec.release
    req = evidence_package.Requirements(rec, policy)
    built = {"authorisation": _authorisation(rec), "change": _change(rec, req), "risk": _risk(rec, req),
             "validation": _validation(rec, req), "deployment": _deployment(rec, req), "after": _after(rec)}
    sections = [Section(key, n, title, built[key]) for n, (key, title) in enumerate(SECTIONS, 1)]
    trail = []
    for e in rec.trail:
        seq, prev, own = evidence_chain.link(e)
        trail.append(TrailEvent(e.id, seq, iso(e.at), e.actor, e.action, e.reason, prev, own))
    counts = {m: sum(s.count(m) for s in sections) for m in MARKS}
    release = {"ref": r.ref, "id": r.id, "service": r.service, "version": r.version, "environment": r.environment,
               "type": r.effective_type, "state": r.state, "summary": r.summary, "requester": r.requester_id,
               "window_start": iso(r.start_at), "window_end": iso(r.end_at), "tz": r.tz}
    return Packet(SCHEMA_VERSION, iso(now), release, sections, trail, chain, counts)


def _have(label: str, value: Any, missing: str = "not recorded") -> Item:
    if value in (None, "", [], {}):
        return Item(label, MISSING, missing)
    return Item(label, PRESENT, str(value))


# ---- 1. Who authorised it and why ----

def _authorisation(rec: ReleaseRecord) -> list[Item]:
    r = rec.release
    items = [Item("Requested by", PRESENT, f"{r.requester_id} at {iso(r.created_at)}")]
    needed = ", ".join(f"{role} ×{n}" for role, n in r.required_roles.items())
    if r.approver_sets:
        needed = " or ".join("{" + ", ".join(f"{k} ×{v}" for k, v in s.items()) + "}" for s in r.approver_sets)
    items.append(Item("Approvers required", PRESENT, needed or "none"))
    if not rec.votes:
        items.append(Item("Votes", MISSING, "no vote recorded"))
    for v in rec.votes:
        note = f": {v.note}" if v.note else ""
        items.append(Item(f"Vote of {v.voter_id}", PRESENT,
                          f"round {v.round}: {v.decision} as {v.role} at {iso(v.decided_at)}{note}"))
        if v.role_holders is None:
            items.append(Item(f"Who held {v.role} then", MISSING,
                              f"not recorded (votes before {RECORDED_SINCE} did not record it)"))
        else:
            items.append(Item(f"Who held {v.role} then", PRESENT, _holders(v.role_holders)))
    approved = [e for e in rec.trail if e.action == "approved"]
    if approved:
        items.append(Item("Approval time", PRESENT, "; ".join(f"{iso(e.at)} ({e.reason})" for e in approved)))
    else:
        items.append(Item("Approval time", MISSING, f"never approved (state {r.state})"))
    for f in rec.flags:
        if f.overridden_at:
            items.append(Item(f"Override of the {f.kind} check", EXCEPTION,
                              f"by {f.overridden_by} at {iso(f.overridden_at)}: {f.override_reason or ''}",
                              "override"))
    if r.misclassified:
        if r.misclassification_accepted_by:
            items.append(Item("Misclassification accepted", EXCEPTION,
                              f"requested {r.requested_type}, the answers derive {r.derived_type}; accepted by "
                              f"{r.misclassification_accepted_by}: {r.misclassification_reason or ''}",
                              "misclassification"))
        else:
            items.append(Item("Misclassification", EXCEPTION,
                              f"requested {r.requested_type}, the answers derive {r.derived_type}; not accepted, "
                              "so both types' controls applied", "misclassification"))
    hashes = sorted({h for h in [*(v.policy_hash for v in rec.votes),
                                 rec.deployment.policy_hash if rec.deployment else None] if h})
    if hashes:
        items.append(Item("Policy in force (sha256 of the effective policy)", PRESENT, ", ".join(hashes)))
    else:
        items.append(Item("Policy in force (sha256 of the effective policy)", MISSING,
                          f"not recorded (decisions before {RECORDED_SINCE} did not record it)"))
    return items


def _holders(holders: list) -> str:
    people = [h for h in holders if not str(h).startswith("S")]
    groups = [h for h in holders if str(h).startswith("S")]
    text = ", ".join(people) or "nobody resolved"
    if groups:
        text += f" (and user group {', '.join(groups)}, whose members Slack could not list at the time)"
    return text


# ---- 2. What changed ----

def _change(rec: ReleaseRecord, req: evidence_package.Requirements) -> list[Item]:
    r, dep = rec.release, rec.deployment
    items = [Item("Service and version", PRESENT, f"{r.service} {r.version} to {r.environment}"),
             Item("Scope (summary)", PRESENT, r.summary),
             _have("Artefact", dep.artifact if dep else None,
                   "not recorded" if dep else "not deployed, so no artefact was recorded"),
             _have("Commit", dep.commit if dep else None,
                   "not recorded" if dep else "not deployed, so no commit was recorded")]
    if dep and dep.tag:
        items.append(Item("Tag", PRESENT, dep.tag))
    items.append(_have("Links", r.links))
    items.append(evidence_package.document(Item, iso, req, "Release notes", "release_notes", r.release_notes))
    if rec.emergency is not None:
        items.append(_have("Incident", rec.emergency.incident))
    return items


# ---- 3. How risk was assessed ----

def _risk(rec: ReleaseRecord, req: evidence_package.Requirements) -> list[Item]:
    r = rec.release
    items = []
    if r.classification_answered:
        yes = [q for key, q, _ in QUESTIONS if (r.answers or {}).get(key)]
        items.append(Item("Classification answers", PRESENT,
                          ("yes to: " + "; ".join(yes)) if yes else "no to every question"))
    else:
        items.append(Item("Classification answers", MISSING, "not answered; the type was declared by the requester"))
    items.append(Item("Release type", PRESENT, f"{r.effective_type} (requested {r.requested_type}, derived "
                                               f"{r.derived_type})"))
    items.append(_have("Risk and impact", r.risk))
    if rec.emergency is not None:
        em = rec.emergency
        items.append(_have("Blast radius", em.blast_radius and f"{em.blast_radius} (by {em.blast_radius_by})"))
        items.append(_have("Rollback option", em.rollback_option and f"{em.rollback_option} "
                                                                     f"(by {em.rollback_option_by})"))
    items.append(evidence_package.document(Item, iso, req, "Rollback plan", "rollback_plan", r.rollback_plan))
    if not rec.flags:
        items.append(Item("Planning checks", PRESENT, "lead time, deployment windows, blackouts and conflicts: "
                                                      "all passed"))
    for f in rec.flags:
        if f.overridden_at:
            items.append(Item(f"Planning check: {f.kind}", EXCEPTION, f"{f.detail}; overridden by {f.overridden_by}: "
                                                                      f"{f.override_reason or ''}", "override"))
        elif f.cleared_at:
            items.append(Item(f"Planning check: {f.kind}", PRESENT, f"{f.detail}; cleared at {iso(f.cleared_at)} "
                                                                    "(the window moved and the check passed)"))
        else:
            items.append(Item(f"Planning check: {f.kind}", MISSING, f"{f.detail}; still open"))
    return items


# ---- 4. How it was validated ----

def _validation(rec: ReleaseRecord, req: evidence_package.Requirements) -> list[Item]:
    dep, items = rec.deployment, []
    if dep is None:
        items.append(Item("Pre-deployment checklist", MISSING, "not deployed"))
    else:
        for key, text in CHECKLIST:
            ok = bool((dep.checklist or {}).get(key))
            items.append(Item(f"Checklist: {text}", PRESENT if ok else MISSING,
                              f"confirmed by {dep.deployer_id} at {iso(dep.started_at)}" if ok else "not confirmed"))
    tests = evidence_package.phases(Item, iso, req, rec.test_results)
    items += tests
    if not tests:
        items.append(Item("Test evidence", MISSING, "no test result recorded"))
    if dep is not None and dep.package_complete is not None:
        items.append(Item("Release package at the gate", PRESENT if dep.package_complete else MISSING,
                          "complete" if dep.package_complete else "incomplete (documents or test phases missing)"))
    if rec.emergency is not None:
        em = rec.emergency
        items.append(_have("Scope confirmed minimal", em.scope_confirmed_by and
                           f"by {em.scope_confirmed_by} at {iso(em.scope_confirmed_at)}"))
        items.append(_have("Automated CI checks passed", em.ci_passed_by and f"by {em.ci_passed_by} at "
                                                                             f"{iso(em.ci_passed_at)}"))
        items.append(_have("Validation by on-call", em.validated_by and
                           f"by {em.validated_by} at {iso(em.validated_at)}: {em.validation_note or ''}"))
    for s in rec.signoffs:
        items.append(Item(f"Sign-off: {s.role}", PRESENT, f"{s.user_id} at {iso(s.at)}"))
    if dep is not None and dep.finished_at and not rec.signoffs:
        items.append(Item("Sign-offs", MISSING, "none recorded"))
    return items


# ---- 5. When and how it was deployed ----

def _deployment(rec: ReleaseRecord, req: evidence_package.Requirements) -> list[Item]:
    r, dep = rec.release, rec.deployment
    items = [Item("Planned window", PRESENT, f"{iso(r.start_at)} to {iso(r.end_at)} ({r.duration_minutes} min, "
                                             f"planned in {r.tz})")]
    items.append(evidence_package.document(Item, iso, req, "Runbook", "runbook", r.runbook))
    if dep is None:
        items.append(Item("Deployment", MISSING, f"not deployed (state {r.state})"))
    else:
        items.append(Item("Deployer", PRESENT, dep.deployer_id))
        if dep.pipeline:
            items.append(Item("Pipeline", PRESENT, dep.pipeline + (f" ({dep.pipeline_url})" if dep.pipeline_url else "")))
        elif dep.manual and dep.justification:
            items.append(Item("Pipeline", PRESENT, f"none: started by hand from Slack; why: {dep.justification}"))
        else:
            items.append(Item("Pipeline", PRESENT, "none: started from Slack"))
        items.append(Item("Started", PRESENT, iso(dep.started_at)))
        items.append(_have("Finished", iso(dep.finished_at), "not finished"))
        items.append(_have("Outcome", dep.outcome and dep.outcome + (f": {dep.note}" if dep.note else ""),
                           "not recorded"))
        if dep.rollback_decided_at or dep.outcome == "rolled_back":
            mins = (f"; {int((dep.restored_at - dep.rollback_decided_at).total_seconds() // 60)} min from decision "
                    "to restored" if dep.restored_at and dep.rollback_decided_at else "")
            items.append(_have("Rollback timings", dep.rollback_decided_at and
                               f"decided by {dep.rollback_decided_by} at {iso(dep.rollback_decided_at)}, restored at "
                               f"{iso(dep.restored_at) or 'not recorded'}{mins}"))
        if dep.forced:
            items.append(Item("Gate", EXCEPTION, "started through a path that skipped a gate check (a non-conformance)",
                              "nonconformance"))
    for u in rec.unmatched:
        items.append(Item("Deployment reported without approval", EXCEPTION,
                          f"{u.source} at {iso(u.reported_at)}: {u.status} {u.environment or ''} by "
                          f"{u.actor or 'unknown'}" + (f" via {u.pipeline}" if u.pipeline else ""), "nonconformance"))
    return items


# ---- 6. What happened after ----

def _after(rec: ReleaseRecord) -> list[Item]:
    dep, items = rec.deployment, []
    if dep is not None and dep.stabilisation_ends_at:
        items.append(Item("Stabilisation", PRESENT, f"until {iso(dep.stabilisation_ends_at)}"))
    for t in rec.tasks:
        label = {"followup": "24-hour follow-up", "retrospective": "Retrospective"}.get(t.kind) or \
            f"Deferred step: {DEFERRED.get(t.kind, t.kind)}"
        if t.done_at:
            details = "; ".join(f"{k}: {v}" for k, v in (t.details or {}).items() if v)
            late = t.done_at > t.due_at
            items.append(Item(label, PRESENT, f"by {t.done_by} at {iso(t.done_at)} (due {iso(t.due_at)}"
                                              f"{', late' if late else ''})" + (f": {details}" if details else "")))
        else:
            items.append(Item(label, MISSING, f"not recorded (due {iso(t.due_at)}, owed by "
                                              f"{t.owner_id or rec.release.requester_id})"))
    if dep is not None and dep.finished_at and not rec.tasks:
        items.append(Item("Follow-up and retrospective", MISSING, "none recorded"))
    for i in rec.incidents:
        items.append(Item(f"Incident {i.key}", PRESENT, f"{i.severity or 'severity not given'}, opened "
                                                       f"{iso(i.opened_at)}, resolved {iso(i.resolved_at) or 'not yet'}"))
    if not rec.incidents and dep is not None:
        items.append(Item("Incidents", PRESENT, "none linked to this release"))
    for n in rec.nonconformances:
        action = f"; corrective action: {n.action}" if n.action else ""
        items.append(Item(f"Non-conformance {n.ref} ({n.kind})", EXCEPTION,
                          f"{n.detail} (detected {iso(n.at)}; register state {n.state}"
                          + (f", owner {n.owner_id}" if n.owner_id else "")
                          + (f", corrective action due {iso(n.due_at)}" if n.due_at else "")
                          + (f", closed {iso(n.closed_at)}" if n.closed_at else "") + f"{action})", "nonconformance"))
    if rec.emergency is not None:
        said = [x for x in rec.decision_log if x.kind != "decision"]  # the decisions are in the trail below
        items.append(_have("Bridge decision log", f"{len(rec.decision_log)} lines: {len(said)} entries people added "
                                                  "(below), the rest decisions (in the audit trail)"
                           if rec.decision_log else None))
        for x in said:
            fix = f" (corrects entry {x.corrects_id})" if x.corrects_id else ""
            items.append(Item(f"Bridge log entry {x.entry_id}", PRESENT, f"{iso(x.at)} {x.actor} ({x.kind}){fix}: "
                                                                        f"{x.text}"))
        em = rec.emergency
        items.append(_have("Bridge closed", em.closed_by and f"by {em.closed_by} at {iso(em.closed_at)}: "
                                                             f"{em.close_summary or ''}", "not closed"))
    return items
