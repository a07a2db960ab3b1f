"""A pipeline's report as one decision (commands.pipeline.report_deployment), and "could not check" in the
rollback and finish role checks (issue 7 items 11 and the API's workflow rules)."""
from __future__ import annotations

import pytest

from commands.deploy import Deployer, finish_deployment
from commands.rollback import decide_rollback
from commands.errors import CouldNotCheck
from commands.outcome import Actor
from commands.pipeline import Report, report_deployment
from commands.text import when
from test_deployment_outcomes import (ALL_CHECKED, DEPLOYER, IN_WINDOW, WINDOW, deploying, deployment, finish,
                                      nonconformances, row, snapshot_of_writes, who)
from unit_support import actions, events, new_release, outbox_keys, release


def unapproved_report(db, clock, policy, rid, status, reporter, **fields):
    return report_deployment(db, reporter, rid, Report(status, **fields), clock, policy)


def test_a_report_for_a_never_approved_release_is_a_non_conformance(db, clock, policy):
    rid = new_release(db, clock, policy, **WINDOW)
    clock.set(IN_WINDOW)
    keys0 = outbox_keys(db)
    out = unapproved_report(db, clock, policy, rid, "started", who(pipeline="nightly"), checklist=ALL_CHECKED,
                            commit="abc123")
    assert out.refused and not out.data.get("moved")
    # the package it skipped is recorded besides (the next test but one): this test is about the graver finding
    stored, *package = nonconformances(db)
    assert [n.kind for n in package] == ["test_phase_skipped", "documentation_absent"]
    assert out.data["nonconformance"] == stored.id
    # the gate's own reasons come first (here also the missing package: tests/unit/test_gate_package.py)
    assert [out.data["reasons"][0], out.data["reasons"][-1]] == [f"REL-{rid} is pending, not approved",
                                   f"REL-{rid} was never approved: a deployment reported for it is a "
                                   f"non-conformance (QMS 6.2), recorded as non-conformance {stored.id} and posted "
                                   "to the release channel"]
    assert (stored.release_id, stored.kind) == (rid, "deployment_without_approval")
    assert (stored.reported_by, stored.at) == (f"{DEPLOYER} via pipeline:nightly", IN_WINDOW)
    assert stored.detail == (f"{DEPLOYER} via pipeline:nightly reported 'started' for REL-{rid} (pending, never "
                             "approved). commit=abc123.")
    ev = events(db, rid, "nonconformance")[0]
    assert (ev.actor, ev.at, ev.reason) == (f"{DEPLOYER} via pipeline:nightly", IN_WINDOW, stored.detail)
    # with its register entry (commands.nonconformance): due 5 business days on, in the release's zone (UTC here)
    assert ev.after == {"kind": "deployment_without_approval", "status": "started", "nonconformance": stored.id,
                        "due_at": stored.due_at.isoformat(), "tz": "UTC", "repeat_of": None}
    assert actions(db, rid)[-1] == "nonconformance"  # no deploy_refused besides it: one record of one report
    new = [k for k in outbox_keys(db) if k not in keys0]
    assert new == [key for nc in (stored, *package) for key in (
        f"note:{rid}:nonconformance:{nc.id}", f"nonconformance:{nc.id}",
        *(f"nc-reminder:{nc.id}:{what}" for what in ("nc_soon", "nc_due", "nc_escalation")))]
    note = row(db, new[0])
    assert note.kind == "thread_note" and note.stream == f"release:{rid}"
    register = {"nc": stored.ref, "kind": "deployment_without_approval", "due": when(stored.due_at, "UTC"),
                "repeat_of": None}
    assert note.payload == {"event": "nonconformance", "detail": stored.detail, **register}
    # and to the release channel, where the release managers are mentioned (commands.nonconformance)
    channel = row(db, new[1])
    assert channel.kind == "channel_note" and channel.payload == {
        "event": "nonconformance", "ref": f"REL-{rid}", "detail": stored.detail, "roles": ["release_manager"],
        **register}
    # it changes nothing about the release itself
    assert release(db, rid).state == "pending"


