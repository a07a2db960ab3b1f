"""Deriving the release type from the §3.7 questions, and judging misclassification."""
from __future__ import annotations

import pytest

from datetime import timedelta

from commands.classification import (FLAG_TO_KEY, QUESTIONS, Answers, Controls, classify, controls, derive_type,
                                     needs_security, required_roles)
from commands.policy import Policy
from storage.models import Release


@pytest.fixture
def p() -> Policy:
    return Policy.default()


def ans(*keys: str) -> Answers:
    return Answers.from_keys(list(keys))


# --- each question on its own ------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, derived", [
    ("breaking", "major"),
    ("cross_system", "major"),
    ("cve", "security"),
    ("incident", "emergency"),
    ("infrastructure", "infrastructure"),
    ("network_iam", "infrastructure"),
    ("sensitive", "patch"),
    ("feature", "minor"),
])
def test_each_question_derives_its_type(key, derived):
    assert derive_type(ans(key)) == derived


def test_no_answers_is_a_patch():
    assert derive_type(Answers()) == "patch"


def test_every_question_has_a_flag_and_an_answer_field():
    keys = [k for k, _, _ in QUESTIONS]
    assert set(keys) == set(Answers().as_dict())
    assert set(FLAG_TO_KEY.values()) == set(keys)
    assert FLAG_TO_KEY["iac"] == "infrastructure" and FLAG_TO_KEY["network-iam"] == "network_iam"
    assert FLAG_TO_KEY["cross-system"] == "cross_system"


def test_answers_from_keys_ignores_unknown_and_reports_yes():
    a = Answers.from_keys(["feature", "sensitive", "nonsense"])
    assert a.feature and a.sensitive and not a.breaking
    assert a.yes() == ["sensitive", "feature"]


# --- precedence ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("keys, derived", [
    (("incident", "cve", "breaking", "cross_system", "infrastructure", "network_iam", "sensitive", "feature"),
     "emergency"),
    (("incident", "breaking"), "emergency"),
    (("incident", "cve"), "emergency"),
    (("cve", "breaking"), "security"),
    (("cve", "cross_system", "infrastructure", "feature"), "security"),
    (("breaking", "infrastructure"), "major"),
    (("cross_system", "network_iam", "feature"), "major"),
    (("infrastructure", "feature"), "infrastructure"),
    (("network_iam", "feature"), "infrastructure"),
    (("feature", "sensitive"), "minor"),
])
def test_precedence(keys, derived):
    assert derive_type(ans(*keys)) == derived


# --- security as an extra approver (§3.6, §3.7) --------------------------------------------------------------------

def test_sensitive_adds_security_to_a_patch(p):
    c = classify(p, ans("sensitive"), None)
    assert c.effective == "patch"
    assert c.required_roles == {"engineering_lead": 1, "qa_lead": 1, "security": 1}


def test_network_iam_adds_security_to_infrastructure(p):
    c = classify(p, ans("network_iam"), None)
    assert c.effective == "infrastructure"
    assert c.required_roles == {"platform_lead": 1, "security": 1}


def test_plain_iac_change_needs_only_the_platform_lead(p):
    c = classify(p, ans("infrastructure"), None)
    assert c.required_roles == {"platform_lead": 1}


def test_security_is_not_doubled_when_the_type_already_needs_it(p):
    assert classify(p, ans("cve", "sensitive"), None).required_roles == {"security": 1, "release_manager": 1}
    assert classify(p, ans("breaking", "sensitive"), None).required_roles == \
        {"cab": 2, "release_manager": 1, "security": 1}


def test_needs_security():
    assert needs_security(ans("sensitive"))
    assert needs_security(ans("network_iam"))
    assert not needs_security(ans("infrastructure", "feature", "breaking", "incident", "cross_system"))


def test_required_roles_without_answers_is_the_type_table(p):
    assert required_roles(p, "minor", None) == {"release_manager": 1, "qa_lead": 1}
    # a fresh dict: changing it cannot change the policy
    roles = required_roles(p, "minor", ans("sensitive"))
    roles["cab"] = 5
    assert dict(p.type("minor").approvers) == {"release_manager": 1, "qa_lead": 1}


# --- the controls that apply: the union of the derived and the requested type's -------------------------------

def test_controls_of_one_type_are_its_policy(p):
    c = controls(p, "major")
    assert c == Controls(required_roles={"cab": 2, "release_manager": 1, "security": 1},
                         lead_time=timedelta(days=14), stabilisation=timedelta(hours=24), retrospective=True,
                         approval_sla=timedelta(hours=4))
    assert controls(p, "patch").retrospective is False


def test_controls_of_two_types_are_their_union(p):
    c = controls(p, ("patch", "emergency"))
    # combined per alternative: patch's roles join each of emergency's sets
    assert c.approver_sets == ({"engineering_lead": 1, "qa_lead": 1, "cab": 2},
                               {"engineering_lead": 1, "qa_lead": 1, "release_manager": 1})
    assert c.lead_time == timedelta(days=2)           # the longer lead time
    assert c.stabilisation == timedelta(minutes=30)
    assert c.retrospective is True                    # emergency owes one, so the union does
    assert c.approval_sla == timedelta(minutes=30)    # the shorter SLA: nudges come sooner


