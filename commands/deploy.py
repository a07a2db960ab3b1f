"""The deployment gate, the deployment itself, and its outcome (rollback: commands/rollback.py).

QMS §3.4: the person who executes a deployment is never one of its go/no-go
approvers; that is the one structural rule no team size relaxes. It is a
DevOps / Platform Engineer: only the policy's deploying roles deploy. §4.4
step 4: monitoring, rollback readiness and on-call are confirmed before it
starts. A pipeline is held to the same rules as a click, within what its
token allows.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from calendars.business import add_business_days
from commands import announce, deferred, frequency, planning, provenance
from commands.approval import GO, NOGO
from commands.clock import Clock
from commands.decision import Decision, decide
from commands.errors import InputError, Refused
from commands.outcome import Actor, Outcome, Reason
from commands.classification import controls
from commands.policy import Policy
from commands.provenance import NOT_YET_ASKED, Provenance
from commands.release import APPROVED, current_votes, load, snapshot
from commands.states import DEPLOYING, FAILED, IN_FLIGHT, ROLLED_BACK, ROLLING_BACK, STABILISING
from commands.text import check_text, when
from storage.db import read
from storage.models import Deployment, Release, Task

OUTCOMES = ("success", "rolled_back", "failed")
# who may record how a deployment ended, besides the deployer: on-call and release management
_FINISHERS = {"release_manager", "operations"}

CHECKLIST: tuple[tuple[str, str], ...] = (
    ("monitoring", "monitoring and alerting are active"),
    ("rollback", "the rollback plan is ready and tested"),
    ("oncall", "on-call is confirmed"),
)


@dataclass(frozen=True)
class Deployer(Actor):
    """Who is deploying: a Slack user (clicking, or named by a pipeline), or a pipeline acting as itself.

    The roles Slack could not resolve come along (Actor.unresolved), so a role
    check can tell "does not hold it" from "could not check"."""

    pipeline: str | None = None
    # what the pipeline's token allows (bot/config.ApiToken): its environments (None: every one), and
    # whether it may name the person it runs for or acts only as itself
    environments: frozenset[str] | None = None
    act_for_people: bool = True

    @classmethod
    def of(cls, actor: Actor, pipeline: str | None = None, environments: frozenset[str] | None = None,
           act_for_people: bool = True) -> "Deployer":
        return cls(actor.user_id, actor.roles, actor.unresolved, pipeline, environments, act_for_people)

    @classmethod
    def itself(cls, pipeline: str, environments: frozenset[str] | None = None) -> "Deployer":
        """A pipeline deploying under its own identity, pipeline:<name>, for no named person."""
        return cls(pipeline_identity(pipeline), pipeline=pipeline, environments=environments, act_for_people=False)

    @property
    def as_itself(self) -> bool:
        return self.pipeline is not None and self.user_id == pipeline_identity(self.pipeline)

    @property
    def identities(self) -> tuple[str, ...]:
        """Everyone this deployment is by: the person, and the pipeline that carries it."""
        if self.pipeline is None or self.as_itself:
            return (self.user_id,)
        return self.user_id, pipeline_identity(self.pipeline)

    @property
    def audit_name(self) -> str:
        if self.pipeline is None or self.as_itself:
            return self.user_id
        return f"{self.user_id} via pipeline:{self.pipeline}"


def pipeline_identity(name: str) -> str:
    return f"pipeline:{name}"


def pipeline_scope(release: Release, who: Deployer) -> str | None:
    """What the pipeline's token does not allow for this release, if anything."""
    if who.pipeline is None:
        return None
    if not who.as_itself and not who.act_for_people:
        return (f"pipeline:{who.pipeline} acts only as itself: its token may not name a person "
                f"({who.user_id}); leave out actor, or give the pipeline act_for=people")
    if who.environments is not None and release.environment not in who.environments:
        return (f"pipeline:{who.pipeline} may deploy only to {', '.join(sorted(who.environments))}; "
                f"{release.ref} is for {release.environment}")
    return None


