"""The release package at the gate (QMS 4.3 test evidence, 4.4 documents and the controlled path): test results,
waivers, documents, the artefact and commit, manual starts, and their non-conformances."""
from __future__ import annotations

import pytest
from sqlmodel import Session, select

from commands.classification import Answers
from commands.deploy import ALL_TICKED, Deployer, check_gate, start_deployment
from commands.errors import InputError
from commands.outcome import Actor
from commands.package import set_documents
from commands.policy import Policy, PolicyError
from commands.provenance import Provenance, carries_version, forced_start, package_nonconformances
from commands.release import edit_release
from commands.validation import Recorder, missing, record_result, waive
from commands.vote import cast_vote
from conftest import ROLES, actor
from storage.db import transaction
from storage.models import Deployment, NonConformance
from storage.quality_models import TestResult, Waiver
from test_deploy_gate import IN_WINDOW, VOTERS, WINDOW
from unit_support import (COMMIT, REQUESTER, counts, dev, events, new_release, outbox_keys, ready_to_deploy,
                          release)

CI = Recorder(Actor("pipeline:ci"), pipeline="ci")
QA = Recorder(actor("U0QA"))
PO = Recorder(actor("U0PO"))
RM = actor("U0RM")
DEPLOYER = Deployer("U0DEPL", frozenset({"platform_lead"}), pipeline="deploy")
BY_HAND = Deployer("U0DEPL", frozenset({"platform_lead"}))
ART = "payments:2.3.1"


def approved(db, clock, policy, type_="minor", **fields) -> int:
    rid = new_release(db, clock, policy, type=type_, **{**WINDOW, **fields})
    for user in VOTERS[type_]:
        assert cast_vote(db, actor(user), rid, "go", clock).changed
    assert release(db, rid).state == "approved"
    return rid


def result(db, clock, policy, rid, phase, status="passed", who=CI, artifact=ART):
    return record_result(db, who, rid, phase, status, f"https://ci.test/{phase}", None, artifact, clock, policy)


def gate(db, clock, policy, rid, who=DEPLOYER, **prov):
    return check_gate(db, rid, who, clock, ALL_TICKED, policy, Provenance(**{"artifact": ART, "commit": COMMIT,
                                                                             **prov}))


def package_reasons(reasons: list[str]) -> list[str]:
    return [r for r in reasons if r.startswith(("test phase", "the release notes", "the deployment runbook",
                                                "the rollback plan"))]


def written(db):
    with Session(db) as s:
        return counts(db), len(list(s.exec(select(TestResult)))), len(list(s.exec(select(Waiver))))


def ncs(db) -> list[NonConformance]:
    with Session(db, expire_on_commit=False) as s:
        return list(s.exec(select(NonConformance).order_by(NonConformance.id)))


# --- the gate names every missing phase and document -------------------------------------------------------------

def test_the_gate_names_each_missing_phase_and_document(db, clock, policy):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    reasons = gate(db, clock, policy, rid)
    assert reasons == package_reasons(reasons) and len(reasons) == 5
    for phase in ("performance", "security", "regression"):
        assert any(r.startswith(f"test phase {phase} is required (QMS 4.3) and it has no passing result for "
                                f"artefact {ART}") for r in reasons), phase
    assert any(r.startswith("the release notes is missing") and f"/release edit REL-{rid} notes=" in r
               for r in reasons)
    assert any(r.startswith("the deployment runbook is missing") for r in reasons)
    out = start_deployment(db, DEPLOYER, rid, ALL_TICKED, clock, policy, artifact=ART, commit=COMMIT)
    assert out.refused and out.data["reasons"] == reasons
    assert all(f"• {r}" in out.message for r in reasons)
    assert events(db, rid, "deploy_refused")[-1].after["reasons"] == reasons
    ready_to_deploy(db, clock, rid, policy)
    assert gate(db, clock, policy, rid) == []


@pytest.mark.parametrize("type_, answers, phases, documents", [
    ("major", None, {"security", "regression", "performance", "uat"}, {"release_notes", "runbook", "rollback_plan"}),
    ("patch", None, {"security", "regression"}, {"release_notes", "runbook"}),
    ("infrastructure", None, {"security", "regression", "infrastructure"},
     {"release_notes", "runbook", "rollback_plan"}),
    # QMS 4.6: the emergency runs the automated CI checks and targeted regression; the rest is deferred
    ("emergency", None, {"security", "regression"}, set()),
    # a feature asked for as infrastructure: the union of both types' phases and documents
    ("infrastructure", Answers(feature=True), {"security", "regression", "performance", "infrastructure"},
     {"release_notes", "runbook", "rollback_plan"}),
])
def test_the_phases_and_documents_each_type_needs(db, clock, policy, type_, answers, phases, documents):
    rid = new_release(db, clock, policy, type=type_, answers=answers, **WINDOW)
    with Session(db) as s:
        items = missing(s, release(db, rid), ART, policy)
    assert {i.partition(":")[2] for i in items if i.startswith("phase:")} == phases
    assert {i.partition(":")[2] for i in items if i.startswith("document:")} == documents