def test_each_unapproved_report_is_its_own_non_conformance_and_a_retry_is_not(db, clock, policy):
    rid = new_release(db, clock, policy, **WINDOW)
    a = unapproved_report(db, clock, policy, rid, "started", who())
    b = unapproved_report(db, clock, policy, rid, "succeeded", who())
    again = unapproved_report(db, clock, policy, rid, "succeeded", who())
    assert a.data["nonconformance"] != b.data["nonconformance"] == again.data["nonconformance"]
    unapproved = [n for n in nonconformances(db) if n.kind == "deployment_without_approval"]
    assert [n.detail for n in unapproved] == [
        f"{DEPLOYER} reported 'started' for REL-{rid} (pending, never approved).",
        f"{DEPLOYER} reported 'succeeded' for REL-{rid} (pending, never approved).",
    ]
    assert len(events(db, rid, "nonconformance")) == 2 + 2  # and the skipped package's two, once each


def test_rolled_back_reported_while_stabilising_is_decided_and_restored_in_one_step(db, clock, policy):
    rid = deploying(db, clock, policy)
    assert finish(db, clock, policy, rid, "success").changed
    now = clock.advance(minutes=20)
    out = report_deployment(db, who(pipeline="ci"), rid, Report("rolled_back", note="canary red"), clock, policy)
    assert out.changed and release(db, rid).state == "rolled_back"
    dep = deployment(db, rid)
    assert dep.rollback_decided_at == dep.restored_at == now and dep.rollback_decided_by == DEPLOYER
    assert actions(db, rid)[-2:] == ["rollback_decided", "deployment_rolled_back"]
    assert events(db, rid, "rollback_decided")[0].reason == "canary red"


def test_rolled_back_reported_while_stabilising_by_a_bystander_changes_nothing(db, clock, policy):
    rid = deploying(db, clock, policy)
    assert finish(db, clock, policy, rid, "success").changed
    out = report_deployment(db, who("U0DEV2", "ci"), rid, Report("rolled_back"), clock, policy)
    assert out.refused and release(db, rid).state == "stabilising"
    assert actions(db, rid)[-1] == "finish_refused"
    assert deployment(db, rid).rollback_decided_at is None


# --- "could not check" is not a refusal ------------------------------------------------------------------------

@pytest.mark.parametrize("step", ["finish", "rollback"])
def test_a_finisher_role_slack_could_not_check_is_try_again_not_a_refusal(db, clock, policy, step):
    rid = deploying(db, clock, policy)
    before = snapshot_of_writes(db, rid)
    # not the deployer; holds operations only through a user group Slack did not answer for
    unsure = Deployer.of(Actor("U0ONCALL", frozenset(), frozenset({"operations"})))
    with pytest.raises(CouldNotCheck):
        if step == "finish":
            finish_deployment(db, unsure, rid, "success", clock, policy)
        else:
            decide_rollback(db, unsure, rid, "error rate +20%", clock)
    assert snapshot_of_writes(db, rid) == before  # nothing written, nothing audited
    assert release(db, rid).state == "deploying"


def test_a_never_approved_production_deployment_also_records_its_missing_package_once(db, clock, policy):
    # Requirements combine as a union: never approved is the graver finding, and the skipped test phases and
    # absent documents (QMS 6.2) are each recorded besides it, once per release however often it is reported.
    rid = new_release(db, clock, policy, **WINDOW)
    clock.set(IN_WINDOW)
    first = unapproved_report(db, clock, policy, rid, "started", who(pipeline="ci"), artifact="payments:2.3.1",
                              commit="abc123")
    again = unapproved_report(db, clock, policy, rid, "succeeded", who(pipeline="ci"), artifact="payments:2.3.1")
    kinds = sorted(n.kind for n in nonconformances(db))
    assert kinds == ["deployment_without_approval", "deployment_without_approval", "documentation_absent",
                     "test_phase_skipped"]
    package = [n for n in nonconformances(db) if n.kind != "deployment_without_approval"]
    for out in (first, again):
        assert out.data["reasons"][-1].startswith(f"REL-{rid} was never approved")  # still the last word
        assert [r for r in out.data["reasons"] if r.startswith("NC-")] == [f"{n.ref}: {n.detail}" for n in package]
    assert all("without passing the gate" in n.detail for n in package)