def deployer_role(who: Deployer, policy: Policy) -> str | None:
    """Why this deployer may not execute a deployment, if it may not (QMS 3.4).

    A pipeline acting as itself is authorised by its token's allow-list. Raises
    CouldNotCheck when Slack could not say whether a person holds a deploying role."""
    if who.as_itself:
        return None
    roles = policy.deployment.deployers
    try:
        who.require(roles, f"{who.user_id} holds no deploying role ({' or '.join(roles)}); QMS 3.4: a DevOps / "
                           "Platform Engineer executes the deployment", "not_a_deployer")
    except Refused as exc:
        return exc.message
    return None


NOT_APPROVED, OUTSIDE_WINDOW = "not_approved", "outside_window"  # Reason codes: votes or time may fix these


def gate_reasons(release: Release, session: Session, who: Deployer, now: datetime,
                 checklist: Mapping[str, bool], policy: Policy, prov: Provenance | None = None) -> list[str]:
    """Every reason the deployment may not start now; empty means it may. `prov`: the artefact, commit and
    justification the start names (None: it names none, which a controlled environment refuses)."""
    reasons = []
    votes = current_votes(session, release)
    if release.state != APPROVED:
        reasons.append(Reason(f"{release.ref} is {release.state}, not approved", NOT_APPROVED))
    for v in votes:
        if v.decision == NOGO:
            reasons.append(f"a No-go from {v.voter_id} ({v.role}) stands: {v.note}")
    if not release.start_at <= now < release.end_at:
        end_show = "t" if release.end_at.date() == release.start_at.date() else "dt"
        reasons.append(Reason(f"now ({when(now)}) is outside the planned window "
                              f"{when(release.start_at)}–{when(release.end_at, show=end_show)}; reschedule it "
                              f"with /release reschedule {release.ref} start=… (rescheduling resets the votes)",
                              OUTSIDE_WINDOW))
    for identity in who.identities:  # the person and the pipeline carrying it
        mine = next((v for v in votes if v.voter_id == identity and v.decision in (GO, NOGO)), None)
        if mine:
            reasons.append(f"{identity} voted {'Go' if mine.decision == GO else 'No-go'} as {mine.role}; a go/no-go "
                           "approver never executes the deployment (QMS 3.4)")
    scope = pipeline_scope(release, who)
    if scope:
        reasons.append(scope)
    role = deployer_role(who, policy)
    if role:
        reasons.append(role)
    for hit in planning.blackouts_not_overridden(session, release):
        reasons.append(f"{release.ref} falls in blackout '{hit.name}' ({when(hit.start)}–"
                       f"{when(hit.end)}); deploying in it needs an executive override of its "
                       "blackout flag (QMS 5.1)")
    # QMS 4.3/4.4: the test phases and documents, the artefact and commit, the controlled path
    reasons.extend(provenance.reasons(session, release, who, prov, policy))
    for key, text in CHECKLIST:
        if not checklist.get(key):
            reasons.append(f"not confirmed: {text}")
    return reasons


def check_gate(db: Engine, release_id: int, who: Deployer, clock: Clock, checklist: Mapping[str, bool],
               policy: Policy, prov: Provenance | None = None) -> list[str]:
    with read(db) as session:
        return gate_reasons(load(session, release_id), session, who, clock.now(), checklist, policy, prov)


# ---- the steps of each decision, so a pipeline's report can chain them in one transaction ----

def start_replay(d: Decision, who: Deployer) -> Outcome | None:
    if pipeline_scope(d.release, who):
        return None  # outside the token's allow-list: refused, not answered as a repeat
    existing = deployment_of(d.session, d.release)
    if existing and existing.deployer_id == who.user_id and d.release.state in IN_FLIGHT:
        return Outcome(f"{d.release.ref} is already being deployed by you since "
                       f"{when(existing.started_at, show='t')}.", d.release, data={"reasons": []})
    return None