def test_the_phases_are_policy(db, clock):
    p = Policy.from_mapping({"roles": ROLES, "validation": {"phases": {"minor": ["unit"]},
                                                           "documents": {"minor": []}}})
    rid = new_release(db, clock, p, **WINDOW)
    with Session(db) as s:
        assert missing(s, release(db, rid), ART, p) == ["phase:unit"]


@pytest.mark.parametrize("spec, key", [
    ({"phases": {"minor": ["smoke"]}}, "validation.phases.minor"),
    ({"documents": {"major": ["poem"]}}, "validation.documents.major"),
    ({"manual_allowed": ["moon"]}, "validation.manual_allowed"),
    ({"recorders": ["wizard"]}, "validation.recorders"),
    ({"phases": {"hotfix": []}}, "validation.phases.hotfix"),
])
def test_a_policy_mistake_names_the_key(spec, key):
    with pytest.raises(PolicyError) as exc:
        Policy.from_mapping({"validation": spec}, source="policy.toml")
    assert exc.value.key == key


# --- latest result, per artefact ---------------------------------------------------------------------------------

def test_a_failure_recorded_after_a_pass_stands(db, clock, policy):
    rid = approved(db, clock, policy)
    ready_to_deploy(db, clock, rid, policy)
    clock.set(IN_WINDOW)
    assert gate(db, clock, policy, rid) == []
    out = result(db, clock, policy, rid, "security", "failed")
    assert out.changed and out.data["missing"] == ["phase:security"]
    reasons = gate(db, clock, policy, rid)
    assert reasons == [f"test phase security is required (QMS 4.3) and its latest result for artefact {ART} failed; "
                       "record a pass, or a release manager waives it"]
    assert result(db, clock, policy, rid, "security").changed  # fixed and re-run: the latest counts again
    assert gate(db, clock, policy, rid) == []


def test_a_pass_for_another_artefact_does_not_count(db, clock, policy):
    rid = approved(db, clock, policy)
    ready_to_deploy(db, clock, rid, policy, artifact="payments:2.3.1-rc1")
    clock.set(IN_WINDOW)
    reasons = gate(db, clock, policy, rid)
    assert len(reasons) == 3 and all(f"no passing result for artefact {ART}" in r for r in reasons)


def test_a_result_is_audited_and_noted_in_the_thread(db, clock, policy):
    rid = approved(db, clock, policy)
    out = result(db, clock, policy, rid, "regression", who=QA)
    [ev] = events(db, rid, "test_result")
    assert ev.actor == "U0QA" and ev.after["phase"] == "regression" and ev.after["status"] == "passed"
    assert ev.after["artifact"] == ART and ev.after["url"] == "https://ci.test/regression"
    assert f"note:{rid}:test_result:{out.data['result']['id']}" in outbox_keys(db)
    assert release(db, rid).state == "approved" and release(db, rid).round == 1  # evidence is no change of scope


# --- UAT is the product owner's, never a pipeline's ----------------------------------------------------------------

def test_uat_by_someone_who_is_not_the_product_owner_is_refused_and_audited(db, clock, policy):
    rid = approved(db, clock, policy, "major")
    before = written(db)
    out = result(db, clock, policy, rid, "uat", who=QA)
    assert out.refused and "product owner" in out.message and out.data["needs_roles"] == ["product_owner"]
    [ev] = events(db, rid, "test_result_refused")
    assert ev.actor == "U0QA" and ev.after["code"] == "not_product_owner"
    assert written(db)[1] == before[1]  # no result


def test_uat_from_a_pipeline_is_refused(db, clock, policy):
    rid = approved(db, clock, policy, "major")
    out = result(db, clock, policy, rid, "uat", who=CI)
    assert out.refused and "a pipeline cannot record it" in out.message
    assert events(db, rid, "test_result_refused")[-1].after["code"] == "uat_by_pipeline"
    assert result(db, clock, policy, rid, "uat", who=PO).changed


