"""A misclassification found after deployment is a non-conformance (QMS 6.2), recorded by a release manager,
once; one accepted by a release manager at request time stays an exception, not a non-conformance."""
from __future__ import annotations

from commands.classification import Answers
from commands.errors import InputError
from commands.misclassification import record_misclassification
from commands.release import accept_misclassification
from conftest import actor
from test_deployment_outcomes import deploying, finish, nonconformances, snapshot_of_writes
from unit_support import events, new_release, outbox_keys

import pytest


def test_a_release_manager_records_it_against_a_deployed_release_once(db, clock, policy):
    rid = deploying(db, clock, policy)
    finish(db, clock, policy, rid, "success")
    out = record_misclassification(db, actor("U0RM"), rid, "was major: it changed the public API", clock, policy)
    assert out.changed and "recorded as non-conformance NC-" in out.message
    again = record_misclassification(db, actor("U0RM"), rid, "said twice", clock, policy)
    assert not again.changed and "already recorded as NC-" in again.message
    [nc] = nonconformances(db)
    assert (nc.kind, nc.release_id, nc.subject, nc.reported_by) == ("misclassification", rid, f"REL-{rid}", "U0RM")
    assert "was deployed as minor" in nc.detail and "changed the public API" in nc.detail
    assert len(events(db, rid, "nonconformance")) == 1
    assert f"nonconformance:{nc.id}" in outbox_keys(db)


def test_only_a_release_manager_records_it_and_the_refusal_is_audited(db, clock, policy):
    rid = deploying(db, clock, policy)
    out = record_misclassification(db, actor("U0QA"), rid, "was major", clock, policy)
    assert out.refused and "Only a release manager" in out.message
    assert nonconformances(db) == [] and [e.action for e in events(db, rid)][-1] == "misclassified_refused"


def test_before_deployment_it_is_refused_and_points_at_edit_and_accept(db, clock, policy):
    rid = new_release(db, clock, policy)
    out = record_misclassification(db, actor("U0RM"), rid, "was major", clock, policy)
    assert out.refused and "/release accept" in out.message and nonconformances(db) == []


def test_a_reason_is_required_and_nothing_is_written_without_one(db, clock, policy):
    rid = deploying(db, clock, policy)
    before = snapshot_of_writes(db, rid)
    with pytest.raises(InputError):
        record_misclassification(db, actor("U0RM"), rid, "  ", clock, policy)
    assert snapshot_of_writes(db, rid) == before


def test_a_misclassification_accepted_at_request_time_is_an_exception_not_a_non_conformance(db, clock, policy):
    rid = new_release(db, clock, policy, answers=Answers(feature=True), type="patch")
    out = accept_misclassification(db, actor("U0RM"), rid, "a config-only change", clock, policy)
    assert out.changed
    assert nonconformances(db) == []
    assert [e.action for e in events(db, rid)][-1] != "nonconformance"