def start_check(d: Decision, who: Deployer, checklist: Mapping[str, bool], policy: Policy,
                refusal: dict, prov: Provenance | None = None) -> None:
    reasons = gate_reasons(d.release, d.session, who, d.now, checklist, policy, prov)
    if reasons:
        refusal["reasons"] = reasons  # audited with the refusal and handed back to the caller
        missing = policy.deployment.deployers if deployer_role(who, policy) else ()
        raise Refused(f"{d.release.ref} cannot be deployed now:\n" + "\n".join(f"• {r}" for r in reasons), "gate",
                      missing)


# Every box ticked: what the gate says then is what no checklist can fix.
ALL_TICKED: Mapping[str, bool] = {key: True for key, _ in CHECKLIST}


def start_change(d: Decision, who: Deployer, checklist: Mapping[str, bool], artifact: str | None,
                 commit: str | None, pipeline_url: str | None, policy: Policy,
                 justification: str | None = None, tag: str | None = None,
                 commit_time: datetime | None = None) -> Outcome:
    release = d.release
    release.state = DEPLOYING
    dep = Deployment(release_id=release.id, deployer_id=who.user_id, pipeline=who.pipeline,
                     checklist={k: bool(checklist.get(k)) for k, _ in CHECKLIST}, artifact=artifact,
                     commit=commit, pipeline_url=pipeline_url, started_at=d.now, tag=tag, commit_time=commit_time,
                     policy_hash=policy.digest)  # the rules in force when it started (the evidence packet)
    d.session.add(dep)
    d.session.flush()
    nc = provenance.started(d.session, release, dep, who, Provenance(artifact, commit, justification),
                            who.audit_name, policy)
    if release.effective_type == "emergency":
        frequency.emergency_deployed(d.session, release, who.audit_name, d.now, policy)
    ev = d.record("deployment_started", after={**snapshot(release), "deployer": who.user_id,
                                               "checklist": dep.checklist, "artifact": artifact,
                                               "commit": commit, "pipeline_url": pipeline_url,
                                               "manual": dep.manual, "justification": dep.justification,
                                               "package_complete": dep.package_complete,
                                               "policy_hash": dep.policy_hash,
                                               # what a pipeline says of the build's provenance, when it says it
                                               **({"tag": tag} if tag else {}),
                                               **({"commit_time": commit_time} if commit_time else {})})
    announce.approval_update(d.session, release, d.now, ev)
    announce.note(d.session, release, "deployment_started", d.now, deployer=who.user_id)
    announce.stuck_deployment(d.session, release, policy.deployment.stuck_grace, d.now)
    msg = (f"{release.ref} deployment started; you are recorded as the deployer. Record how it ends with "
           f"/release done {release.ref} outcome=success|rolled_back|failed.")
    if nc is not None:
        msg += (f" It was started by hand, not through the pipeline: recorded as manual, and as non-conformance "
                f"{nc.ref} (QMS 6.2).")
    return Outcome(msg, release, changed=True, data={"reasons": [], **({"nonconformance": nc.id} if nc else {})})


def _deployer_or(who: Deployer, dep: Deployment, refusal: str) -> None:
    """The deployer themself, or someone holding a finishing role (Actor.require: "could not check" is no refusal)."""
    if who.user_id != dep.deployer_id:
        who.require(sorted(_FINISHERS), refusal, "not_deployer")


def _in_scope(release: Release, who: Deployer) -> None:
    scope = pipeline_scope(release, who)
    if scope:
        raise Refused(scope, "pipeline_scope")


def finish_replay(d: Decision, who: Deployer, outcome: str) -> Outcome | None:
    if pipeline_scope(d.release, who):
        return None
    dep = deployment_of(d.session, d.release)
    if dep and dep.outcome == outcome and dep.finished_at and d.release.state not in IN_FLIGHT:
        return Outcome(f"{d.release.ref} already finished: {outcome}.", d.release)
    return None