def test_someone_without_a_testing_role_may_not_record_a_result(db, clock, policy):
    rid = approved(db, clock, policy)
    out = result(db, clock, policy, rid, "security", who=Recorder(dev()))
    assert out.refused and "[validation] recorders" in out.message
    assert events(db, rid, "test_result_refused")[-1].actor == REQUESTER


@pytest.mark.parametrize("phase, status, url, field", [
    ("smoke", "passed", "https://ci.test/1", "phase"),
    ("", "passed", "https://ci.test/1", "phase"),
    ("security", "green", "https://ci.test/1", "status"),
    ("security", "passed", "", "url"),
    ("security", "passed", "ci.test/1", "url"),
])
def test_bad_input_is_said_and_writes_nothing(db, clock, policy, phase, status, url, field):
    rid = approved(db, clock, policy)
    before = written(db)
    with pytest.raises(InputError) as exc:
        record_result(db, QA, rid, phase, status, url, None, ART, clock, policy)
    assert exc.value.field == field and "/release test" in exc.value.form
    assert written(db) == before


# --- waivers -------------------------------------------------------------------------------------------------------

def test_a_waiver_opens_the_gate_and_is_an_exception_on_the_deployment(db, clock, policy):
    rid = approved(db, clock, policy)
    ready_to_deploy(db, clock, rid, policy, skip=("phase:performance", "document:runbook"))
    clock.set(IN_WINDOW)
    assert len(gate(db, clock, policy, rid)) == 2
    assert waive(db, RM, rid, "performance", "baseline env down; canary watches p95", clock, policy).changed
    out = waive(db, RM, rid, "document:runbook", "runbook is the standard one", clock, policy)
    assert out.changed and "shown as an exception" in out.message
    assert gate(db, clock, policy, rid) == []
    [ev, _] = events(db, rid, "waiver")
    assert (ev.actor, ev.reason, ev.after["item"]) == ("U0RM", "baseline env down; canary watches p95",
                                                       "phase:performance")
    assert start_deployment(db, DEPLOYER, rid, ALL_TICKED, clock, policy, artifact=ART, commit=COMMIT).changed
    with Session(db) as s:
        dep = s.exec(select(Deployment)).one()
        # open by exception: the package is not complete (the KPI counts waivers as exceptions)
        assert (dep.package_complete, dep.policy_hash, dep.manual) == (False, policy.digest, False)


def test_a_waiver_again_changes_nothing(db, clock, policy):
    rid = approved(db, clock, policy)
    assert waive(db, RM, rid, "phase:performance", "first", clock, policy).changed
    out = waive(db, RM, rid, "performance", "second", clock, policy)
    assert not out.changed and "already waived" in out.message
    assert len(events(db, rid, "waiver")) == 1


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_a_waiver_without_a_reason_writes_nothing(db, clock, policy, reason):
    rid = approved(db, clock, policy)
    before = written(db)
    with pytest.raises(InputError) as exc:
        waive(db, RM, rid, "performance", reason, clock, policy)
    assert exc.value.field == "reason"
    assert written(db) == before


def test_a_waiver_of_an_unknown_item_is_bad_input(db, clock, policy):
    rid = approved(db, clock, policy)
    with pytest.raises(InputError) as exc:
        waive(db, RM, rid, "vibes", "trust me", clock, policy)
    assert exc.value.field == "item" and "phases are" in exc.value.message


def test_only_a_release_manager_waives_and_a_refusal_is_audited(db, clock, policy):
    rid = approved(db, clock, policy)
    before = written(db)[1:]
    out = waive(db, actor("U0QA"), rid, "performance", "trust me", clock, policy)
    assert out.refused and out.data["needs_roles"] == ["release_manager"]
    assert events(db, rid, "waiver_refused")[-1].after == {"code": "not_release_manager", "item": "phase:performance"}
    assert written(db)[1:] == before


def test_a_phase_the_release_does_not_need_is_not_waived(db, clock, policy):
    rid = approved(db, clock, policy)  # minor: no UAT
    out = waive(db, RM, rid, "uat", "not needed", clock, policy)
    assert out.refused and "does not need phase:uat" in out.message


# --- documents: never a change of scope ----------------------------------------------------------------------------

