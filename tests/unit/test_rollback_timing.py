"""Rollback timing (QMS 4.5, 6.2): the decision and the restore are two times, and restored − decided over
[deployment] rollback_slo (15m) in production is a non-conformance, recorded on restore, exactly once."""
from __future__ import annotations

from datetime import timedelta

import pytest

from commands.errors import InputError
from commands.pipeline import Report, report_deployment
from commands.policy import Policy
from commands.rollback import RollbackTimes, decide_rollback, parse_instant
from test_deployment_outcomes import DEPLOYER, deploying, deployment, finish, nonconformances, snapshot_of_writes, who
from unit_support import events, release


def slo_ncs(db):
    return [n for n in nonconformances(db) if n.kind == "rollback_slo_exceeded"]


def test_a_one_step_rollback_keeps_the_decision_and_the_restore_it_was_told(db, clock, policy):
    rid = deploying(db, clock, policy)
    started = deployment(db, rid).started_at
    now = clock.advance(minutes=30)
    decided, restored = started + timedelta(minutes=5), started + timedelta(minutes=12)
    out = finish(db, clock, policy, rid, "rolled_back", times=RollbackTimes(decided, restored))
    assert out.changed
    dep = deployment(db, rid)
    assert (dep.rollback_decided_at, dep.restored_at, dep.finished_at) == (decided, restored, now)
    assert dep.rollback_decided_by == DEPLOYER
    [ev] = events(db, rid, "deployment_rolled_back")
    assert (ev.after["rollback_decided_at"], ev.after["restored_at"]) == (decided.isoformat(), restored.isoformat())
    assert slo_ncs(db) == []  # 7 minutes: within the SLO


def test_a_pipeline_rollback_over_15_minutes_is_one_non_conformance_however_often_reported(db, clock, policy):
    rid = deploying(db, clock, policy)
    started = deployment(db, rid).started_at
    clock.advance(minutes=40)
    times = RollbackTimes(started + timedelta(minutes=2), started + timedelta(minutes=18))
    for _ in range(3):  # a pipeline retrying after a timeout
        out = report_deployment(db, who(pipeline="ci"), rid, Report("rolled_back", times=times), clock, policy)
        assert not out.refused
    [nc] = slo_ncs(db)
    assert (nc.release_id, nc.service, nc.deployment_id) == (rid, "payments", deployment(db, rid).id)
    assert "took 16m" in nc.detail and "the target is 15m" in nc.detail
    assert len([e for e in events(db, rid, "nonconformance") if e.after["kind"] == "rollback_slo_exceeded"]) == 1
    assert release(db, rid).state == "rolled_back"


def test_a_slash_rollback_then_restore_16_minutes_later_is_over_the_slo(db, clock, policy):
    rid = deploying(db, clock, policy)
    decided = clock.advance(minutes=5)
    assert decide_rollback(db, who("U0OPS"), rid, "p95 over SLO", clock).changed
    assert slo_ncs(db) == []  # nothing is known until the restore
    restored = clock.advance(minutes=16)
    assert finish(db, clock, policy, rid, "rolled_back").changed
    dep = deployment(db, rid)
    assert (dep.rollback_decided_at, dep.rollback_decided_by, dep.restored_at) == (decided, "U0OPS", restored)
    [nc] = slo_ncs(db)
    assert nc.at == restored and nc.reported_by == DEPLOYER
    assert finish(db, clock, policy, rid, "rolled_back").message.endswith("already finished: rolled_back.")
    assert len(slo_ncs(db)) == 1


@pytest.mark.parametrize("minutes, over", [(14, False), (15, False), (16, True)])
def test_the_slo_boundary(db, clock, policy, minutes, over):
    rid = deploying(db, clock, policy)
    clock.advance(minutes=3)
    decide_rollback(db, who(), rid, "errors", clock)
    clock.advance(minutes=minutes)
    finish(db, clock, policy, rid, "rolled_back")
    assert len(slo_ncs(db)) == (1 if over else 0)


