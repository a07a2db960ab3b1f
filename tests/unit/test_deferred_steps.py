"""An emergency after its deployment (QMS 4.6, issue 10 items 6, 8, 9): validation by on-call after the minimum
monitoring, the deferred steps with their owners and deadlines, the non-conformance of a step still open at its
deadline, and the frequency rule counted by deployments."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, select

from commands import deferred
from commands.aftercare import sign_off, still_open, validate
from commands.deferred import record_step
from commands.errors import InputError
from commands.policy import Policy, PolicyError
from conftest import ROLES, actor
from storage.db import transaction
from storage.models import Emergency, NonConformance, Task
from test_deployment_outcomes import deploying, finish, nonconformances, row, who
from commands.rollback import decide_rollback
from bot.times import iso_times
from unit_support import assessed, counts, events, new_release, outbox_keys, release, start

UTC = timezone.utc
# a Friday afternoon: the 24-hour steps fall on Saturday, the retrospective's five business days end next Friday
FRIDAY = dict(start="2026-12-11 16:00", tz="UTC", duration="60m")
DEPLOYING_AT = datetime(2026, 12, 11, 16, 5, tzinfo=UTC)
FINISHED_AT = datetime(2026, 12, 11, 16, 35, tzinfo=UTC)


def deployed(db, clock, policy, **fields) -> int:
    rid = deploying(db, clock, policy, "emergency", at=DEPLOYING_AT, **{**FRIDAY, **fields})
    clock.set(FINISHED_AT)
    assert finish(db, clock, policy, rid, "success").changed
    return rid


def steps(db, rid) -> dict[str, Task]:
    with Session(db, expire_on_commit=False) as s:
        return {t.kind: t for t in s.exec(select(Task).where(Task.release_id == rid))}


def emergency_of(db, rid) -> Emergency:
    with Session(db, expire_on_commit=False) as s:
        return s.exec(select(Emergency).where(Emergency.release_id == rid)).one()


def check_deadline(db, rid, step, now) -> str:
    with transaction(db) as session:
        return deferred.deadline_reached(session, rid, step, now, Policy.default())


# --- the deferred steps: owners and deadlines from the finish ------------------------------------------------------

def test_each_deferred_step_is_owed_from_the_finish_with_its_owner_and_deadline_across_a_weekend(db, clock, policy):
    rid = deployed(db, clock, policy)
    owed = steps(db, rid)
    due = {k: t.due_at for k, t in owed.items() if k in deferred.STEPS}
    assert due == {
        "change_request": datetime(2026, 12, 11, 20, 35, tzinfo=UTC),  # 4 hours
        "planning": datetime(2026, 12, 12, 16, 35, tzinfo=UTC),  # 24 hours, a Saturday: hours are not business days
        "test_review": datetime(2026, 12, 12, 16, 35, tzinfo=UTC),
        "docs": datetime(2026, 12, 12, 16, 35, tzinfo=UTC),
        # five business days from a Friday: Mon, Tue, Wed, Thu, Fri
        "retrospective": datetime(2026, 12, 18, 16, 35, tzinfo=UTC),
    }
    assert {k: t.owner_id for k, t in owed.items() if k in deferred.STEPS} == {
        "change_request": "U0DEV", "planning": "U0DEV", "test_review": "role:qa_lead", "docs": "U0DEV",
        "retrospective": "U0DEV"}
    assert "followup" in owed  # the 24-hour follow-up every deployment owes stays: the extended monitoring evidence
    keys = outbox_keys(db)
    for step in ("change_request", "planning", "test_review", "docs"):
        assert {f"reminder:{rid}:deferred_soon:{step}", f"reminder:{rid}:deferred_due:{step}"} <= set(keys)
    for step in deferred.STEPS:
        assert f"reminder:{rid}:deferred_escalation:{step}" in keys and f"deferred_deadline:{rid}:{step}" in keys
    # reminded an hour before a 4-hour deadline, and escalated an hour after it
    assert row(db, f"reminder:{rid}:deferred_soon:change_request").due_at == datetime(2026, 12, 11, 19, 35,
                                                                                       tzinfo=UTC)
    assert row(db, f"reminder:{rid}:deferred_escalation:change_request").due_at == datetime(2026, 12, 11, 21, 35,
                                                                                             tzinfo=UTC)
    assert row(db, f"deferred_deadline:{rid}:docs").due_at == due["docs"]
    [ev] = events(db, rid, "deferred_steps_opened")
    assert [s["step"] for s in ev.after["steps"]] == list(deferred.STEPS)


def test_business_days_are_counted_in_the_release_zone(db, clock, policy):
    # 16:35 UTC on Friday is 03:35 on Saturday in Sydney: five business days from a Saturday end on Friday
    # 03:35 there, which is Thursday 16:35 UTC (counted on UTC dates it would be Friday 16:35 UTC)
    rid = deploying(db, clock, policy, "emergency", at=DEPLOYING_AT, start="2026-12-12 03:00",
                    tz="Australia/Sydney", duration="60m")
    clock.set(FINISHED_AT)
    assert finish(db, clock, policy, rid, "success").changed
    assert steps(db, rid)["retrospective"].due_at == datetime(2026, 12, 17, 16, 35, tzinfo=UTC)


def test_a_non_emergency_owes_no_deferred_steps(db, clock, policy):
    rid = deploying(db, clock, policy, "minor")
    clock.advance(minutes=20)
    assert finish(db, clock, policy, rid, "success").changed
    assert set(steps(db, rid)) == {"followup"}
    assert not [k for k in outbox_keys(db) if "deferred" in k]


def test_a_success_rolled_back_in_stabilisation_owes_its_steps_once(db, clock, policy):
    rid = deployed(db, clock, policy)
    first = {k: t.id for k, t in steps(db, rid).items()}
    clock.advance(hours=1)
    assert decide_rollback(db, who(), rid, "error rate up", clock).changed
    assert finish(db, clock, policy, rid, "rolled_back").changed
    assert {k: t.id for k, t in steps(db, rid).items()} == first
    assert len(events(db, rid, "deferred_steps_opened")) == 1


# --- a step open at its deadline is a non-conformance, once ---------------------------------------------------------

def test_a_step_still_open_at_its_deadline_is_one_non_conformance(db, clock, policy):
    rid = deployed(db, clock, policy)
    due = steps(db, rid)["change_request"].due_at
    assert check_deadline(db, rid, "change_request", due) == "non-conformance"
    assert check_deadline(db, rid, "change_request", due + timedelta(minutes=5)) == "non-conformance"  # seen again
    [nc] = nonconformances(db)
    task = steps(db, rid)["change_request"]
    assert (nc.kind, nc.subject, nc.release_id) == ("deferred_step_overdue", f"task:{task.id}", rid)
    assert "formal change request" in nc.detail and "still open" in nc.detail
    [ev] = events(db, rid, "nonconformance")
    assert ev.after["step"] == "change_request"
    assert {f"note:{rid}:nonconformance:{nc.id}", f"nonconformance:{nc.id}"} <= set(outbox_keys(db))
    # recording it late still records it, with its lateness, and is not a second non-conformance
    clock.set(due + timedelta(hours=2, minutes=10))
    out = record_step(db, actor("U0DEV"), rid, "change_request", {"link": "CR-123"}, clock, policy)
    assert out.changed and "2h10m late" in out.message
    [rec] = events(db, rid, "deferred_step_recorded")
    assert rec.after["link"] == "CR-123" and rec.after["late"] is True and rec.after["late_by_minutes"] == 130
    assert len(nonconformances(db)) == 1


def test_a_step_done_in_time_is_no_non_conformance(db, clock, policy):
    rid = deployed(db, clock, policy)
    clock.advance(hours=1)
    out = record_step(db, actor("U0QA"), rid, "test_review", {"note": "skipped perf suite ran overnight: green"},
                      clock, policy)
    assert out.changed and "late" not in out.message
    assert check_deadline(db, rid, "test_review", steps(db, rid)["test_review"].due_at) == "skipped: done in time"
    assert nonconformances(db) == []
    [rec] = events(db, rid, "deferred_step_recorded")
    assert rec.after["late"] is False and rec.after["late_by_minutes"] == 0


def test_a_step_recorded_late_before_the_check_ran_is_the_non_conformance_and_the_check_finds_it(db, clock, policy):
    rid = deployed(db, clock, policy)
    due = steps(db, rid)["docs"].due_at
    clock.set(due + timedelta(minutes=30))
    out = record_step(db, actor("U0RM"), rid, "docs", {"link": "https://wiki/notes", "runbook": "https://wiki/rb"},
                      clock, policy)
    assert out.changed and "non-conformance" in out.message
    assert check_deadline(db, rid, "docs", clock.now()) == "non-conformance"
    [nc] = nonconformances(db)
    assert "recorded 0h30m late" in nc.detail


def test_the_late_retrospective_of_an_emergency_is_a_non_conformance(db, clock, policy):
    rid = deployed(db, clock, policy)
    clock.set(steps(db, rid)["retrospective"].due_at + timedelta(days=1))
    out = record_step(db, actor("U0DEV"), rid, "retrospective", {"note": "root cause: missing idempotency key"},
                      clock, policy)
    assert out.changed
    assert steps(db, rid)["retrospective"].done_at == clock.now()
    [nc] = nonconformances(db)
    assert nc.kind == "deferred_step_overdue" and "retrospective" in nc.detail


@pytest.mark.parametrize("step, fields, problem", [
    ("change_request", {}, "needs link="),
    ("docs", {"link": "https://wiki/notes"}, "needs runbook="),
    ("planning", {}, "needs link= or note="),
    ("rollout", {"note": "x"}, "is not a deferred step"),
])
def test_a_step_without_what_it_records_is_bad_input_and_writes_nothing(db, clock, policy, step, fields, problem):
    rid = deployed(db, clock, policy)
    before = counts(db)
    with pytest.raises(InputError) as exc:
        record_step(db, actor("U0DEV"), rid, step, fields, clock, policy)
    assert problem in exc.value.message and exc.value.form
    assert counts(db) == before


def test_only_the_owner_or_a_release_manager_records_a_step(db, clock, policy):
    rid = deployed(db, clock, policy)
    out = record_step(db, actor("U0CAB1"), rid, "test_review", {"note": "n"}, clock, policy)
    assert out.refused and "qa_lead" in out.message
    assert [e.after["code"] for e in events(db, rid, "deferred_step_refused")] == ["not_owner"]
    assert record_step(db, actor("U0RM"), rid, "change_request", {"link": "CR-9"}, clock, policy).changed
    again = record_step(db, actor("U0DEV"), rid, "change_request", {"link": "CR-10"}, clock, policy)
    assert not again.changed and "already recorded by U0RM" in again.message


def test_the_deferred_steps_are_part_of_the_record_the_release_manager_closes(db, clock, policy):
    rid = deployed(db, clock, policy)
    with Session(db) as s:
        left = still_open(s, release(db, rid), policy)
    assert set(deferred.STEPS) <= set(left.tasks)
    assert "formal change request" in left.before_closing()


# --- validation: on-call, after the minimum monitoring -------------------------------------------------------------

def test_validation_is_refused_before_the_minimum_monitoring_and_by_someone_not_on_call(db, clock, policy):
    rid = deployed(db, clock, policy)
    assert release(db, rid).state == "stabilising"
    clock.set(FINISHED_AT + timedelta(minutes=29))
    early = validate(db, actor("U0OPS"), rid, "incident resolved", clock, policy)
    assert early.refused and "at least 30" in early.message and "16:35" not in early.message.split("from")[0]
    clock.set(FINISHED_AT + timedelta(minutes=30))
    not_oncall = validate(db, actor("U0RM"), rid, "incident resolved", clock, policy)
    assert not_oncall.refused and "operations" in not_oncall.message
    assert [e.after["code"] for e in events(db, rid, "validate_refused")] == ["too_early", "not_oncall"]
    assert emergency_of(db, rid).validated_at is None
    ok = validate(db, actor("U0OPS"), rid, "INC-1 resolved; error rate at baseline; no new error patterns", clock,
                  policy)
    assert ok.changed
    em = emergency_of(db, rid)
    assert (em.validated_by, em.validated_at) == ("U0OPS", clock.now())
    assert em.validation_note.startswith("INC-1 resolved")
    [ev] = events(db, rid, "emergency_validated")
    assert ev.after["monitored_minutes"] == 30
    assert f"note:{rid}:emergency_validated:" in outbox_keys(db)
    again = validate(db, actor("U0OPS"), rid, "again", clock, policy)
    assert not again.changed and "already validated" in again.message


def test_the_emergency_stabilisation_is_the_extended_monitoring_so_sign_offs_wait_for_it(db, clock, policy):
    rid = deployed(db, clock, policy)
    clock.set(FINISHED_AT + timedelta(hours=1))
    out = sign_off(db, actor("U0QA"), rid, clock, policy)
    assert out.refused and "2026-12-12T16:35:00Z" in iso_times(out.message)


def test_validation_needs_a_note_and_an_emergency(db, clock, policy):
    rid = deploying(db, clock, policy, "minor")
    with pytest.raises(InputError):
        validate(db, actor("U0OPS"), rid, "  ", clock, policy)
    out = validate(db, actor("U0OPS"), rid, "fine", clock, policy)
    assert out.refused and "not an emergency" in out.message


# --- frequency: deployments, not requests, in a rolling window ------------------------------------------------------

def deploy_emergency_on(db, clock, policy, day: datetime, service: str = "payments") -> int:
    clock.set(day - timedelta(hours=2))
    rid = new_release(db, clock, policy, type="emergency", service=service, start=f"{day:%Y-%m-%d %H:%M}", tz="UTC",
                      duration="60m", summary=f"outage {day:%d}")
    from test_deployment_outcomes import VOTERS
    from commands.vote import cast_vote
    assert assessed(db, clock, rid).changed  # co-approval follows the assessment (QMS 4.6)
    for user in VOTERS["emergency"]:
        assert cast_vote(db, actor(user), rid, "go", clock).changed
    clock.set(day + timedelta(minutes=5))
    assert start(db, clock, policy, rid, who(pipeline="deploy")).changed
    clock.set(day + timedelta(minutes=30))
    assert finish(db, clock, policy, rid, "success").changed
    return rid


def day(n: int) -> datetime:
    return datetime(2026, 12, 1, 10, 0, tzinfo=UTC) + timedelta(days=n)


def test_the_third_emergency_deployment_of_a_service_in_30_days_is_a_non_conformance_with_a_review(db, clock, policy):
    a, b = deploy_emergency_on(db, clock, policy, day(0)), deploy_emergency_on(db, clock, policy, day(2))
    deploy_emergency_on(db, clock, policy, day(3), service="ledger")  # another service does not count
    assert nonconformances(db) == []
    c = deploy_emergency_on(db, clock, policy, day(4))
    [nc] = nonconformances(db)
    assert (nc.kind, nc.subject, nc.release_id) == ("emergency_frequency", f"REL-{c}", c)
    assert f"REL-{a}, REL-{b}, REL-{c}" in nc.detail
    review = steps(db, c)["root_cause_review"]
    assert review.owner_id == "role:release_manager"
    # no [emergency] quarterly_review: the end of the quarter of the deployment (QMS 6.1), not a fixed date
    assert review.due_at == datetime(2026, 12, 31, 9, 0, tzinfo=UTC) and "due_note" not in review.details
    with Session(db) as s:  # owed by the service, not by this release's record
        assert "root_cause_review" not in still_open(s, release(db, c), policy).tasks
    assert record_step(db, actor("U0RM"), c, "root_cause_review", {"note": "on the Q1 agenda"}, clock,
                       policy).changed


def test_emergencies_requested_but_never_deployed_do_not_count(db, clock, policy):
    for n in range(3):  # requested, never deployed
        clock.set(day(n) - timedelta(hours=2))
        new_release(db, clock, policy, type="emergency", start=f"{day(n):%Y-%m-%d %H:%M}", tz="UTC", duration="60m")
    deploy_emergency_on(db, clock, policy, day(5))
    deploy_emergency_on(db, clock, policy, day(6))
    assert nonconformances(db) == []


def test_the_window_rolls(db, clock, policy):
    deploy_emergency_on(db, clock, policy, day(0))
    deploy_emergency_on(db, clock, policy, day(20))
    deploy_emergency_on(db, clock, policy, day(31))  # day 0 has left the 30 days
    assert nonconformances(db) == []
    fourth = deploy_emergency_on(db, clock, policy, day(40))  # days 20, 31 and 40
    [nc] = nonconformances(db)
    assert nc.release_id == fourth and nc.detail.startswith("3 emergency deployments of payments in 30 days")


def test_the_root_cause_review_is_never_born_overdue():
    from datetime import date

    from commands.frequency import review_due
    now = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    assert review_due(None, now, "UTC") == (datetime(2026, 12, 31, 9, 0, tzinfo=UTC), None)  # QMS 6.1 quarterly
    assert review_due(date(2027, 2, 1), now, "UTC") == (datetime(2027, 2, 1, 9, 0, tzinfo=UTC), None)
    due, why = review_due(date(2026, 10, 15), now, "UTC")  # a configured review that has passed
    assert due == datetime(2026, 12, 31, 9, 0, tzinfo=UTC) and "2026-10-15 has passed" in why
    # the quarter's last morning gone: the next quarter's end, in the release's zone
    late = datetime(2026, 12, 31, 12, 0, tzinfo=UTC)
    assert review_due(None, late, "Europe/Berlin")[0] == datetime(2027, 3, 31, 7, 0, tzinfo=UTC)  # CEST


def test_a_past_review_date_in_the_policy_is_named_in_the_task(db, clock, policy):
    from dataclasses import replace
    from datetime import date
    policy = replace(policy, emergency=replace(policy.emergency, quarterly_review=date(2026, 11, 1)))
    for n in (0, 1, 2):
        last = deploy_emergency_on(db, clock, policy, day(n))
    review = steps(db, last)["root_cause_review"]
    assert review.due_at == datetime(2026, 12, 31, 9, 0, tzinfo=UTC) and review.due_at > clock.now()
    assert "2026-11-01 has passed" in review.details["due_note"]


def test_an_empty_review_date_is_the_quarter_end():
    assert Policy.from_mapping({"emergency": {"quarterly_review": ""}}).emergency.quarterly_review is None


# --- policy ---------------------------------------------------------------------------------------------------------

def test_the_emergency_policy_is_read_and_checked():
    p = Policy.from_mapping({"emergency": {"change_request_within": "2h", "quarterly_review": "2027-04-15",
                                           "frequency_limit": 3}})
    assert p.emergency.change_request_within == timedelta(hours=2) and p.emergency.frequency_limit == 3
    assert str(p.emergency.quarterly_review) == "2027-04-15"
    with pytest.raises(PolicyError, match="emergency.quarterly_review"):
        Policy.from_mapping({"emergency": {"quarterly_review": "soon"}})
    with pytest.raises(PolicyError, match="emergency.frequency_days"):
        Policy.from_mapping({"emergency": {"frequency_days": 0}})


def test_the_step_and_validate_commands_parse():
    from commands.text import parse_command
    cmd = parse_command("step REL-3 Change_Request link=CR-1")
    assert (cmd.name, cmd.release_id, cmd.positional, cmd.args) == ("step", 3, ("change_request",), {"link": "CR-1"})
    assert parse_command('validate REL-3 note="all green"').args == {"note": "all green"}
    with pytest.raises(InputError, match="step's name"):
        parse_command("step REL-3 link=CR-1")
    with pytest.raises(InputError, match="not a field"):
        parse_command("step REL-3 docs notes=x")


def test_a_late_retrospective_of_a_release_that_is_no_emergency_is_no_deferred_step_non_conformance(db, clock, policy):
    rid = deploying(db, clock, policy, "major")
    clock.advance(minutes=20)
    assert finish(db, clock, policy, rid, "success").changed
    clock.set(steps(db, rid)["retrospective"].due_at + timedelta(days=2))
    assert record_step(db, actor("U0DEV"), rid, "retrospective", {"note": "n"}, clock, policy).changed
    assert nonconformances(db) == []