def test_documents_from_the_edit_do_not_reset_the_votes(db, clock, policy):
    rid = approved(db, clock, policy)
    out = edit_release(db, dev(), rid, {"notes": "https://wiki.test/notes", "runbook": "https://wiki.test/rb",
                                        "rollback": "redeploy 2.3.0"}, clock, policy)
    assert out.changed and "Votes are unaffected" in out.message
    r = release(db, rid)
    assert (r.state, r.round, r.release_notes, r.runbook, r.rollback_plan) == (
        "approved", 1, "https://wiki.test/notes", "https://wiki.test/rb", "redeploy 2.3.0")
    assert events(db, rid, "edited") == [] and len(events(db, rid, "documents_set")) == 1
    assert f"note:{rid}:votes_reset:2" not in outbox_keys(db)


def test_a_document_with_a_version_change_resets_only_for_the_version(db, clock, policy):
    rid = approved(db, clock, policy)
    out = edit_release(db, dev(), rid, {"version": "2.3.2", "notes": "https://wiki.test/n", "reason": "typo"},
                       clock, policy)
    assert "Earlier votes no longer count" in out.message
    [ev] = events(db, rid, "edited")
    assert ev.before["version"] == "2.3.1" and ev.after["version"] == "2.3.2"
    assert release(db, rid).release_notes == "https://wiki.test/n"


def test_documents_come_with_the_request(db, clock, policy):
    rid = new_release(db, clock, policy, notes="https://wiki.test/n", runbook="https://wiki.test/r", **WINDOW)
    r = release(db, rid)
    assert (r.release_notes, r.runbook) == ("https://wiki.test/n", "https://wiki.test/r")


def test_a_release_note_that_is_not_a_link_is_bad_input(db, clock, policy):
    rid = approved(db, clock, policy)
    before = written(db)
    with pytest.raises(InputError) as exc:
        edit_release(db, dev(), rid, {"notes": "see wiki"}, clock, policy)
    assert exc.value.field == "notes"
    assert written(db) == before


def test_only_the_requester_or_a_release_manager_sets_documents(db, clock, policy):
    rid = approved(db, clock, policy)
    out = set_documents(db, actor("U0QA"), rid, {"runbook": "https://x.test"}, clock)
    assert out.refused and events(db, rid, "documents_refused")
    assert set_documents(db, RM, rid, {"runbook": "https://x.test"}, clock).changed


# --- the artefact, the commit and the controlled path ----------------------------------------------------------------

@pytest.mark.parametrize("artifact, version, carries", [
    ("payments:2.3.1", "2.3.1", True),
    ("ghcr.io/acme/payments:2.3.1@sha256:ab12", "2.3.1", True),
    ("registry:5000/acme/payments:2.3.1", "2.3.1", True),
    ("2.3.1", "2.3.1", True),
    ("payments:2.3.10", "2.3.1", False),
    ("payments:2.3.1-rc1", "2.3.1", False),
    ("registry:2.3.1/acme/payments", "2.3.1", False),
    ("payments", "2.3.1", False),
])
def test_an_artefact_carries_its_version_as_its_tag(artifact, version, carries):
    assert carries_version(artifact, version) is carries


def test_another_artefact_is_refused_with_the_reason(db, clock, policy):
    rid = approved(db, clock, policy)
    ready_to_deploy(db, clock, rid, policy)
    clock.set(IN_WINDOW)
    out = start_deployment(db, DEPLOYER, rid, ALL_TICKED, clock, policy, artifact="payments:2.4.0", commit=COMMIT)
    assert out.refused
    assert (f"artefact payments:2.4.0 does not carry REL-{rid}'s approved version 2.3.1: deploy the artefact "
            "built for it (e.g. payments:2.3.1)") in out.message
    with Session(db) as s:
        assert s.exec(select(Deployment)).first() is None


def test_artefact_and_commit_are_required_in_production_only(db, clock, policy):
    rid = approved(db, clock, policy)
    ready_to_deploy(db, clock, rid, policy)
    clock.set(IN_WINDOW)
    reasons = check_gate(db, rid, DEPLOYER, clock, ALL_TICKED, policy, Provenance())
    assert [r.split(" (")[0].split(",")[0] for r in reasons] == [
        "an artefact is required to start a production deployment",
        "the commit the artefact was built from is required to start a production deployment"]


def test_a_staging_deployment_needs_no_artefact_or_justification(db, clock, policy):
    rid = new_release(db, clock, policy, env="staging", **WINDOW)
    for user in VOTERS["minor"]:
        assert cast_vote(db, actor(user), rid, "go", clock).changed
    ready_to_deploy(db, clock, rid, policy)
    clock.set(IN_WINDOW)
    assert check_gate(db, rid, BY_HAND, clock, ALL_TICKED, policy, Provenance()) == []
    out = start_deployment(db, BY_HAND, rid, ALL_TICKED, clock, policy)
    assert out.changed and ncs(db) == []


