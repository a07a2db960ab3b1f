"""Deriving the release type from the §3.7 questions, and judging misclassification."""
from __future__ import annotations

import pytest

from commands.classification import (FLAG_TO_KEY, QUESTIONS, Answers, classify, derive_type, needs_security,
                                     required_roles)
from commands.policy import Policy


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
    assert not needs_security(ans("infrastructure", "feature", "breaking", "cve", "incident", "cross_system"))


def test_required_roles_without_answers_is_the_type_table(p):
    assert required_roles(p, "minor", None) == {"release_manager": 1, "qa_lead": 1}
    # a fresh dict: changing it cannot change the policy
    roles = required_roles(p, "minor", ans("sensitive"))
    roles["cab"] = 5
    assert dict(p.type("minor").approvers) == {"release_manager": 1, "qa_lead": 1}


# --- misclassification ---------------------------------------------------------------------------------------------

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
])
def test_less_controlled_request_is_misclassified_and_derived_approvals_apply(p, keys, requested, derived):
    c = classify(p, ans(*keys), requested)
    assert c.misclassified
    assert (c.derived, c.requested, c.effective) == (derived, requested, derived)
    assert c.required_roles == dict(p.type(derived).approvers)


def test_misclassified_sensitive_change_keeps_the_security_approver(p):
    c = classify(p, ans("feature", "sensitive"), "patch")
    assert c.misclassified and c.effective == "minor"
    assert c.required_roles == {"release_manager": 1, "qa_lead": 1, "security": 1}


@pytest.mark.parametrize("keys, requested", [
    (("feature",), "major"),
    ((), "minor"),
    ((), "major"),
    (("infrastructure",), "major"),
    (("incident",), "major"),      # emergency ranks below major
    (("cve",), "emergency"),
    (("feature",), "security"),
])
def test_stricter_choice_is_not_a_misclassification(p, keys, requested):
    c = classify(p, ans(*keys), requested)
    assert not c.misclassified
    assert c.effective == requested
    assert p.type(requested).rank > p.type(c.derived).rank
    assert c.required_roles == dict(p.type(requested).approvers) | (
        {"security": 1} if needs_security(ans(*keys)) and "security" not in p.type(requested).approvers else {})


def test_stricter_choice_still_adds_security_for_sensitive_changes(p):
    c = classify(p, ans("sensitive"), "minor")
    assert not c.misclassified and c.effective == "minor"
    assert c.required_roles == {"release_manager": 1, "qa_lead": 1, "security": 1}


def test_misclassification_follows_the_policy_ranks():
    # A team that ranks minor above major: asking for minor on a breaking change is stricter there.
    p = Policy.from_mapping({"types": {"minor": {"rank": 10}}}, source="t")
    c = classify(p, ans("breaking"), "minor")
    assert not c.misclassified and c.effective == "minor"


# --- one-line requests: a declared type, no answers --------------------------------------------------------------

@pytest.mark.parametrize("requested", ["patch", "minor", "major", "security", "emergency", "infrastructure"])
def test_one_line_request_without_answers_takes_the_declared_type(p, requested):
    c = classify(p, None, requested)
    assert (c.derived, c.requested, c.effective, c.misclassified) == (requested, requested, requested, False)
    assert c.required_roles == dict(p.type(requested).approvers)


def test_nothing_declared_and_nothing_answered_is_a_patch(p):
    c = classify(p, None, None)
    assert (c.derived, c.effective, c.misclassified) == ("patch", "patch", False)
