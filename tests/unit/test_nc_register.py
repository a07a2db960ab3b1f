"""The non-conformance register (issue 11, QMS 6.2): a new NC's due date and repeat, its life cycle with
separation of duties, refusals audited, bad input writing nothing, the lists, and its reminders judged when due."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, select

from commands import nonconformance, nonconformance_register as register
from commands.errors import CouldNotCheck, InputError, NotFound
from commands.outcome import Actor
from commands.policy import Policy
from storage.db import transaction
from storage.models import AuditEvent, NonConformance, Outbox, Release

from conftest import START
from unit_support import new_release

UTC = timezone.utc
RM, RM2 = Actor("U0RM", frozenset({"release_manager"})), Actor("U0RM2", frozenset({"release_manager"}))
OWNER = Actor("U0DEV")
_subjects = itertools.count(1)


def detect(db, at: datetime, *, release_id: int | None = None, kind: str = "deployment_without_approval",
           service: str | None = "payments", policy: Policy | None = None) -> NonConformance:
    with transaction(db) as s:
        release = s.get(Release, release_id) if release_id else None
        nc, recorded = nonconformance.record(s, release, kind=kind, subject=f"subject-{next(_subjects)}",
                                             detail="a deployment nobody approved", actor="pipeline:ci", now=at,
                                             service=service, policy=policy)
        assert recorded
        return nc


def nc_of(db, nc_id: int) -> NonConformance:
    with Session(db) as s:
        return s.get(NonConformance, nc_id)


def nc_events(db) -> list[AuditEvent]:
    with Session(db) as s:
        return [e for e in s.exec(select(AuditEvent).order_by(AuditEvent.id)) if e.action.startswith("nonconformance_")]


def reminder_rows(db, nc_id: int) -> dict[str, Outbox]:
    with Session(db) as s:
        rows = s.exec(select(Outbox).where(Outbox.kind == nonconformance.NC_REMINDER))
        return {r.payload["reminder"]: r for r in rows if r.payload["nc"] == nc_id}


def planned(db, clock, nc_id: int, owner: str = "U0DEV", **extra):
    out = register.plan(db, RM, nc_id, {"owner": f"<@{owner}|someone>", "action": "Gate the pipeline", **extra},
                        clock)
    assert out.changed, out.message
    return out


# ---- a new NC enters the register ------------------------------------------------------------

def test_a_new_nc_is_open_due_five_business_days_on_in_the_release_zone(db, clock, policy):
    rid = new_release(db, clock, policy, tz="Pacific/Auckland")
    # Friday 23:00 in Auckland is Friday 10:00 UTC: five business days on is the next Friday, 23:00 there.
    friday = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    nc = detect(db, friday, release_id=rid, policy=policy)
    assert (nc.state, nc.service, nc.repeat, nc.repeat_of) == ("open", "payments", False, None)
    assert nc.due_at == datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    # with no release (a deployment that names none), counted in UTC: Friday 23:00 UTC -> Friday after
    late = detect(db, datetime(2026, 11, 27, 23, 0, tzinfo=UTC), kind="unmatched", policy=policy)
    assert late.due_at == datetime(2026, 12, 4, 23, 0, tzinfo=UTC)
    # In Auckland that instant is Saturday 12:00: five business days from there is Friday 4 Dec 12:00
    # Auckland, Thursday 23:00 UTC, a day before the UTC count: the zone decides.
    sat = detect(db, datetime(2026, 11, 27, 23, 0, tzinfo=UTC), release_id=rid, kind="other", policy=policy)
    assert sat.due_at == datetime(2026, 12, 3, 23, 0, tzinfo=UTC)


def test_the_due_days_come_from_policy(db, clock):
    short = Policy.from_mapping({"nonconformance": {"action_due_business_days": 2}})
    nc = detect(db, START, policy=short)  # a Monday
    assert nc.due_at == START + timedelta(days=2)


@pytest.mark.parametrize("days, repeat", [(90, True), (91, False)])
def test_the_same_kind_for_the_same_service_within_90_days_is_a_repeat(db, clock, policy, days, repeat):
    first = detect(db, START, policy=policy)
    detect(db, START + timedelta(days=1), kind="emergency_frequency", policy=policy)  # another kind
    detect(db, START + timedelta(days=1), service="ledger", policy=policy)  # another service
    second = detect(db, START + timedelta(days=days), policy=policy)
    assert (second.repeat, second.repeat_of) == ((True, first.id) if repeat else (False, None))
    with Session(db) as s:
        [ev] = [e for e in s.exec(select(AuditEvent).where(AuditEvent.action == "nonconformance"))
                if e.after["nonconformance"] == second.id]
    assert ev.after["repeat_of"] == (first.id if repeat else None)
    assert [n.repeat for n in (nc_of(db, i) for i in (first.id, first.id + 1, first.id + 2))] == [False] * 3


def test_a_repeat_names_the_latest_earlier_one(db, clock, policy):
    a = detect(db, START, policy=policy)
    b = detect(db, START + timedelta(days=10), policy=policy)
    c = detect(db, START + timedelta(days=20), policy=policy)
    assert (b.repeat_of, c.repeat_of) == (a.id, b.id)


def test_an_nc_without_a_service_is_never_a_repeat(db, clock, policy):
    detect(db, START, service=None, policy=policy)
    assert detect(db, START + timedelta(days=1), service=None, policy=policy).repeat is False


# ---- the life cycle ----------------------------------------------------------------------------

def test_the_whole_life_cycle_each_step_audited(db, clock, policy):
    nc = detect(db, START, policy=policy)
    out = planned(db, clock, nc.id)
    assert "owner U0DEV" in out.message
    assert (nc_of(db, nc.id).state, nc_of(db, nc.id).owner_id) == ("action_planned", "U0DEV")
    clock.advance(days=1)
    out = register.done(db, OWNER, nc.id, {"evidence": "https://ci.example/run/7"}, clock)
    assert out.changed and nc_of(db, nc.id).state == "actioned"
    out = register.verify(db, RM, nc.id, clock)
    assert out.changed and nc_of(db, nc.id).state == "verified"
    out = register.close(db, RM, nc.id, clock)
    assert out.changed and out.message == f"NC-{nc.id} is closed."
    done = nc_of(db, nc.id)
    assert (done.state, done.planned_by, done.actioned_by, done.verified_by, done.closed_by) == (
        "closed", "U0RM", "U0DEV", "U0RM", "U0RM")
    assert (done.evidence, done.action, done.closed_at) == ("https://ci.example/run/7", "Gate the pipeline", clock.now())
    evs = nc_events(db)
    assert [e.action for e in evs] == ["nonconformance_planned", "nonconformance_actioned", "nonconformance_verified",
                                       "nonconformance_closed"]
    assert [e.actor for e in evs] == ["U0RM", "U0DEV", "U0RM", "U0RM"]
    assert evs[1].before["state"] == "action_planned" and evs[1].after["state"] == "actioned"
    assert all(e.after["nonconformance"] == nc.id for e in evs)
    with Session(db) as s:  # each change told in Slack, queued with it
        notes = [r.payload["event"] for r in s.exec(select(Outbox).where(Outbox.kind == register.NC_NOTE)
                                                    .order_by(Outbox.id))]
    assert notes == ["planned", "actioned", "verified", "closed"]


def test_verify_and_close_by_the_owner_are_refused_and_audited(db, clock, policy):
    nc = detect(db, START, policy=policy)
    planned(db, clock, nc.id, owner="U0RM")  # a release manager owns it
    register.done(db, RM, nc.id, {"evidence": "fixed"}, clock)
    out = register.verify(db, RM, nc.id, clock)
    assert out.refused and "another release manager" in out.message and "separation of duties" in out.message
    assert nc_of(db, nc.id).state == "actioned"
    assert nc_events(db)[-1].action == "nonconformance_verify_refused"
    assert nc_events(db)[-1].after["code"] == "owner_cannot_verify"
    assert register.verify(db, RM2, nc.id, clock).changed
    out = register.close(db, RM, nc.id, clock)
    assert out.refused and nc_of(db, nc.id).state == "verified"
    assert nc_events(db)[-1].action == "nonconformance_close_refused"
    assert register.close(db, RM2, nc.id, clock).changed


def test_a_repeat_needs_its_root_cause_before_closure(db, clock, policy):
    detect(db, START, policy=policy)
    nc = detect(db, START + timedelta(days=30), policy=policy)
    out = planned(db, clock, nc.id)
    assert "repeat" in out.message and "root cause" in out.message
    register.done(db, OWNER, nc.id, {"evidence": "fixed"}, clock)
    register.verify(db, RM, nc.id, clock)
    out = register.close(db, RM, nc.id, clock)
    assert out.refused and "root cause" in out.message and f"NC-{nc.id - 1}" in out.message
    assert nc_of(db, nc.id).state == "verified"
    assert nc_events(db)[-1].after["code"] == "root_cause_missing"
    out = register.close(db, RM, nc.id, clock, root_cause="The pipeline had no gate step for hotfix branches")
    assert out.changed and nc_of(db, nc.id).root_cause.startswith("The pipeline")


def test_a_root_cause_given_on_done_lets_a_repeat_close(db, clock, policy):
    detect(db, START, policy=policy)
    nc = detect(db, START + timedelta(days=1), policy=policy)
    planned(db, clock, nc.id)
    register.done(db, OWNER, nc.id, {"evidence": "fixed", "root_cause": "no gate on hotfix branches"}, clock)
    register.verify(db, RM, nc.id, clock)
    assert register.close(db, RM, nc.id, clock).changed


def test_who_may_do_what_and_when(db, clock, policy):
    nc = detect(db, START, policy=policy)
    out = register.plan(db, OWNER, nc.id, {"owner": "U0DEV", "action": "x"}, clock)
    assert out.refused and "Only a release manager" in out.message and out.data["needs_roles"] == ["release_manager"]
    assert nc_of(db, nc.id).state == "open" and nc_events(db)[-1].action == "nonconformance_plan_refused"
    out = register.done(db, OWNER, nc.id, {"evidence": "e"}, clock)
    assert out.refused and "plans it first" in out.message
    planned(db, clock, nc.id)
    out = register.done(db, Actor("U0OTHER"), nc.id, {"evidence": "e"}, clock)
    assert out.refused and "Only NC-" in out.message and "owner, U0DEV," in out.message
    out = register.close(db, RM, nc.id, clock)
    assert out.refused and "owner records the fix first" in out.message
    register.done(db, OWNER, nc.id, {"evidence": "e"}, clock)
    out = register.plan(db, RM, nc.id, {"owner": "U0X1", "action": "again"}, clock)
    assert out.refused and "actioned" in out.message  # no re-planning once actioned
    assert [e.action for e in nc_events(db)].count("nonconformance_plan_refused") == 2
    assert nc_of(db, nc.id).owner_id == "U0DEV"


def test_replanning_before_it_is_actioned_changes_the_owner(db, clock, policy):
    nc = detect(db, START, policy=policy)
    planned(db, clock, nc.id)
    again = register.plan(db, RM, nc.id, {"owner": "<@U0DEV|dev>", "action": "Gate the pipeline"}, clock)
    assert not again.changed and "already planned" in again.message  # a replay writes nothing
    out = register.plan(db, RM, nc.id, {"owner": "U0OPS", "action": "Gate the pipeline"}, clock)
    assert out.changed and "re-planned" in out.message and nc_of(db, nc.id).owner_id == "U0OPS"
    assert [e.action for e in nc_events(db)] == ["nonconformance_planned", "nonconformance_replanned"]


def test_replays_write_nothing(db, clock, policy):
    nc = detect(db, START, policy=policy)
    planned(db, clock, nc.id)
    register.done(db, OWNER, nc.id, {"evidence": "e"}, clock)
    assert not register.done(db, OWNER, nc.id, {"evidence": "e"}, clock).changed
    register.verify(db, RM, nc.id, clock)
    assert not register.verify(db, RM, nc.id, clock).changed
    register.close(db, RM, nc.id, clock)
    assert "already closed" in register.close(db, RM, nc.id, clock).message
    assert len(nc_events(db)) == 4


@pytest.mark.parametrize("args, says", [
    ({"action": "x"}, "plan needs owner="),
    ({"owner": "@alice", "action": "x"}, "owner is a person"),
    ({"owner": "<#C123|general>", "action": "x"}, "owner is a person"),
    ({"owner": "U0DEV"}, 'plan needs action="'),
    ({"owner": "U0DEV", "action": "  "}, 'plan needs action="'),
    ({"owner": "U0DEV", "action": "x" * 3001}, "too long"),
    ({"owner": "U0DEV", "action": "nul\x00"}, "not text"),
])
def test_bad_plan_input_writes_nothing(db, clock, policy, args, says):
    nc = detect(db, START, policy=policy)
    with pytest.raises(InputError) as err:
        register.plan(db, RM, nc.id, args, clock)
    assert says in err.value.message
    assert nc_events(db) == [] and nc_of(db, nc.id).state == "open"


def test_an_unknown_nc_and_a_role_slack_cannot_confirm_write_nothing(db, clock, policy):
    with pytest.raises(NotFound, match="NC-99 does not exist"):
        register.verify(db, RM, 99, clock)
    nc = detect(db, START, policy=policy)
    unsure = Actor("U0RM", frozenset(), frozenset({"release_manager"}))
    with pytest.raises(CouldNotCheck):
        register.plan(db, unsure, nc.id, {"owner": "U0DEV", "action": "x"}, clock)
    assert nc_events(db) == []
    with pytest.raises(InputError, match="done needs evidence"):
        register.done(db, OWNER, nc.id, {}, clock)


# ---- the lists ---------------------------------------------------------------------------------

def test_open_overdue_and_mine(db, clock, policy):
    a = detect(db, START, policy=policy)  # due Mon 30 Nov 09:00
    b = detect(db, START, kind="k2", policy=policy)
    c = detect(db, START, kind="k3", policy=policy)
    d = detect(db, START + timedelta(days=3), kind="k4", policy=policy)  # due Mon 30 Nov + 3 days
    planned(db, clock, b.id)
    planned(db, clock, c.id)
    register.done(db, OWNER, c.id, {"evidence": "e"}, clock)  # actioned: documented, so never overdue
    clock.set(a.due_at)

    def ids(which, user="U0DEV"):
        entries, total = register.listing(db, user, which, clock.now(), limit=10)
        assert total == len(entries)
        return [e.nc.id for e in entries]
    assert ids("open") == ids(None) == [a.id, b.id, c.id, d.id]
    assert ids("overdue") == [a.id, b.id]
    assert ids("mine") == [b.id, c.id] and ids("mine", "U0RM") == []
    clock.set(a.due_at - timedelta(seconds=1))
    assert ids("overdue") == []
    entries, total = register.listing(db, "U0DEV", "open", clock.now(), limit=2)
    assert ([e.nc.id for e in entries], total) == ([a.id, b.id], 4)
    assert [e.nc.id for e in register.listing(db, "U0DEV", None, clock.now(), 10, state="actioned")[0]] == [c.id]


# ---- reminders ---------------------------------------------------------------------------------

def test_reminders_are_written_with_the_nc_and_judged_when_due(db, clock, policy):
    nc = detect(db, START, policy=policy)
    rows = reminder_rows(db, nc.id)
    assert {k: r.due_at for k, r in rows.items()} == {"nc_soon": nc.due_at - timedelta(days=1), "nc_due": nc.due_at,
                                                      "nc_escalation": nc.due_at + timedelta(days=1)}
    with Session(db) as s:
        before = register.reminder_due(s, rows["nc_soon"])
    assert before.roles == ("release_manager",) and before.users == ()  # no owner yet: the release managers
    planned(db, clock, nc.id)
    with Session(db) as s:
        soon, at, esc = (register.reminder_due(s, rows[k]) for k in ("nc_soon", "nc_due", "nc_escalation"))
    assert (soon.users, at.users, esc.users, esc.roles) == (("U0DEV",), ("U0DEV",), (), ("release_manager",))
    register.done(db, OWNER, nc.id, {"evidence": "e"}, clock)
    with Session(db) as s:
        assert isinstance(register.reminder_due(s, rows["nc_escalation"]), register.Skip)


def test_recording_the_same_nc_again_adds_no_reminder(db, clock, policy):
    with transaction(db) as s:
        first, _ = nonconformance.record(s, None, kind="k", subject="same", detail="d", actor="a", now=START,
                                         service="payments", policy=policy)
    with transaction(db) as s:
        again, recorded = nonconformance.record(s, None, kind="k", subject="same", detail="d", actor="a",
                                                now=START + timedelta(hours=1), service="payments", policy=policy)
    assert (again.id, recorded) == (first.id, False)
    assert len(reminder_rows(db, first.id)) == 3


# ---- at the same moment (a double click, a retried delivery, two processes) ---------------------

def test_the_same_decision_taken_together_is_recorded_once(db, clock, policy):
    from test_concurrent_decisions import together
    nc = detect(db, START, policy=policy)
    outs = together(4, lambda i: register.plan(db, RM, nc.id, {"owner": "U0DEV", "action": "Gate it"}, clock))
    assert sum(o.changed for o in outs) == 1 and all(not o.refused for o in outs)
    outs = together(4, lambda i: register.done(db, OWNER, nc.id, {"evidence": "fixed"}, clock))
    assert sum(o.changed for o in outs) == 1
    outs = together(2, lambda i: register.verify(db, (RM, RM2)[i], nc.id, clock))
    assert sum(o.changed for o in outs) == 1 and not any(o.refused for o in outs)
    assert [e.action for e in nc_events(db)] == ["nonconformance_planned", "nonconformance_actioned",
                                                 "nonconformance_verified"]
    with Session(db) as s:
        assert len(list(s.exec(select(Outbox).where(Outbox.kind == register.NC_NOTE)))) == 3


def test_one_nc_recorded_by_two_processes_together_has_one_set_of_reminders(db, clock, policy):
    from test_concurrent_decisions import together

    def record(_i):
        with transaction(db) as s:
            return nonconformance.record(s, None, kind="k", subject="together", detail="d", actor="a", now=START,
                                         service="payments", policy=policy)[1]
    assert sum(together(4, record)) == 1
    with Session(db) as s:
        [nc] = s.exec(select(NonConformance)).all()
    assert len(reminder_rows(db, nc.id)) == 3