def test_the_slo_comes_from_policy(db, clock):
    strict = Policy.from_mapping({"deployment": {"rollback_slo": "5m"}})
    rid = deploying(db, clock, strict)
    clock.advance(minutes=3)
    decide_rollback(db, who(), rid, "errors", clock)
    clock.advance(minutes=6)
    finish(db, clock, strict, rid, "rolled_back")
    [nc] = slo_ncs(db)
    assert "the target is 5m" in nc.detail


def test_outside_production_a_slow_rollback_is_no_non_conformance(db, clock, policy):
    rid = deploying(db, clock, policy, env="staging")
    clock.advance(minutes=1)
    decide_rollback(db, who(), rid, "errors", clock)
    clock.advance(minutes=40)
    assert finish(db, clock, policy, rid, "rolled_back").changed
    assert slo_ncs(db) == []


def test_without_times_and_without_a_decision_both_are_the_report_time(db, clock, policy):
    # the rule when nothing better is known (QMS 4.5 measures from the decision; none was recorded)
    rid = deploying(db, clock, policy)
    now = clock.advance(minutes=50)
    finish(db, clock, policy, rid, "rolled_back")
    dep = deployment(db, rid)
    assert dep.rollback_decided_at == dep.restored_at == now
    assert slo_ncs(db) == []


def test_only_the_restore_said_takes_the_earlier_decision(db, clock, policy):
    rid = deploying(db, clock, policy)
    decided = clock.advance(minutes=2)
    decide_rollback(db, who(), rid, "errors", clock)
    clock.advance(minutes=30)
    restored = decided + timedelta(minutes=20)
    finish(db, clock, policy, rid, "rolled_back", times=RollbackTimes(restored_at=restored))
    dep = deployment(db, rid)
    assert (dep.rollback_decided_at, dep.restored_at) == (decided, restored)
    assert len(slo_ncs(db)) == 1


@pytest.mark.parametrize("case", ["restored_before_decided", "future", "before_start"])
def test_times_that_cannot_be_true_are_bad_input_and_write_nothing(db, clock, policy, case):
    rid = deploying(db, clock, policy)
    started = deployment(db, rid).started_at
    now = clock.advance(minutes=20)
    times = {"restored_before_decided": RollbackTimes(now - timedelta(minutes=5), now - timedelta(minutes=10)),
             "future": RollbackTimes(now - timedelta(minutes=5), now + timedelta(minutes=10)),
             "before_start": RollbackTimes(started - timedelta(minutes=1), now)}[case]
    before = snapshot_of_writes(db, rid)
    with pytest.raises(InputError) as exc:
        finish(db, clock, policy, rid, "rolled_back", times=times)
    assert {"restored_before_decided": "before the rollback was decided", "future": "is in the future",
            "before_start": "before the deployment started"}[case] in exc.value.message
    assert snapshot_of_writes(db, rid) == before
    assert release(db, rid).state == "deploying"


def test_a_little_clock_skew_is_accepted(db, clock, policy):
    rid = deploying(db, clock, policy)
    now = clock.advance(minutes=10)
    finish(db, clock, policy, rid, "rolled_back", times=RollbackTimes(now - timedelta(minutes=4),
                                                                       now + timedelta(seconds=90)))
    assert deployment(db, rid).restored_at == now + timedelta(seconds=90)


def test_rolled_back_while_stabilising_with_times_decides_at_the_reported_decision(db, clock, policy):
    rid = deploying(db, clock, policy)
    assert finish(db, clock, policy, rid, "success").changed
    now = clock.advance(minutes=40)
    times = RollbackTimes(now - timedelta(minutes=25), now - timedelta(minutes=3))
    out = report_deployment(db, who(pipeline="ci"), rid, Report("rolled_back", note="canary red", times=times),
                            clock, policy)
    assert out.changed
    dep = deployment(db, rid)
    assert (dep.rollback_decided_at, dep.restored_at) == (times.decided_at, times.restored_at)
    [nc] = slo_ncs(db)  # 22 minutes
    assert "took 22m" in nc.detail