def finish_check(d: Decision, who: Deployer, outcome: str) -> Deployment:
    release = d.release
    dep = deployment_of(d.session, release)
    if dep is None or release.state not in IN_FLIGHT:
        raise Refused(f"{release.ref} has no deployment in progress (it is {release.state}).", "not_deploying")
    if release.state == ROLLING_BACK and outcome != "rolled_back":
        raise Refused(f"{release.ref} is rolling back; record outcome=rolled_back when service is restored.",
                      "rolling_back")
    _in_scope(release, who)
    _deployer_or(who, dep, f"Only the deployer, operations or a release manager can record how {release.ref} "
                           "ended.")
    return dep


def finish_change(d: Decision, who: Deployer, dep: Deployment, outcome: str, policy: Policy,
                  note: str | None, link: str | None, times=None) -> Outcome:
    """`times`: a commands.rollback.RollbackTimes, what the report of a rollback said about its two times."""
    from commands import rollback  # it builds on this module's checks; imported here to keep one direction
    release, now = d.release, d.now
    before = snapshot(release)
    dep.finished_at, dep.outcome, dep.note, dep.link = now, outcome, note, link
    if outcome == "rolled_back":
        rollback.restore(d, who, dep, times)  # InputError (nothing written) when the times cannot be true
        release.state = ROLLED_BACK
    elif outcome == "failed":
        release.state = FAILED
    else:
        dep.stabilisation_ends_at = now + stabilisation(policy, release)
        release.state = STABILISING
        announce.reminder(d.session, release, "signoff_request", dep.stabilisation_ends_at, now)
    ev = d.record(f"deployment_{outcome}", before=before,
                  after={**snapshot(release), "note": note, "link": link,
                         "rollback_decided_at": dep.rollback_decided_at, "restored_at": dep.restored_at,
                         "stabilisation_ends_at": dep.stabilisation_ends_at})
    announce.approval_update(d.session, release, now, ev)
    announce.note(d.session, release, f"deployment_{outcome}", now)
    if outcome == "rolled_back":
        rollback.check_slo(d, who, dep, policy)
    if release.effective_type == "emergency":
        deferred.owe(d.session, release, now, policy)
    _owe_aftercare(d.session, release, dep, outcome, now, policy)
    msg = f"{release.ref} recorded as {outcome.replace('_', ' ')}."
    if outcome == "success":
        msg += (f" Stabilisation runs until {when(dep.stabilisation_ends_at)}; then the sign-offs "
                "are asked for in the thread.")
    return Outcome(msg, release, changed=True)


def stabilisation(policy: Policy, release: Release) -> timedelta:
    """QMS 4.6: an emergency's validation needs only [emergency] min_monitoring (commands.aftercare.validate),
    but the standard stabilisation it defers is extended monitoring, [emergency] extended_monitoring (24h):
    that is its stabilisation window, so rollback stays open and the post-deployment sign-offs come after it."""
    window = controls(policy, release).stabilisation
    if release.effective_type == "emergency":
        window = max(window, policy.emergency.extended_monitoring)
    return window


def valid_outcome(outcome: str) -> str:
    if outcome not in OUTCOMES:
        raise InputError(f"'{outcome}' is not an outcome; use success, rolled_back or failed", field="outcome",
                         form="/release done REL-12 outcome=success|rolled_back|failed [note=…] [link=…]")
    return outcome


# ---- the use cases ----

_DEPLOY_FORM = "/release deploy REL-12   (the form asks for the artefact, the commit and, by hand, why)"