def test_a_manual_production_start_needs_a_justification(db, clock, policy):
    rid = approved(db, clock, policy)
    ready_to_deploy(db, clock, rid, policy)
    clock.set(IN_WINDOW)
    out = start_deployment(db, BY_HAND, rid, ALL_TICKED, clock, policy, artifact=ART, commit=COMMIT)
    assert out.refused and out.data["reasons"] == [
        "a production deployment started by hand, not by the pipeline, needs a written justification (QMS 4.4 step 4)"]
    assert ncs(db) == []


def test_a_manual_production_deployment_is_recorded_and_is_one_non_conformance(db, clock, policy):
    rid = approved(db, clock, policy)
    ready_to_deploy(db, clock, rid, policy)
    clock.set(IN_WINDOW)
    out = start_deployment(db, BY_HAND, rid, ALL_TICKED, clock, policy, artifact=ART, commit=COMMIT,
                           justification="CI runner outage")
    assert out.changed and "non-conformance NC-1" in out.message
    [nc] = ncs(db)
    assert (nc.kind, nc.release_id, nc.reported_by) == ("manual_deployment", rid, "U0DEPL")
    assert "not through the pipeline" in nc.detail and "CI runner outage" in nc.detail
    with Session(db) as s:
        dep = s.exec(select(Deployment)).one()
        assert (dep.manual, dep.justification, dep.package_complete) == (True, "CI runner outage", True)
        assert nc.deployment_id == dep.id
    assert f"nonconformance:{nc.id}" in outbox_keys(db)
    # the same start again (a double click, a retried delivery) is the same deployment: no second record
    again = start_deployment(db, BY_HAND, rid, ALL_TICKED, clock, policy, artifact=ART, commit=COMMIT,
                             justification="CI runner outage")
    assert not again.changed and len(ncs(db)) == 1
    assert len(events(db, rid, "nonconformance")) == 1


def test_policy_may_allow_manual_deployments_for_an_environment(db, clock):
    p = Policy.from_mapping({"roles": ROLES, "validation": {"manual_allowed": ["production"]}})
    rid = approved(db, clock, p)
    ready_to_deploy(db, clock, rid, p)
    clock.set(IN_WINDOW)
    out = start_deployment(db, BY_HAND, rid, ALL_TICKED, clock, p, artifact=ART, commit=COMMIT,
                           justification="our pipeline is the person")
    assert out.changed and ncs(db) == []
    with Session(db) as s:
        assert s.exec(select(Deployment)).one().manual is True


# --- the package's non-conformances (a forced path, a report of a deployment that skipped the gate) ------------------

def test_a_deployment_without_its_package_is_one_non_conformance_per_kind(db, clock, policy):
    rid = approved(db, clock, policy)
    result(db, clock, policy, rid, "security")
    for _ in range(2):  # seen twice (a retried report): recorded once
        with transaction(db) as s:
            from commands.release import load
            found = package_nonconformances(s, load(s, rid), ART, "pipeline:ci", clock.now(), policy)
    assert [nc.kind for nc in found] == ["test_phase_skipped", "documentation_absent"]
    kinds = [(nc.kind, nc.detail) for nc in ncs(db)]
    assert kinds == [("test_phase_skipped", f"REL-{rid} was deployed with mandatory test phase(s) neither passed "
                                            "nor waived: performance, regression"),
                     ("documentation_absent", f"REL-{rid} was deployed with release documentation absent: "
                                              "release_notes, runbook")]
    assert len(events(db, rid, "nonconformance")) == 2


def test_a_forced_start_is_marked_and_its_skipped_phases_recorded(db, clock, policy):
    rid = approved(db, clock, policy)
    ready_to_deploy(db, clock, rid, policy, skip=("phase:regression",))
    with transaction(db) as s:
        from commands.release import load
        dep = Deployment(release_id=rid, deployer_id="U0DEPL", checklist={}, artifact=ART, started_at=clock.now())
        s.add(dep)
        s.flush()
        [nc] = forced_start(s, load(s, rid), dep, "U0DEPL", policy)
        assert (nc.kind, nc.deployment_id) == ("test_phase_skipped", dep.id)
    with Session(db) as s:
        assert s.exec(select(Deployment)).one().forced is True
    assert "forced path" in ncs(db)[0].detail and "regression" in ncs(db)[0].detail
