"""Test evidence and waivers (QMS 4.3; 4.4 step 3): what the deployment gate asks of the release package.

Test results are "a mandatory release package component; releases do not proceed without them".
A pipeline or a person records the result of one phase for one artefact; the latest result of a
phase for that artefact counts, so a failure recorded after a pass stands. UAT is a person's act:
only a product owner records it, never a pipeline. A release manager may waive a required phase or
document in writing ("No phase may be skipped without Release Manager approval and documented
justification"); the waiver is audited and shown as an exception in the record.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from commands import announce
from commands.classification import applied_types
from commands.clock import Clock
from commands.decision import Decision, decide
from commands.errors import InputError, Refused, required_reason
from commands.outcome import Actor, Outcome
from commands.policy import Policy
from commands.states import LIVE_STATES
from commands.text import check_text
from commands.validation_policy import DOCUMENTS, PHASES
from storage.models import Release
from storage.quality_models import TestResult, Waiver

STATUSES = ("passed", "failed")
UAT = "uat"
UAT_ROLE = "product_owner"
TEST_FORM = ("/release test REL-12 phase=security status=passed|failed url=https://… [summary=\"…\"] "
             "[artifact=payments:2.3.1]")
WAIVE_FORM = '/release waive REL-12 item=performance|runbook|phase:…|document:… reason="…"'
_URL = re.compile(r"https?://\S+\Z")
DOC_LABELS = {"release_notes": "release notes", "runbook": "deployment runbook", "rollback_plan": "rollback plan"}


@dataclass(frozen=True)
class Recorder:
    """Who records a result: a person in Slack, or a pipeline (as itself, or for the person it names)."""

    actor: Actor
    pipeline: str | None = None
    environments: frozenset[str] | None = None  # the pipeline token's allow-list (None: every one)

    @property
    def audit_name(self) -> str:
        if self.pipeline is None or self.actor.user_id == f"pipeline:{self.pipeline}":
            return self.actor.user_id
        return f"{self.actor.user_id} via pipeline:{self.pipeline}"


# ---- what the package needs, and what it lacks -------------------------------------------------

def required_phases(policy: Policy, release: Release) -> tuple[str, ...]:
    return policy.validation.phases_for(applied_types(release))


def required_documents(policy: Policy, release: Release) -> tuple[str, ...]:
    return policy.validation.documents_for(applied_types(release))


def document_of(release: Release, doc: str) -> str | None:
    return (getattr(release, doc) or "").strip() or None


def waivers(session: Session, release: Release) -> dict[str, Waiver]:
    rows = session.exec(select(Waiver).where(Waiver.release_id == release.id).order_by(Waiver.id))
    return {w.item: w for w in rows}


def latest_results(session: Session, release: Release, artifact: str | None) -> dict[str, TestResult]:
    """The latest result of each phase that counts for this artefact: those reported for it, and those
    reported for no artefact in particular (a failure of either after a pass stands). artifact=None:
    the latest of each phase whatever it was reported for."""
    q = select(TestResult).where(TestResult.release_id == release.id).order_by(TestResult.id)
    out: dict[str, TestResult] = {}
    for r in session.exec(q):
        if artifact is None or r.artifact in (None, artifact):
            out[r.phase] = r
    return out


def missing(session: Session, release: Release, artifact: str | None, policy: Policy) -> list[str]:
    """Every required item the gate still misses: "phase:<p>" with no passing latest result for the
    artefact and no waiver, and "document:<d>" not given and not waived."""
    waived = waivers(session, release)
    latest = latest_results(session, release, artifact)
    out = [f"phase:{p}" for p in required_phases(policy, release)
           if f"phase:{p}" not in waived and (p not in latest or latest[p].status != "passed")]
    out += [f"document:{d}" for d in required_documents(policy, release)
            if f"document:{d}" not in waived and document_of(release, d) is None]
    return out


def waived_items(session: Session, release: Release, policy: Policy) -> list[str]:
    """The required items that are open only by a waiver (a package that is complete by exception)."""
    required = {f"phase:{p}" for p in required_phases(policy, release)} | {
        f"document:{d}" for d in required_documents(policy, release)}
    return [item for item in waivers(session, release) if item in required]


def describe(session: Session, release: Release, item: str, artifact: str | None) -> str:
    """One gate reason for one missing item, saying what would open it."""
    kind, _, name = item.partition(":")
    if kind == "document":
        return (f"the {DOC_LABELS.get(name, name)} is missing (QMS 4.4): add it with /release edit {release.ref} "
                f"{_DOC_KEY[name]}=…, or a release manager waives it")
    latest = latest_results(session, release, artifact).get(name)
    what = f" for artefact {artifact}" if artifact else ""
    if latest is not None and latest.status == "failed":
        state = f"its latest result{what} failed"
    else:
        state = f"it has no passing result{what}"
    return f"test phase {name} is required (QMS 4.3) and {state}; record a pass, or a release manager waives it"


_DOC_KEY = {"release_notes": "notes", "runbook": "runbook", "rollback_plan": "rollback"}


# ---- recording a result ------------------------------------------------------------------------

def valid_phase(phase: str | None) -> str:
    phase = (phase or "").strip().lower()
    if phase not in PHASES:
        raise InputError(f"'{phase}' is not a test phase; phases are {', '.join(PHASES)} (QMS 4.3)"
                         if phase else f"phase is required; phases are {', '.join(PHASES)}",
                         field="phase", form=TEST_FORM)
    return phase


def _valid_result(phase, status, url, summary, artifact) -> tuple[str, str, str, str | None, str | None]:
    phase = valid_phase(phase)
    status = (status or "").strip().lower()
    if status not in STATUSES:
        raise InputError(f"status must be passed or failed, not '{status}'", field="status", form=TEST_FORM)
    url = (url or "").strip()
    if not _URL.match(url) or len(url) > 2000:
        raise InputError("url is required: an http(s) link to the test run or report (evidence, QMS 4.4 step 3)",
                         field="url", form=TEST_FORM)
    summary = (summary or "").strip() or None
    artifact = (artifact or "").strip() or None
    for key, value, limit in (("summary", summary, 2000), ("artifact", artifact, 300)):
        if value and len(value) > limit:
            raise InputError(f"{key} is longer than {limit} characters", field=key, form=TEST_FORM)
    check_text({"url": url, "summary": summary, "artifact": artifact}, form=TEST_FORM)
    return phase, status, url, summary, artifact


def record_result(db: Engine, who: Recorder, release_id: int, phase: str | None, status: str | None,
                  url: str | None, summary: str | None, artifact: str | None, clock: Clock,
                  policy: Policy) -> Outcome:
    """One phase's result, audited `test_result`, with a note in the release's thread.
    Outcome.data: "result" (what was recorded) and "missing" (what the gate still misses for its artefact)."""
    phase, status, url, summary, artifact = _valid_result(phase, status, url, summary, artifact)

    def check(d: Decision) -> None:
        release = d.release
        if who.pipeline is not None:
            if phase == UAT:
                raise Refused("UAT sign-off is a person's act (QMS 4.3: written sign-off from the product owner); "
                              f"a pipeline cannot record it. The product owner records it with /release test "
                              f"{release.ref} phase=uat …", "uat_by_pipeline", (UAT_ROLE,))
            if who.environments is not None and release.environment not in who.environments:
                raise Refused(f"pipeline:{who.pipeline} may report only for {', '.join(sorted(who.environments))}; "
                              f"{release.ref} is for {release.environment}", "pipeline_scope")
        elif phase == UAT:
            who.actor.require((UAT_ROLE,), "UAT sign-off is the product owner's written act (QMS 4.3); you do "
                                           "not hold product_owner.", "not_product_owner")
        else:
            roles = policy.validation.recorders
            who.actor.require(roles, f"Recording a test result needs one of {', '.join(roles)} "
                                     "([validation] recorders).", "not_a_recorder")
        if release.state not in LIVE_STATES:
            raise Refused(f"{release.ref} is {release.state}; test results count for the gate only before the "
                          "deployment starts.", "not_live")

    def change(d: Decision) -> Outcome:
        release = d.release
        row = TestResult(release_id=release.id, phase=phase, status=status, artifact=artifact, url=url,
                         summary=summary, reported_by=who.audit_name,
                         source="slack" if who.pipeline is None else "pipeline", at=d.now)
        d.session.add(row)
        d.session.flush()
        result = {"id": row.id, "phase": phase, "status": status, "artifact": artifact, "url": url,
                  "summary": summary, "at": d.now}
        d.record("test_result", before={}, after=result, touch=False)
        gaps = missing(d.session, release, artifact, policy)
        detail = f"{phase} {status}" + (f" for {artifact}" if artifact else "") + f" ({url})"
        announce.note(d.session, release, "test_result", d.now, key_suffix=str(row.id), by=who.actor.user_id,
                      detail=detail)
        msg = f"{release.ref}: {phase} {status} recorded" + (f" for {artifact}" if artifact else "") + "."
        msg += (" The gate still misses: " + ", ".join(gaps) + "." if gaps else
                " Every required test phase and document is in.")
        return Outcome(msg, release, changed=True, data={"result": result, "missing": gaps})

    return decide(db, release_id, who.audit_name, "test_result", clock.now(), check=check, change=change,
                  refusal_detail={"phase": phase, "status": status})


# ---- waivers -----------------------------------------------------------------------------------

def valid_item(item: str | None) -> str:
    """"performance" or "phase:performance", "runbook" or "document:runbook" -> the item's full name."""
    text = (item or "").strip().lower()
    kind, sep, name = text.partition(":")
    if not sep:
        kind, name = ("phase", text) if text in PHASES else ("document", text)
    name = {"notes": "release_notes", "rollback": "rollback_plan"}.get(name, name)
    if (kind == "phase" and name in PHASES) or (kind == "document" and name in DOCUMENTS):
        return f"{kind}:{name}"
    raise InputError(f"'{item or ''}' is not a phase or a document; phases are {', '.join(PHASES)}, documents "
                     f"{', '.join(DOCUMENTS)}", field="item", form=WAIVE_FORM)