@pytest.mark.parametrize("text, ok", [("2026-12-09T10:05:00Z", True), ("2026-12-09T11:05:00+01:00", True),
                                      ("2026-12-09T10:05:00", False), ("yesterday", False), ("", False)])
def test_instants_need_an_offset(text, ok):
    if ok:
        assert parse_instant(text, "restored_at").isoformat() == "2026-12-09T10:05:00+00:00"
    else:
        with pytest.raises(InputError, match="restored_at"):
            parse_instant(text, "restored_at")


# --- the Slack form's times: the person's zone, each wrong field named -----------------------------------------

def test_form_times_are_read_in_the_person_zone():
    from datetime import datetime, timezone
    from commands.rollback import form_times
    now = datetime(2026, 12, 9, 10, 30, tzinfo=timezone.utc)
    t = form_times("2026-12-09 05:05", "2026-12-09 05:20", "America/New_York", now)
    assert (t.decided_at, t.restored_at) == (datetime(2026, 12, 9, 10, 5, tzinfo=timezone.utc),
                                             datetime(2026, 12, 9, 10, 20, tzinfo=timezone.utc))


@pytest.mark.parametrize("decided, restored, field", [("2026-12-09 10:20", "2026-12-09 10:10", "restored"),
                                                      ("nope", "2026-12-09 10:10", "decided"),
                                                      ("2026-12-09 10:20", "2026-12-09 11:20", "restored")])
def test_form_times_name_the_wrong_field(decided, restored, field):
    from datetime import datetime, timezone
    from commands.errors import FieldErrors
    from commands.rollback import form_times
    with pytest.raises(FieldErrors) as exc:
        form_times(decided, restored, "UTC", datetime(2026, 12, 9, 10, 30, tzinfo=timezone.utc))
    assert set(exc.value.errors) == {field}


def test_the_rollback_form_keeps_within_slack_limits():
    from datetime import datetime, timezone
    from bot.messages.rollback import rollback_modal
    from storage.models import Release
    r = Release(id=2**31 - 1, service="s" * 80, version="<!channel>" + "v" * 190, type="minor", requested_type="minor",
                effective_type="minor", summary="x", requester_id="U0DEV", tz="UTC",
                start_at=datetime(2026, 12, 9, tzinfo=timezone.utc),
                end_at=datetime(2026, 12, 9, 1, tzinfo=timezone.utc))
    at = datetime(2026, 12, 9, 10, 5, tzinfo=timezone.utc)
    view = rollback_modal(r, "C0RELEASES", at, at, "Pacific/Chatham", "15m")
    assert len(view["title"]["text"]) <= 24 and len(view["blocks"]) <= 100
    assert len(view["private_metadata"]) <= 3000
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in view["blocks"])
    assert "<!channel>" not in str(view["blocks"])
    assert [b["element"]["initial_value"] for b in view["blocks"] if b.get("block_id") in ("decided", "restored")] \
        == ["2026-12-09 23:50", "2026-12-09 23:50"]  # Chatham is UTC+13:45 in December


def test_rolled_back_while_stabilising_with_only_the_restore_said(db, clock, policy):
    rid = deploying(db, clock, policy)
    assert finish(db, clock, policy, rid, "success").changed
    now = clock.advance(minutes=40)
    out = report_deployment(db, who(pipeline="ci"), rid,
                            Report("rolled_back", times=RollbackTimes(restored_at=now - timedelta(minutes=4))),
                            clock, policy)
    assert out.changed
    dep = deployment(db, rid)
    assert dep.rollback_decided_at == dep.restored_at == now - timedelta(minutes=4)
    assert slo_ncs(db) == []