def start_deployment(db: Engine, who: Deployer, release_id: int, checklist: Mapping[str, bool], clock: Clock,
                     policy: Policy, *, artifact: str | None = None, commit: str | None = None,
                     pipeline_url: str | None = None, justification: str | None = None) -> Outcome:
    artifact, commit, justification = (((v or "").strip() or None) for v in (artifact, commit, justification))
    check_text({"artifact": artifact, "commit": commit, "justification": justification}, form=_DEPLOY_FORM)
    for key, value, limit in (("artifact", artifact, 1000), ("commit", commit, 80)):
        if value and len(value) > limit:
            raise InputError(f"the {key} is longer than {limit} characters", field=key, form=_DEPLOY_FORM)
    if justification and len(justification) > provenance.JUSTIFICATION_LIMIT:
        raise InputError(f"the justification is too long ({len(justification)} characters; at most "
                         f"{provenance.JUSTIFICATION_LIMIT})", field="justification")
    prov = Provenance(artifact, commit, justification)
    refusal: dict = {"checklist": dict(checklist), "artifact": artifact, "commit": commit}
    out = decide(db, release_id, who.audit_name, "deploy", clock.now(),
                 replay=lambda d: start_replay(d, who),
                 check=lambda d: start_check(d, who, checklist, policy, refusal, prov),
                 change=lambda d: start_change(d, who, checklist, artifact, commit, pipeline_url, policy,
                                               justification),
                 refusal_detail=refusal)
    if out.refused:
        return Outcome(out.message, out.release, refused=True, data={"reasons": refusal.get("reasons", [])})
    return out


def precheck_deployment(db: Engine, who: Deployer, release_id: int, clock: Clock, policy: Policy) -> Outcome | None:
    """Before the checklist opens: the gate's refusal, when it fails for reasons ticking boxes cannot fix
    (not approved, outside the window, in a blackout, not a deployer, an approver deploying).

    The same gate (gate_reasons, every box ticked), refused and audited as the gate refuses
    ("deploy_refused", code "gate", marked as the precheck). None: the checklist may open. A
    deployment already running by this person is answered as the gate's replay is."""
    refusal: dict = {"checklist": dict(ALL_TICKED), "precheck": True}
    out = decide(db, release_id, who.audit_name, "deploy", clock.now(),
                 replay=lambda d: start_replay(d, who),
                 check=lambda d: start_check(d, who, ALL_TICKED, policy, refusal, NOT_YET_ASKED),
                 change=lambda d: Outcome("", d.release),  # nothing to change: the checklist decides
                 refusal_detail=refusal)
    if out.refused or out.message:
        return out
    return None


def deployment_of(session: Session, release: Release) -> Deployment | None:
    return session.exec(select(Deployment).where(Deployment.release_id == release.id)).first()


def finish_deployment(db: Engine, who: Deployer, release_id: int, outcome: str, clock: Clock, policy: Policy,
                      note: str | None = None, link: str | None = None, times=None) -> Outcome:
    valid_outcome(outcome)
    return decide(db, release_id, who.audit_name, "finish", clock.now(),
                  replay=lambda d: finish_replay(d, who, outcome),
                  check=lambda d: finish_check(d, who, outcome),
                  change=lambda d: finish_change(d, who, d.context, outcome, policy, note, link, times),
                  refusal_detail={"outcome": outcome})


def _owe_aftercare(session: Session, release: Release, dep: Deployment, outcome: str, now: datetime,
                   policy: Policy) -> None:
    """The follow-up every deployment owes, and the retrospective some owe, each with its reminders."""
    p = policy.deployment
    owed = {t.kind for t in session.exec(select(Task).where(Task.release_id == release.id))}
    # A success rolled back during stabilisation finishes twice; what it owed the first time stands.
    if "followup" not in owed:
        followup_due = now + p.followup_after
        session.add(Task(release_id=release.id, kind="followup", due_at=followup_due, created_at=now))
        announce.reminder(session, release, "followup", followup_due, now)
        announce.reminder(session, release, "followup_escalation", followup_due + p.followup_escalate_after, now)
    retro = controls(policy, release).retrospective or outcome in ("rolled_back", "failed")
    if retro and "retrospective" not in owed:
        due = add_business_days(now, p.retrospective_business_days, release.tz)
        session.add(Task(release_id=release.id, kind="retrospective", due_at=due, created_at=now))
        announce.reminder(session, release, "retrospective_soon", due - p.retrospective_remind_before, now)
        announce.reminder(session, release, "retrospective_due", due, now)


def release_state(db: Engine, release_id: int) -> str:
    with read(db) as session:
        return load(session, release_id).state


def never_approved(db: Engine, release_id: int) -> bool:
    with read(db) as session:
        return load(session, release_id).approval_seq == 0