def waive(db: Engine, actor: Actor, release_id: int, item: str | None, reason: str | None, clock: Clock,
          policy: Policy) -> Outcome:
    """A release manager's written exception for one required phase or document (QMS 4.4 step 3)."""
    item = valid_item(item)
    reason = required_reason(reason, "a waiver needs a written reason (the documented justification, QMS 4.4)",
                             WAIVE_FORM)
    check_text(reason, "reason", WAIVE_FORM)

    def replay(d: Decision) -> Outcome | None:
        if item in waivers(d.session, d.release):
            return Outcome(f"{item} of {d.release.ref} is already waived; nothing changed.", d.release)
        return None

    def check(d: Decision) -> None:
        release = d.release
        actor.require(("release_manager",), "Only a release manager may waive a test phase or a document "
                                            "(QMS 4.4: Release Manager approval).", "not_release_manager")
        if actor.user_id == release.requester_id:
            raise Refused("You requested this release, so you cannot waive its checks.", "requester")
        if release.state not in LIVE_STATES:
            raise Refused(f"{release.ref} is {release.state}; a waiver opens the gate only before the deployment "
                          "starts.", "not_live")
        kind, _, name = item.partition(":")
        needed = required_phases(policy, release) if kind == "phase" else required_documents(policy, release)
        if name not in needed:
            raise Refused(f"{release.ref} does not need {item} ({'+'.join(applied_types(release))} needs "
                          f"{', '.join(needed) or 'none'}), so there is nothing to waive.", "not_required")

    def change(d: Decision) -> Outcome:
        release = d.release
        w = Waiver(release_id=release.id, item=item, reason=reason, by=actor.user_id, at=d.now)
        d.session.add(w)
        d.session.flush()
        d.record("waiver", before={}, after={"item": item, "waiver": w.id}, reason=reason, touch=False)
        announce.note(d.session, release, "waiver", d.now, key_suffix=str(w.id), by=actor.user_id,
                      detail=f"{item}: {reason}")
        return Outcome(f"{item} of {release.ref} is waived; your reason is recorded and shown as an exception.",
                       release, changed=True, data={"item": item})

    return decide(db, release_id, actor.user_id, "waiver", clock.now(), replay=replay, check=check, change=change,
                  refusal_detail={"item": item})