def test_the_union_takes_the_larger_count_of_each_role():
    p = Policy.from_mapping({"types": {"minor": {"approvers": {"cab": 3, "qa_lead": 1}}}}, source="t")
    assert controls(p, ("minor", "major")).required_roles == {"cab": 3, "qa_lead": 1, "release_manager": 1,
                                                               "security": 1}


def test_a_release_is_held_to_the_union_until_a_misclassification_is_accepted(p):
    r = Release(requested_type="patch", derived_type="minor", effective_type="minor", misclassified=True,
                answers=Answers(feature=True, sensitive=True).as_dict(), classification_answered=True)
    assert controls(p, r).required_roles == {"release_manager": 1, "qa_lead": 1, "engineering_lead": 1,
                                             "security": 1}
    assert controls(p, r).lead_time == timedelta(days=7)
    r.misclassification_accepted_by = "U0RM"
    assert controls(p, r) == controls(p, "patch", Answers(feature=True, sensitive=True))
    assert controls(p, r).required_roles == {"engineering_lead": 1, "qa_lead": 1, "security": 1}


# The four holes of issue 7 item 4: a "stricter" type used to replace the derived one.

def test_a_cve_fix_for_an_incident_keeps_the_security_engineer(p):
    c = classify(p, ans("cve", "incident"), "emergency")
    assert c.effective == "emergency" and not c.misclassified
    # security joins every alternative set
    assert c.approver_sets == [{"cab": 2, "security": 1}, {"release_manager": 1, "engineering_lead": 1, "security": 1}]


def test_a_feature_requested_as_security_keeps_the_qa_lead_and_the_lead_time(p):
    c = classify(p, ans("feature"), "security")
    assert c.required_roles == {"security": 1, "release_manager": 1, "qa_lead": 1}
    assert c.controls.lead_time == timedelta(days=7)
    assert c.misclassified  # security's controls do not include minor's


def test_a_patch_requested_as_infrastructure_keeps_the_patch_approvers(p):
    c = classify(p, Answers(), "infrastructure")
    assert c.required_roles == {"platform_lead": 1, "engineering_lead": 1, "qa_lead": 1}
    assert (c.controls.lead_time, c.controls.stabilisation) == (timedelta(days=3), timedelta(hours=24))


# --- misclassification: the requested type's controls do not include all of the derived type's -------------------

def test_answers_alone_take_the_derived_type(p):
    c = classify(p, ans("feature"), None)
    assert (c.derived, c.requested, c.effective, c.misclassified) == ("minor", "minor", "minor", False)
    assert c.required_roles == {"release_manager": 1, "qa_lead": 1}


def test_matching_request_is_not_misclassified(p):
    c = classify(p, ans("feature"), "minor")
    assert not c.misclassified and c.effective == "minor"


@pytest.mark.parametrize("keys, requested, derived", [
    (("feature",), "patch", "minor"),
    (("breaking",), "minor", "major"),
    (("breaking",), "patch", "major"),
    (("cross_system",), "security", "major"),
    (("incident",), "security", "emergency"),
    (("incident",), "patch", "emergency"),
    (("cve",), "minor", "security"),
    (("infrastructure",), "patch", "infrastructure"),
    # no default type includes another's controls, so a "stricter" choice is recorded too
    (("feature",), "major", "minor"),
    ((), "minor", "patch"),
    (("incident",), "major", "emergency"),
    (("feature",), "security", "minor"),
])
def test_a_type_that_drops_a_derived_control_is_misclassified_and_both_apply(p, keys, requested, derived):
    c = classify(p, ans(*keys), requested)
    assert c.misclassified
    assert (c.derived, c.requested, c.effective) == (derived, requested, derived)
    assert c.controls == controls(p, (derived, requested), ans(*keys))
    # every way to approve it satisfies one approver set of each type
    for one in c.controls.sets():
        for t in (derived, requested):
            assert any(all(one.get(r, 0) >= n for r, n in alt.items()) for alt in p.type(t).approver_sets)
    assert c.missing  # says what the requested type alone would drop


def test_a_type_whose_controls_include_the_derived_ones_is_not_misclassified():
    # A team whose minor track is patch's and more: asking minor for a patch only adds control.
    p = Policy.from_mapping({"types": {"minor": {"approvers": {"engineering_lead": 1, "qa_lead": 1,
                                                               "release_manager": 1}}}}, source="t")
    c = classify(p, Answers(), "minor")
    assert not c.misclassified and c.effective == "minor" and c.missing == ()
    assert c.required_roles == {"engineering_lead": 1, "qa_lead": 1, "release_manager": 1}
    assert classify(p, ans("feature"), "patch").misclassified


def test_misclassified_sensitive_change_keeps_the_security_approver(p):
    c = classify(p, ans("feature", "sensitive"), "patch")
    assert c.misclassified and c.effective == "minor"
    assert c.required_roles == {"release_manager": 1, "qa_lead": 1, "engineering_lead": 1, "security": 1}


def test_a_vulnerability_fix_always_needs_security(p):
    assert needs_security(ans("cve"))
    assert classify(p, ans("cve"), "major").required_roles["security"] == 1


# --- releases recorded before answers were required: a declared type, no answers -------------------------------

@pytest.mark.parametrize("requested", ["patch", "minor", "major", "security", "emergency", "infrastructure"])
def test_a_declared_type_without_answers_is_that_type(p, requested):
    c = classify(p, None, requested)
    assert (c.derived, c.requested, c.effective, c.misclassified) == (requested, requested, requested, False)
    assert c.required_roles == dict(p.type(requested).approvers)
