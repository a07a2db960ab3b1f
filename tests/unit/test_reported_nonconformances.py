"""QMS 6.2 rows seen in what pipelines report (commands.pipeline, commands.unmatched), each recorded exactly once:
a deployment naming no approved release, an outcome for a release never started through the gate, a build not
from a tag. Plus what a report keeps of provenance (tag, commit_time)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, select

from commands.errors import NotFound
from commands.pipeline import Report, report_deployment
from commands.unmatched import UnmatchedReport, record_unmatched, version_of
from storage.quality_models import UnmatchedDeployment
from test_deployment_outcomes import (ALL_CHECKED, IN_WINDOW, approved, deploying, deployment, nonconformances,
                                      row, who)
from unit_support import counts, events, outbox_keys, ready_to_deploy, release

UTC = timezone.utc


def kinds(db):
    return [(n.kind, n.subject) for n in nonconformances(db)]


def unmatched_rows(db):
    with Session(db, expire_on_commit=False) as s:
        return list(s.exec(select(UnmatchedDeployment).order_by(UnmatchedDeployment.id)))


def report(**kw) -> UnmatchedReport:
    return UnmatchedReport(**{"service": "payments", "environment": "production", "status": "succeeded",
                              "reporter": "pipeline:ci", "artifact": "payments:9.9.9", "commit": "abc123",
                              "actor": "U0DEPL", **kw})


# --- POST /api/v1/deployments: no release named --------------------------------------------------------------

def test_a_production_deployment_naming_no_release_is_kept_and_is_one_non_conformance(db, clock, policy):
    out = record_unmatched(db, report(), "api", "api:ci:key:1", clock, policy)
    again = record_unmatched(db, report(), "api", "api:ci:key:1", clock, policy)  # a retry
    assert out.created and not again.created and out.unmatched_id == again.unmatched_id
    [row_] = unmatched_rows(db)
    assert (row_.service, row_.environment, row_.status, row_.artifact, row_.commit, row_.actor, row_.source,
            row_.pipeline, row_.release_id) == ("payments", "production", "succeeded", "payments:9.9.9", "abc123",
                                                "U0DEPL", "api", "pipeline:ci", None)
    [nc] = nonconformances(db)
    assert (nc.kind, nc.release_id, nc.service, nc.unmatched_id) == ("deployment_without_approval", None,
                                                                     "payments", row_.id)
    assert out.nonconformances == again.nonconformances == (nc.ref,)
    assert "naming no release" in nc.detail and "without an approved release record" in nc.detail
    assert [e.action for e in events(db)] == ["deployment_unmatched", "nonconformance"]
    # to the release channel (there is no thread), and the register's reminders of its due date
    assert [k for k in outbox_keys(db) if not k.startswith("nc-reminder:")] == [f"nonconformance:{nc.id}"]
    assert sorted(k for k in outbox_keys(db) if k.startswith("nc-reminder:")) == [
        f"nc-reminder:{nc.id}:nc_due", f"nc-reminder:{nc.id}:nc_escalation", f"nc-reminder:{nc.id}:nc_soon"]
    assert row(db, f"nonconformance:{nc.id}").payload["ref"] == nc.ref


def test_outside_production_it_is_kept_but_no_non_conformance(db, clock, policy):
    out = record_unmatched(db, report(environment="staging", untagged=True), "api", "x", clock, policy)
    assert out.created and out.nonconformances == () and "not a production environment" in out.message
    assert len(unmatched_rows(db)) == 1 and nonconformances(db) == []


def test_untagged_and_unmatched_are_two_rows_of_6_2_each_once(db, clock, policy):
    for _ in range(2):
        record_unmatched(db, report(untagged=True), "api", "k", clock, policy)
    assert sorted(k for k, _ in kinds(db)) == ["deployment_without_approval", "untagged_build"]


def test_an_approved_release_of_that_version_is_named_and_it_still_counts(db, clock, policy):
    rid = approved(db, clock, policy)  # payments 2.3.1, production
    out = record_unmatched(db, report(artifact="registry/payments@2.3.1"), "api", "k", clock, policy)
    assert out.matching == f"REL-{rid}" and len(out.nonconformances) == 1
    assert f"/api/v1/releases/REL-{rid}/deployments" in out.message
    [nc] = nonconformances(db)
    assert f"REL-{rid} is approved for this version but the deployment did not go through its gate" in nc.detail
    assert release(db, rid).state == "approved"  # nothing about the release changes


def test_a_named_release_that_does_not_exist_writes_nothing(db, clock, policy):
    before = counts(db)
    with pytest.raises(NotFound):
        record_unmatched(db, report(release_id=99), "api", "k", clock, policy)
    assert counts(db) == before and unmatched_rows(db) == []


def test_a_named_unapproved_release_gets_the_non_conformance_in_its_thread(db, clock, policy):
    from unit_support import new_release
    rid = new_release(db, clock, policy)
    record_unmatched(db, report(release_id=rid), "api", "k", clock, policy)
    [nc] = nonconformances(db)
    assert nc.release_id == rid and f"for REL-{rid} (pending)" in nc.detail
    assert f"note:{rid}:nonconformance:{nc.id}" in outbox_keys(db)


def test_earlier_identities_find_the_first_try(db, clock, policy):
    record_unmatched(db, report(), "api", "body:1", clock, policy)
    again = record_unmatched(db, report(), "api", "body:2", clock, policy, also=("body:1",))
    assert not again.created and len(unmatched_rows(db)) == 1


@pytest.mark.parametrize("artifact, version", [("payments:2.3.1", "2.3.1"), ("reg.io/payments@2.3.1", "2.3.1"),
                                               ("2.3.1", "2.3.1"), (None, None)])
def test_version_of(artifact, version):
    assert version_of(artifact) == version


# --- POST /api/v1/releases/REL-n/deployments ------------------------------------------------------------------

def test_a_success_for_an_approved_release_never_started_through_the_gate_is_one_non_conformance(db, clock, policy):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    ready_to_deploy(db, clock, rid, policy)  # the package is complete: only the gate was walked around
    outs = [report_deployment(db, who(pipeline="ci"), rid, Report(status), clock, policy)
            for status in ("succeeded", "succeeded", "failed")]
    assert all(o.refused and o.data["nonconformance"] == outs[0].data["nonconformance"] for o in outs)
    [nc] = nonconformances(db)
    assert (nc.kind, nc.subject, nc.release_id) == ("deployment_without_approval", f"REL-{rid}:ungated", rid)
    assert "no deployment of it started through the gate" in nc.detail
    assert release(db, rid).state == "approved"


def test_an_ungated_success_without_the_package_is_also_a_skipped_phase_and_absent_documents_once_each(
        db, clock, policy):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    outs = [report_deployment(db, who(pipeline="ci"), rid, Report(status), clock, policy)
            for status in ("succeeded", "succeeded", "failed")]
    assert all(o.refused for o in outs)
    assert sorted(kinds(db)) == [("deployment_without_approval", f"REL-{rid}:ungated"),
                                 ("documentation_absent", f"REL-{rid}:documentation_absent"),
                                 ("test_phase_skipped", f"REL-{rid}:test_phase_skipped")]
    by_kind = {n.kind: n for n in nonconformances(db)}
    assert "mandatory test phase(s) neither passed nor waived: performance, security, regression" in \
        by_kind["test_phase_skipped"].detail
    assert "release documentation absent: release_notes, runbook" in by_kind["documentation_absent"].detail
    assert all(f"reported 'succeeded' by {who(pipeline='ci').audit_name} without passing the gate" in n.detail
               for n in (by_kind["test_phase_skipped"], by_kind["documentation_absent"]))
    assert len(events(db, rid, "nonconformance")) == 3  # a retry, or another outcome, records none again
    assert any(by_kind["test_phase_skipped"].ref in r for r in outs[0].data["reasons"])
    assert outs[0].data["nonconformance"] == by_kind["deployment_without_approval"].id


def test_an_ungated_report_names_only_what_the_package_lacks(db, clock, policy):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    ready_to_deploy(db, clock, rid, policy, skip=("phase:security", "document:runbook"))
    report_deployment(db, who(pipeline="ci"), rid, Report("succeeded", artifact="payments:2.3.1"), clock, policy)
    by_kind = {n.kind: n for n in nonconformances(db)}
    assert by_kind["test_phase_skipped"].detail.endswith("neither passed nor waived: security")
    assert by_kind["documentation_absent"].detail.endswith("release documentation absent: runbook")


def test_outside_production_an_ungated_success_is_refused_as_before(db, clock, policy):
    rid = approved(db, clock, policy, env="staging")
    out = report_deployment(db, who(pipeline="ci"), rid, Report("succeeded"), clock, policy)
    assert out.refused and "has no deployment in progress" in out.message and nonconformances(db) == []


def test_tag_and_commit_time_are_kept_on_the_deployment(db, clock, policy):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    committed = datetime(2026, 12, 8, 16, 0, tzinfo=UTC)
    prov = ready_to_deploy(db, clock, rid, policy)
    out = report_deployment(db, who(pipeline="ci"), rid, Report("started", ALL_CHECKED, tag="v2.3.1",
                                                                 commit_time=committed, **prov), clock, policy)
    assert out.changed and not out.refused
    dep = deployment(db, rid)
    assert (dep.tag, dep.commit_time) == ("v2.3.1", committed)
    [ev] = events(db, rid, "deployment_started")  # the audit trail says it too, not only the row
    assert (ev.after["tag"], ev.after["commit_time"]) == ("v2.3.1", committed.isoformat())
    assert nonconformances(db) == []


def test_a_build_not_from_a_tag_is_one_non_conformance(db, clock, policy):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    prov = ready_to_deploy(db, clock, rid, policy)
    assert report_deployment(db, who(pipeline="ci"), rid, Report("started", ALL_CHECKED, untagged=True, **prov),
                             clock, policy).changed
    report_deployment(db, who(pipeline="ci"), rid, Report("started", ALL_CHECKED, untagged=True, **prov), clock,
                      policy)
    clock.advance(minutes=5)
    report_deployment(db, who(pipeline="ci"), rid, Report("succeeded", untagged=True), clock, policy)
    [nc] = nonconformances(db)
    assert (nc.kind, nc.subject, nc.deployment_id) == ("untagged_build", f"REL-{rid}:untagged", deployment(db, rid).id)
    assert deployment(db, rid).tag is None


def test_a_refused_start_with_no_tag_records_nothing(db, clock, policy):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW - timedelta(hours=2))  # outside the window: the gate says no
    out = report_deployment(db, who(pipeline="ci"), rid, Report("started", ALL_CHECKED, untagged=True), clock, policy)
    assert out.refused and nonconformances(db) == []


def test_no_tag_in_staging_is_no_non_conformance(db, clock, policy):
    rid = deploying(db, clock, policy, env="staging")
    clock.advance(minutes=5)
    assert report_deployment(db, who(pipeline="ci"), rid, Report("succeeded", untagged=True), clock, policy).changed
    assert nonconformances(db) == []


# --- emergency frequency (commands.frequency): counted by deployment, recorded once --------------------------

def test_a_retried_start_of_the_emergency_over_the_limit_is_still_one_non_conformance(db, clock, policy):
    from commands.vote import cast_vote
    from conftest import actor
    from test_deferred_steps import day, deploy_emergency_on
    from test_deployment_outcomes import VOTERS
    from unit_support import assessed, new_release
    deploy_emergency_on(db, clock, policy, day(0))
    deploy_emergency_on(db, clock, policy, day(1))
    clock.set(day(2) - timedelta(hours=2))
    rid = new_release(db, clock, policy, type="emergency", start=f"{day(2):%Y-%m-%d %H:%M}", tz="UTC",
                      duration="60m", summary="third outage")
    assert assessed(db, clock, rid).changed
    for user in VOTERS["emergency"]:
        assert cast_vote(db, actor(user), rid, "go", clock).changed
    clock.set(day(2) + timedelta(minutes=5))
    prov = ready_to_deploy(db, clock, rid, policy)
    first = report_deployment(db, who(pipeline="ci"), rid, Report("started", ALL_CHECKED, **prov), clock, policy)
    again = report_deployment(db, who(pipeline="ci"), rid, Report("started", ALL_CHECKED, **prov), clock, policy)
    assert first.changed and not again.changed
    [nc] = nonconformances(db)
    assert (nc.kind, nc.release_id) == ("emergency_frequency", rid)
    assert len([e for e in events(db, rid, "nonconformance")]) == 1
    clock.set(day(2) + timedelta(minutes=30))
    assert report_deployment(db, who(pipeline="ci"), rid, Report("succeeded"), clock, policy).changed
    fourth = deploy_emergency_on(db, clock, policy, day(3))  # another deployment over the limit: its own
    assert [(n.kind, n.release_id) for n in nonconformances(db)] == [("emergency_frequency", rid),
                                                                      ("emergency_frequency", fourth)]


def test_the_same_delivery_received_by_several_processes_at_once_lands_once(db, clock, policy):
    from test_concurrent_decisions import together
    outs = together(6, lambda i: record_unmatched(db, report(untagged=True), "api", "api:ci:key:race", clock, policy))
    assert sum(o.created for o in outs) == 1 and len({o.unmatched_id for o in outs}) == 1
    assert len(unmatched_rows(db)) == 1
    assert sorted(k for k, _ in kinds(db)) == ["deployment_without_approval", "untagged_build"]
    assert len({o.nonconformances for o in outs}) == 1
