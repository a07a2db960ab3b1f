"""How a deployment ends (QMS §4.4 steps 4–6, §4.5, §4.6, §6.2): decide_rollback, finish_deployment, the
follow-up and retrospective it owes, and deployments of releases that were never approved."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, select

from commands.deploy import CHECKLIST, Deployer, finish_deployment, never_approved
from commands.rollback import decide_rollback
from commands.errors import InputError
from commands.vote import cast_vote, withdraw_vote
from conftest import actor
from storage.models import Deployment, NonConformance, Outbox, Task
from unit_support import start, REQUESTER, actions, assessed, counts, events, new_release, outbox_keys, release
from bot.times import iso_times

UTC = timezone.utc
WINDOW = dict(start="2026-12-09 10:00", tz="UTC", duration="60m")  # a Wednesday, past every lead time
IN_WINDOW = datetime(2026, 12, 9, 10, 5, tzinfo=UTC)
ALL_CHECKED = {key: True for key, _ in CHECKLIST}
DEPLOYER = "U0DEPL"  # holds platform_lead, a deploying role (QMS 3.4), and nothing else
VOTERS = {"minor": ("U0RM", "U0QA"), "patch": ("U0EL", "U0QA"), "major": ("U0CAB1", "U0CAB2", "U0RM", "U0SEC"),
          "security": ("U0SEC", "U0RM"), "emergency": ("U0RM", "U0EL"), "infrastructure": ("U0PL",)}


def who(user=DEPLOYER, pipeline=None) -> Deployer:
    roles = frozenset({"platform_lead"}) if user == DEPLOYER else actor(user).roles
    return Deployer(user, roles, pipeline=pipeline)


def approved(db, clock, policy, type_="minor", **fields) -> int:
    rid = new_release(db, clock, policy, type=type_, **{**WINDOW, **fields})
    if type_ == "emergency":
        assert assessed(db, clock, rid).changed
    for user in VOTERS[type_]:
        assert cast_vote(db, actor(user), rid, "go", clock).changed
    assert release(db, rid).state == "approved"
    return rid


def deploying(db, clock, policy, type_="minor", at=IN_WINDOW, **fields) -> int:
    rid = approved(db, clock, policy, type_, **fields)
    clock.set(at)
    out = start(db, clock, policy, rid, who(pipeline="deploy"))
    assert out.changed, out.message
    return rid


def finish(db, clock, policy, rid, outcome, user=DEPLOYER, pipeline=None, **kw):
    return finish_deployment(db, who(user, pipeline), rid, outcome, clock, policy, **kw)


def deployment(db, rid) -> Deployment:
    with Session(db, expire_on_commit=False) as s:
        return s.exec(select(Deployment).where(Deployment.release_id == rid)).one()


def tasks(db, rid) -> dict[str, Task]:
    with Session(db, expire_on_commit=False) as s:
        return {t.kind: t for t in s.exec(select(Task).where(Task.release_id == rid))}


def row(db, key) -> Outbox | None:
    with Session(db, expire_on_commit=False) as s:
        return s.exec(select(Outbox).where(Outbox.key == key)).first()


def reminder_keys(db, rid) -> list[str]:
    return sorted(k for k in outbox_keys(db) if k.startswith(f"reminder:{rid}:") and ":approval_nudge:" not in k)


def nonconformances(db) -> list[NonConformance]:
    with Session(db, expire_on_commit=False) as s:
        return list(s.exec(select(NonConformance).order_by(NonConformance.id)))


def snapshot_of_writes(db, rid):
    return counts(db), outbox_keys(db), tasks(db, rid).keys(), release(db, rid).revision


# --- success: the stabilisation window -----------------------------------------------------------------------------

@pytest.mark.parametrize("type_, window", [
    ("patch", timedelta(minutes=30)), ("minor", timedelta(hours=2)), ("major", timedelta(hours=24)),
    ("infrastructure", timedelta(hours=24)), ("security", timedelta(minutes=30)),
    # QMS 4.6: an emergency is validated after 30 minutes, but its stabilisation is the 24-hour extended monitoring
    ("emergency", timedelta(hours=24)),
])
def test_success_starts_the_stabilisation_window_of_the_type(db, clock, policy, type_, window):
    rid = deploying(db, clock, policy, type_)
    now = clock.advance(minutes=25)
    keys0 = outbox_keys(db)
    out = finish(db, clock, policy, rid, "success", note="smoke tests green", link="https://ci.test/p/7")
    assert out.changed and not out.refused
    ends = now + window
    assert f"Stabilisation runs until {ends:%Y-%m-%dT%H:%M:%SZ}" in iso_times(out.message)
    r = release(db, rid)
    assert r.state == "stabilising" and r.updated_at == now
    dep = deployment(db, rid)
    assert (dep.outcome, dep.finished_at, dep.stabilisation_ends_at) == ("success", now, ends)
    assert (dep.note, dep.link) == ("smoke tests green", "https://ci.test/p/7")
    assert (dep.rollback_decided_at, dep.restored_at) == (None, None)
    [ev] = events(db, rid, "deployment_success")
    assert (ev.actor, ev.at) == (DEPLOYER, now)
    assert ev.before["state"] == "deploying" and ev.after["state"] == "stabilising"
    assert ev.after["stabilisation_ends_at"] == ends.isoformat()
    assert (ev.after["note"], ev.after["link"]) == ("smoke tests green", "https://ci.test/p/7")
    ask = row(db, f"reminder:{rid}:signoff_request:")
    assert (ask.kind, ask.due_at, ask.created_at, ask.stream) == ("reminder", ends, now, None)
    assert ask.payload == {"reminder": "signoff_request"}
    new = [k for k in outbox_keys(db) if k not in keys0]
    assert f"approval:{rid}:event:{ev.id}" in new
    assert row(db, f"note:{rid}:deployment_success:").payload == {"event": "deployment_success"}


# --- rollback ------------------------------------------------------------------------------------------------------

def test_rolled_back_without_a_prior_decision_is_decided_and_restored_at_once(db, clock, policy):
    rid = deploying(db, clock, policy)
    now = clock.advance(minutes=12)
    out = finish(db, clock, policy, rid, "rolled_back", note="error rate +25%")
    assert out.changed and out.message == f"REL-{rid} recorded as rolled back."
    assert release(db, rid).state == "rolled_back"
    dep = deployment(db, rid)
    assert (dep.outcome, dep.finished_at) == ("rolled_back", now)
    assert (dep.rollback_decided_at, dep.rollback_decided_by, dep.restored_at) == (now, DEPLOYER, now)
    assert dep.stabilisation_ends_at is None
    [ev] = events(db, rid, "deployment_rolled_back")
    assert ev.after["rollback_decided_at"] == now.isoformat() and ev.after["restored_at"] == now.isoformat()
    assert row(db, f"note:{rid}:deployment_rolled_back:") is not None
    assert row(db, f"reminder:{rid}:signoff_request:") is None  # nothing to sign off
    assert "rollback_decided" not in actions(db, rid)


def test_rolled_back_after_a_rollback_decision_keeps_when_and_who_decided(db, clock, policy):
    rid = deploying(db, clock, policy)
    decided = clock.advance(minutes=10)
    out = decide_rollback(db, who("U0OPS"), rid, "p95 over SLO for 5 min", clock)
    assert out.changed and not out.refused
    assert release(db, rid).state == "rolling_back"
    dep = deployment(db, rid)
    assert (dep.rollback_decided_at, dep.rollback_decided_by, dep.restored_at) == (decided, "U0OPS", None)
    [ev] = events(db, rid, "rollback_decided")
    assert (ev.actor, ev.reason, ev.at) == ("U0OPS", "p95 over SLO for 5 min", decided)
    assert (ev.before["state"], ev.after["state"]) == ("deploying", "rolling_back")
    assert row(db, f"note:{rid}:rollback_decided:").payload == {"event": "rollback_decided", "by": "U0OPS",
                                                                 "reason": "p95 over SLO for 5 min"}
    assert row(db, f"approval:{rid}:event:{ev.id}") is not None
    restored = clock.advance(minutes=9)
    assert finish(db, clock, policy, rid, "rolled_back").changed
    dep = deployment(db, rid)
    assert (dep.rollback_decided_at, dep.rollback_decided_by, dep.restored_at) == (decided, "U0OPS", restored)
    assert (dep.outcome, dep.finished_at) == ("rolled_back", restored)
    assert release(db, rid).state == "rolled_back"
    [ev] = events(db, rid, "deployment_rolled_back")
    assert ev.after["rollback_decided_at"] == decided.isoformat()
    assert ev.after["restored_at"] == restored.isoformat()


def test_a_rollback_decision_needs_a_reason(db, clock, policy):
    rid = deploying(db, clock, policy)
    before = snapshot_of_writes(db, rid)
    with pytest.raises(InputError) as exc:
        decide_rollback(db, who(), rid, "   ", clock)
    assert exc.value.field == "reason"
    assert snapshot_of_writes(db, rid) == before
    assert release(db, rid).state == "deploying"


@pytest.mark.parametrize("stage", ["approved", "rolled_back"])
def test_a_rollback_is_refused_when_nothing_is_deployed(db, clock, policy, stage):
    if stage == "approved":
        rid = approved(db, clock, policy)
    else:
        rid = deploying(db, clock, policy)
        finish(db, clock, policy, rid, "rolled_back")
    out = decide_rollback(db, who(), rid, "error spike", clock)
    assert out.refused and not out.changed
    assert release(db, rid).state == stage
    ev = events(db, rid, "rollback_refused")[-1]
    assert ev.after == {"code": "not_deployed"}
    assert ev.reason == out.message


def test_a_rollback_during_stabilisation_ends_rolled_back_and_owes_a_retrospective(db, clock, policy):
    """QMS §4.5: triggers are watched for throughout the stabilisation window."""
    rid = deploying(db, clock, policy)
    succeeded = clock.advance(minutes=20)
    finish(db, clock, policy, rid, "success")
    decided = clock.advance(minutes=40)  # inside the 2h window
    assert decide_rollback(db, who("U0OPS"), rid, "error rate +15% for 5 min", clock).changed
    assert release(db, rid).state == "rolling_back"
    assert finish(db, clock, policy, rid, "success").refused  # the earlier success no longer stands
    restored = clock.advance(minutes=10)
    out = finish(db, clock, policy, rid, "rolled_back")
    assert out.changed and not out.refused
    assert release(db, rid).state == "rolled_back"
    dep = deployment(db, rid)
    assert (dep.outcome, dep.finished_at, dep.restored_at) == ("rolled_back", restored, restored)
    assert (dep.rollback_decided_at, dep.rollback_decided_by) == (decided, "U0OPS")
    owed = tasks(db, rid)
    assert set(owed) == {"followup", "retrospective"}
    assert owed["followup"].due_at == succeeded + timedelta(hours=24)  # owed once, from the first finish
    assert_retrospective(db, rid, datetime(2026, 12, 16, 11, 15, tzinfo=UTC))  # 5 business days after restoring
    assert actions(db, rid)[-2:] == ["finish_refused", "deployment_rolled_back"]


@pytest.mark.parametrize("user, pipeline, allowed", [
    (DEPLOYER, None, True),
    ("U0OPS", None, True),  # on-call
    ("U0RM", None, True),
    ("U0QA", None, False),
    (REQUESTER, None, False),
    ("U0DEV2", None, False),
    ("U0DEV2", "deploy-prod", False),  # a pipeline's report is held to the same rule as a click
    ("U0OPS", "deploy-prod", True),
])
def test_only_the_deployer_operations_or_a_release_manager_decide_a_rollback(db, clock, policy, user, pipeline,
                                                                             allowed):
    """QMS §4.5: "the on-call engineer or deploying engineer initiates rollback"; a bystander cannot put a
    deployment into rolling_back (after which only outcome=rolled_back could be recorded)."""
    rid = deploying(db, clock, policy)
    out = decide_rollback(db, who(user, pipeline), rid, "error rate +20%", clock)
    if allowed:
        assert out.changed and release(db, rid).state == "rolling_back"
        assert deployment(db, rid).rollback_decided_by == user
    else:
        assert out.refused and not out.changed
        assert release(db, rid).state == "deploying"
        assert deployment(db, rid).rollback_decided_at is None
        ev = events(db, rid, "rollback_refused")[-1]
        name = f"{user} via pipeline:{pipeline}" if pipeline else user
        assert (ev.actor, ev.after, ev.reason) == (name, {"code": "not_deployer"}, out.message)


# --- failure -------------------------------------------------------------------------------------------------------

def test_failed(db, clock, policy):
    rid = deploying(db, clock, policy)
    now = clock.advance(minutes=3)
    out = finish(db, clock, policy, rid, "failed", note="migration aborted")
    assert out.changed and out.message == f"REL-{rid} recorded as failed."
    assert release(db, rid).state == "failed"
    dep = deployment(db, rid)
    assert (dep.outcome, dep.finished_at, dep.note) == ("failed", now, "migration aborted")
    assert (dep.restored_at, dep.stabilisation_ends_at) == (None, None)
    assert events(db, rid, "deployment_failed")[0].actor == DEPLOYER
    assert row(db, f"note:{rid}:deployment_failed:") is not None


# --- refusals ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("outcome", ["success", "rolled_back", "failed"])
def test_finish_is_refused_when_nothing_is_deploying(db, clock, policy, outcome):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    before = (outbox_keys(db), release(db, rid).revision)
    out = finish(db, clock, policy, rid, outcome)
    assert out.refused and not out.changed
    assert out.message == f"REL-{rid} has no deployment in progress (it is approved)."
    ev = events(db, rid, "finish_refused")[-1]
    assert ev.after == {"code": "not_deploying", "outcome": outcome}
    assert (ev.actor, ev.reason) == (DEPLOYER, out.message)
    assert (outbox_keys(db), release(db, rid).revision) == before
    assert tasks(db, rid) == {}


def test_a_different_outcome_after_the_end_is_refused(db, clock, policy):
    rid = deploying(db, clock, policy)
    finish(db, clock, policy, rid, "failed")
    out = finish(db, clock, policy, rid, "success")
    assert out.refused
    assert release(db, rid).state == "failed"
    assert deployment(db, rid).outcome == "failed"
    assert events(db, rid, "finish_refused")[-1].after["code"] == "not_deploying"


@pytest.mark.parametrize("outcome", ["success", "failed"])
def test_while_rolling_back_only_rolled_back_can_be_recorded(db, clock, policy, outcome):
    rid = deploying(db, clock, policy)
    decide_rollback(db, who(), rid, "health checks failing", clock)
    out = finish(db, clock, policy, rid, outcome)
    assert out.refused
    assert "record outcome=rolled_back" in out.message
    assert events(db, rid, "finish_refused")[-1].after == {"code": "rolling_back", "outcome": outcome}
    assert release(db, rid).state == "rolling_back"
    assert deployment(db, rid).outcome is None
    assert tasks(db, rid) == {}
    assert finish(db, clock, policy, rid, "rolled_back").changed
    assert release(db, rid).state == "rolled_back"


@pytest.mark.parametrize("user, pipeline, allowed", [
    (DEPLOYER, None, True),
    ("U0OPS", None, True),  # on-call
    ("U0RM", None, True),  # a release manager, even one who voted Go
    ("U0QA", None, False),
    (REQUESTER, None, False),
    ("U0DEV2", None, False),
    ("U0DEV2", "deploy-prod", False),  # a pipeline's report is held to the same rule as a click
    ("U0RM", "deploy-prod", True),
    ("pipeline:deploy-prod", "deploy-prod", False),  # the pipeline as itself did not start it
])
def test_who_may_record_the_outcome(db, clock, policy, user, pipeline, allowed):
    rid = deploying(db, clock, policy)
    out = finish(db, clock, policy, rid, "success", user=user, pipeline=pipeline)
    name = who(user, pipeline).audit_name
    if allowed:
        assert out.changed and release(db, rid).state == "stabilising"
        assert events(db, rid, "deployment_success")[0].actor == name
    else:
        assert out.refused
        assert out.message == f"Only the deployer, operations or a release manager can record how REL-{rid} ended."
        ev = events(db, rid, "finish_refused")[-1]
        assert (ev.actor, ev.after) == (name, {"code": "not_deployer", "outcome": "success"})
        assert release(db, rid).state == "deploying"
        assert deployment(db, rid).outcome is None


@pytest.mark.parametrize("bad", ["succeeded", "", "SUCCESS", "rolled back"])
def test_a_bad_outcome_is_an_input_error(db, clock, policy, bad):
    rid = deploying(db, clock, policy)
    before = snapshot_of_writes(db, rid)
    with pytest.raises(InputError) as exc:
        finish(db, clock, policy, rid, bad)
    assert exc.value.field == "outcome"
    assert snapshot_of_writes(db, rid) == before
    assert release(db, rid).state == "deploying"


@pytest.mark.parametrize("outcome", ["success", "rolled_back", "failed"])
def test_a_repeated_identical_finish_is_a_no_op(db, clock, policy, outcome):
    rid = deploying(db, clock, policy)
    first_at = clock.advance(minutes=5)
    finish(db, clock, policy, rid, outcome)
    before = snapshot_of_writes(db, rid)
    clock.advance(minutes=1)
    out = finish(db, clock, policy, rid, outcome)  # a double click or a pipeline retry
    assert not out.changed and not out.refused
    assert out.message == f"REL-{rid} already finished: {outcome}."
    assert snapshot_of_writes(db, rid) == before
    assert deployment(db, rid).finished_at == first_at


# --- the follow-up every deployment owes -----------------------------------------------------------------------------

@pytest.mark.parametrize("outcome", ["success", "rolled_back", "failed"])
def test_every_outcome_owes_a_follow_up_in_24_hours_escalated_after_48(db, clock, policy, outcome):
    rid = deploying(db, clock, policy)
    now = clock.advance(minutes=30)
    finish(db, clock, policy, rid, outcome)
    t = tasks(db, rid)["followup"]
    assert (t.due_at, t.created_at, t.done_at, t.done_by) == (now + timedelta(hours=24), now, None, None)
    first = row(db, f"reminder:{rid}:followup:")
    assert (first.kind, first.due_at) == ("reminder", now + timedelta(hours=24))
    assert first.payload == {"reminder": "followup"}
    escalation = row(db, f"reminder:{rid}:followup_escalation:")
    assert escalation.due_at == now + timedelta(hours=48)
    assert escalation.payload == {"reminder": "followup_escalation"}


# --- the retrospective -------------------------------------------------------------------------------------------

def assert_retrospective(db, rid, due):
    t = tasks(db, rid)["retrospective"]
    assert t.due_at == due
    assert t.due_at.utcoffset() == timedelta(0)
    assert row(db, f"reminder:{rid}:retrospective_soon:").due_at == due - timedelta(hours=24)
    assert row(db, f"reminder:{rid}:retrospective_due:").due_at == due
    assert row(db, f"reminder:{rid}:retrospective_due:").payload == {"reminder": "retrospective_due"}


def test_a_successful_major_release_owes_a_retrospective_in_5_business_days(db, clock, policy):
    rid = deploying(db, clock, policy, "major")
    clock.advance(minutes=25)  # Wednesday 2026-12-09 10:30 UTC
    finish(db, clock, policy, rid, "success")
    assert_retrospective(db, rid, datetime(2026, 12, 16, 10, 30, tzinfo=UTC))  # the next Wednesday
    assert set(tasks(db, rid)) == {"followup", "retrospective"}


@pytest.mark.parametrize("outcome", ["rolled_back", "failed"])
def test_any_rolled_back_or_failed_deployment_owes_a_retrospective(db, clock, policy, outcome):
    rid = deploying(db, clock, policy, "patch")
    clock.advance(minutes=25)
    finish(db, clock, policy, rid, outcome)
    assert_retrospective(db, rid, datetime(2026, 12, 16, 10, 30, tzinfo=UTC))


def test_a_successful_minor_release_owes_no_retrospective(db, clock, policy):
    rid = deploying(db, clock, policy, "minor")
    clock.advance(minutes=25)
    finish(db, clock, policy, rid, "success")
    assert set(tasks(db, rid)) == {"followup"}
    assert reminder_keys(db, rid) == [f"reminder:{rid}:followup:", f"reminder:{rid}:followup_escalation:",
                                      f"reminder:{rid}:signoff_request:", f"reminder:{rid}:stuck_deployment:",
                                      f"reminder:{rid}:stuck_escalation:"]


def test_a_successful_emergency_release_owes_a_retrospective(db, clock, policy):
    """QMS §4.6, Documentation: the emergency track defers the "retrospective review within 5 business days"."""
    rid = deploying(db, clock, policy, "emergency")
    clock.advance(minutes=25)
    finish(db, clock, policy, rid, "success")
    assert_retrospective(db, rid, datetime(2026, 12, 16, 10, 30, tzinfo=UTC))


def test_retrospective_from_a_friday_skips_the_weekend(db, clock, policy):
    rid = deploying(db, clock, policy, "minor", at=datetime(2026, 12, 11, 10, 5, tzinfo=UTC),
                    start="2026-12-11 10:00")  # a Friday
    clock.advance(minutes=25)
    finish(db, clock, policy, rid, "rolled_back")
    assert_retrospective(db, rid, datetime(2026, 12, 18, 10, 30, tzinfo=UTC))  # the next Friday, not Wednesday


def test_retrospective_counts_business_days_in_the_release_zone_friday_evening_in_new_york(db, clock, policy):
    # Friday 19:00 in New York is already Saturday in UTC; counted in UTC it would land on Friday 00:30 UTC.
    rid = deploying(db, clock, policy, "major", at=datetime(2026, 12, 12, 0, 5, tzinfo=UTC),
                    start="2026-12-11 19:00", tz="America/New_York")
    clock.advance(minutes=25)  # Friday 19:30 EST
    finish(db, clock, policy, rid, "success")
    assert_retrospective(db, rid, datetime(2026, 12, 19, 0, 30, tzinfo=UTC))  # Friday 2026-12-18 19:30 EST


def test_retrospective_counts_business_days_in_the_release_zone_monday_morning_in_auckland(db, clock, policy):
    # Monday 09:00 in Auckland is Sunday 20:00 UTC.
    rid = deploying(db, clock, policy, "minor", at=datetime(2026, 12, 13, 20, 5, tzinfo=UTC),
                    start="2026-12-14 09:00", tz="Pacific/Auckland")
    clock.advance(minutes=25)
    finish(db, clock, policy, rid, "failed")
    assert_retrospective(db, rid, datetime(2026, 12, 20, 20, 30, tzinfo=UTC))  # Monday 2026-12-21 09:30 NZDT


def test_retrospective_keeps_local_time_across_the_end_of_summer_time(db, clock, policy):
    clock.set(datetime(2026, 10, 1, 9, 0, tzinfo=UTC))
    rid = deploying(db, clock, policy, "minor", at=datetime(2026, 10, 23, 8, 5, tzinfo=UTC),
                    start="2026-10-23 09:00", tz="Europe/London")  # Friday 09:00 BST
    clock.advance(minutes=25)  # 09:30 BST
    finish(db, clock, policy, rid, "rolled_back")
    assert_retrospective(db, rid, datetime(2026, 10, 30, 9, 30, tzinfo=UTC))  # 09:30 GMT


# --- deployments of releases never approved (QMS §6.2) ------------------------------------------------------------

def test_never_approved_until_the_first_approval(db, clock, policy):
    rid = new_release(db, clock, policy, **WINDOW)
    assert never_approved(db, rid) is True
    cast_vote(db, actor("U0RM"), rid, "go", clock)
    assert never_approved(db, rid) is True
    cast_vote(db, actor("U0QA"), rid, "go", clock)
    assert never_approved(db, rid) is False
    withdraw_vote(db, actor("U0QA"), rid, clock)  # approval revoked: pending again, but it was approved once
    assert release(db, rid).state == "pending"
    assert never_approved(db, rid) is False
