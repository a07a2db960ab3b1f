"""After the deployment (QMS §4.4 steps 5–6, §4.6): post-deployment sign-offs and the follow-up and
retrospective records, against the real database."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, select

from commands.aftercare import record_task, sign_off
from commands.deploy import CHECKLIST, Deployer, finish_deployment
from commands.rollback import decide_rollback
from commands.errors import InputError
from commands.outcome import Actor
from commands.policy import Policy
from commands.vote import cast_vote
from conftest import ROLES, actor
from storage.models import Outbox, SignOff, Task
from unit_support import start, REQUESTER, counts, events, new_release, outbox_keys, release
from bot.times import iso_times

UTC = timezone.utc
WINDOW = dict(start="2026-12-09 10:00", tz="UTC", duration="60m")  # a Wednesday, past every lead time
IN_WINDOW = datetime(2026, 12, 9, 10, 5, tzinfo=UTC)
FINISHED = datetime(2026, 12, 9, 10, 30, tzinfo=UTC)
STABLE = FINISHED + timedelta(hours=2)  # a minor release's stabilisation window
ALL_CHECKED = {key: True for key, _ in CHECKLIST}
DEPLOYER = "U0DEPL"
DEPLOYING = frozenset({"platform_lead"})  # only a deploying role starts a deployment (QMS 3.4)
VOTERS = {"minor": ("U0RM", "U0QA"), "major": ("U0CAB1", "U0CAB2", "U0RM", "U0SEC")}


def deploying(db, clock, policy, type_="minor") -> int:
    rid = new_release(db, clock, policy, type=type_, **WINDOW)
    for user in VOTERS[type_]:
        assert cast_vote(db, actor(user), rid, "go", clock).changed
    clock.set(IN_WINDOW)
    assert start(db, clock, policy, rid, Deployer(DEPLOYER, DEPLOYING, pipeline="deploy")).changed
    return rid


def deployed(db, clock, policy, type_="minor", outcome="success") -> int:
    rid = deploying(db, clock, policy, type_)
    clock.set(FINISHED)
    assert finish_deployment(db, Deployer(DEPLOYER), rid, outcome, clock, policy).changed
    return rid


def signoffs(db, rid) -> list[tuple[str, str]]:
    with Session(db) as s:
        q = select(SignOff).where(SignOff.release_id == rid).order_by(SignOff.id)
        return [(x.role, x.user_id) for x in s.exec(q)]


def task(db, rid, kind) -> Task | None:
    with Session(db, expire_on_commit=False) as s:
        return s.exec(select(Task).where(Task.release_id == rid, Task.kind == kind)).first()


def row(db, key) -> Outbox | None:
    with Session(db, expire_on_commit=False) as s:
        return s.exec(select(Outbox).where(Outbox.key == key)).first()


def writes(db, rid):
    return counts(db), outbox_keys(db), signoffs(db, rid), release(db, rid).revision


NOTES = {"evidence": "error rate flat, p95 within SLO", "actions": "none"}


def followed_up(db, clock, policy, rid, user=DEPLOYER):
    assert record_task(db, actor(user), rid, "followup", NOTES, clock, policy).changed


def assert_refused(db, rid, out, user, action, code):
    assert out.refused and not out.changed
    ev = events(db, rid, action)[-1]
    assert (ev.actor, ev.after["code"], ev.reason) == (user, code, out.message)
    return ev


# --- sign-off -------------------------------------------------------------------------------------------------------

def test_sign_off_is_refused_before_the_stabilisation_window_ends(db, clock, policy):
    rid = deployed(db, clock, policy)
    clock.set(STABLE - timedelta(seconds=1))
    before = writes(db, rid)[1:3]
    out = sign_off(db, actor("U0QA"), rid, clock, policy)
    assert_refused(db, rid, out, "U0QA", "signoff_refused", "too_early")
    assert "runs until 2026-12-09T12:30:00Z" in iso_times(out.message)
    assert writes(db, rid)[1:3] == before
    assert release(db, rid).state == "stabilising"


def test_sign_off_is_allowed_when_the_window_has_just_ended(db, clock, policy):
    rid = deployed(db, clock, policy)
    clock.set(STABLE)
    out = sign_off(db, actor("U0QA"), rid, clock, policy)
    assert out.changed and out.message == f"Your sign-off of REL-{rid} as qa_lead is recorded."
    assert signoffs(db, rid) == [("qa_lead", "U0QA")]
    [ev] = events(db, rid, "signed_off")
    assert (ev.actor, ev.at, ev.after["role"], ev.after["state"]) == ("U0QA", STABLE, "qa_lead", "stabilising")
    assert row(db, f"approval:{rid}:event:{ev.id}") is not None
    assert release(db, rid).state == "stabilising"


def test_the_window_is_the_types_major_waits_24_hours(db, clock, policy):
    rid = deployed(db, clock, policy, "major")
    clock.set(FINISHED + timedelta(hours=23, minutes=59))
    assert sign_off(db, actor("U0OPS"), rid, clock, policy).refused
    clock.set(FINISHED + timedelta(hours=24))
    assert sign_off(db, actor("U0OPS"), rid, clock, policy).changed


@pytest.mark.parametrize("stage", ["deploying", "rolling_back", "rolled_back", "failed"])
def test_sign_off_is_refused_outside_stabilising(db, clock, policy, stage):
    if stage == "deploying":
        rid = deploying(db, clock, policy)
    elif stage == "rolling_back":
        rid = deploying(db, clock, policy)
        decide_rollback(db, Deployer(DEPLOYER), rid, "error rate +20%", clock)
    else:
        rid = deployed(db, clock, policy, outcome=stage)
    clock.set(STABLE + timedelta(days=1))
    out = sign_off(db, actor("U0QA"), rid, clock, policy)
    assert_refused(db, rid, out, "U0QA", "signoff_refused", "not_stabilising")
    assert out.message.startswith(f"REL-{rid} is {stage};")
    assert signoffs(db, rid) == []
    assert release(db, rid).state == stage


def test_sign_off_is_refused_before_any_deployment(db, clock, policy):
    rid = new_release(db, clock, policy, **WINDOW)
    out = sign_off(db, actor("U0QA"), rid, clock, policy)
    assert_refused(db, rid, out, "U0QA", "signoff_refused", "not_stabilising")


@pytest.mark.parametrize("user", ["U0DEV2", "U0EL", DEPLOYER, REQUESTER])
def test_sign_off_is_refused_without_a_sign_off_role(db, clock, policy, user):
    rid = deployed(db, clock, policy)
    clock.set(STABLE)
    out = sign_off(db, actor(user), rid, clock, policy)
    assert_refused(db, rid, out, user, "signoff_refused", "no_signoff_role")
    assert out.message == (f"REL-{rid} still needs sign-off from: qa_lead, operations, release_manager; you hold "
                           "none of those roles.")
    assert signoffs(db, rid) == []


def test_a_role_already_signed_for_is_not_open_to_another_holder(db, clock, policy):
    rid = deployed(db, clock, policy)
    clock.set(STABLE)
    sign_off(db, actor("U0QA"), rid, clock, policy)
    out = sign_off(db, actor("U0QAGROUP"), rid, clock, policy)  # also a QA lead, through the user group
    assert_refused(db, rid, out, "U0QAGROUP", "signoff_refused", "no_signoff_role")
    assert "still needs sign-off from: operations" in out.message
    assert signoffs(db, rid) == [("qa_lead", "U0QA")]


def test_a_qa_lead_reached_through_the_user_group_can_sign_off(db, clock, policy):
    rid = deployed(db, clock, policy)
    clock.set(STABLE)
    assert sign_off(db, actor("U0QAGROUP"), rid, clock, policy).changed
    assert signoffs(db, rid) == [("qa_lead", "U0QAGROUP")]


def test_role_hint_for_a_role_not_held_is_refused(db, clock, policy):
    rid = deployed(db, clock, policy)
    clock.set(STABLE)
    out = sign_off(db, actor("U0QA"), rid, clock, policy, role_hint="operations")
    assert_refused(db, rid, out, "U0QA", "signoff_refused", "no_signoff_role")
    assert signoffs(db, rid) == []


def test_a_repeated_sign_off_is_idempotent(db, clock, policy):
    rid = deployed(db, clock, policy)
    clock.set(STABLE)
    sign_off(db, actor("U0QA"), rid, clock, policy)
    before = writes(db, rid)
    for hint in (None, "qa_lead"):
        out = sign_off(db, actor("U0QA"), rid, clock, policy, role_hint=hint)
        assert not out.changed and not out.refused
        assert out.message == f"Your sign-off of REL-{rid} as qa_lead is already recorded."
    assert writes(db, rid) == before


def test_a_repeated_final_sign_off_does_not_close_twice(db, clock, policy):
    rid = deployed(db, clock, policy)
    clock.set(STABLE)
    sign_off(db, actor("U0QA"), rid, clock, policy)
    sign_off(db, actor("U0OPS"), rid, clock, policy)
    followed_up(db, clock, policy, rid)
    sign_off(db, actor("U0RM"), rid, clock, policy)
    before = writes(db, rid)
    out = sign_off(db, actor("U0RM"), rid, clock, policy, role_hint="release_manager")
    assert not out.changed and not out.refused
    assert writes(db, rid) == before
    assert len(events(db, rid, "closed")) == 1


@pytest.fixture
def both_policy() -> Policy:
    roles = {**ROLES, "qa_lead": ROLES["qa_lead"] + ["U0BOTH"], "operations": ROLES["operations"] + ["U0BOTH"]}
    return Policy.from_mapping({"roles": roles}, source="overlapping sign-off roles")


BOTH = Actor("U0BOTH", frozenset({"qa_lead", "operations"}))


def test_one_person_holding_both_roles_signs_off_once(db, clock, both_policy):
    assert "U0BOTH" in both_policy.role_members("qa_lead") and "U0BOTH" in both_policy.role_members("operations")
    rid = deployed(db, clock, both_policy)
    clock.set(STABLE)
    assert sign_off(db, BOTH, rid, clock, both_policy).changed
    assert signoffs(db, rid) == [("qa_lead", "U0BOTH")]  # the first sign-off role they hold
    again = sign_off(db, BOTH, rid, clock, both_policy)
    assert not again.changed and "already recorded" in again.message
    out = sign_off(db, BOTH, rid, clock, both_policy, role_hint="operations")
    assert_refused(db, rid, out, "U0BOTH", "signoff_refused", "one_person_one_role")
    assert out.message == "You already signed off as qa_lead; one person signs off once."
    assert signoffs(db, rid) == [("qa_lead", "U0BOTH")]
    assert release(db, rid).state == "stabilising"
    assert sign_off(db, actor("U0OPS"), rid, clock, both_policy).changed
    followed_up(db, clock, both_policy, rid)
    assert sign_off(db, actor("U0RM"), rid, clock, both_policy).changed
    assert release(db, rid).state == "closed"


def test_role_hint_chooses_which_role_is_signed_for(db, clock, both_policy):
    rid = deployed(db, clock, both_policy)
    clock.set(STABLE)
    out = sign_off(db, BOTH, rid, clock, both_policy, role_hint="operations")
    assert out.changed and "as operations" in out.message
    assert signoffs(db, rid) == [("operations", "U0BOTH")]
    assert events(db, rid, "signed_off")[0].after["role"] == "operations"
    assert sign_off(db, actor("U0QA"), rid, clock, both_policy).changed
    assert [r for r, _ in signoffs(db, rid)] == ["operations", "qa_lead"]


def test_role_hint_outside_the_sign_off_roles_is_refused(db, clock, policy):
    rid = deployed(db, clock, policy)
    clock.set(STABLE)
    out = sign_off(db, actor("U0EL"), rid, clock, policy, role_hint="engineering_lead")
    assert_refused(db, rid, out, "U0EL", "signoff_refused", "no_signoff_role")


def test_sign_off_roles_come_from_the_policy(db, clock):
    three = Policy.from_mapping({"roles": ROLES,
                                 "deployment": {"signoff_roles": ["qa_lead", "operations", "security"]}})
    rid = deployed(db, clock, three)
    clock.set(STABLE)
    sign_off(db, actor("U0QA"), rid, clock, three)
    sign_off(db, actor("U0OPS"), rid, clock, three)
    assert sign_off(db, actor("U0RM"), rid, clock, three).refused  # security has not signed yet
    assert sign_off(db, actor("U0SEC"), rid, clock, three).changed
    followed_up(db, clock, three, rid)
    assert sign_off(db, actor("U0RM"), rid, clock, three).changed
    assert release(db, rid).state == "closed"


# --- the follow-up and the retrospective ------------------------------------------------------------------------------


@pytest.mark.parametrize("user", [DEPLOYER, REQUESTER, "U0RM", "U0EL", "U0OPS"])
def test_who_may_record_the_follow_up(db, clock, policy, user):
    rid = deployed(db, clock, policy)
    now = clock.advance(hours=3)
    out = record_task(db, actor(user), rid, "followup", {"evidence": "  all green ", "actions": ""}, clock, policy)
    assert out.changed and out.message == f"The 24-hour follow-up of REL-{rid} is recorded."
    t = task(db, rid, "followup")
    assert (t.done_by, t.done_at, t.details) == (user, now, {"evidence": "all green", "actions": ""})
    [ev] = events(db, rid, "followup_recorded")
    assert (ev.actor, ev.at) == (user, now)
    assert ev.after == {"kind": "followup", "evidence": "all green", "actions": "",
                        "due_at": (FINISHED + timedelta(hours=24)).isoformat(), "late": False}
    note = row(db, f"note:{rid}:followup_recorded:")
    assert note.payload == {"event": "followup_recorded", "by": user}


@pytest.mark.parametrize("user", ["U0QA", "U0SEC", "U0DEV2"])
def test_others_may_not_record_the_follow_up(db, clock, policy, user):
    rid = deployed(db, clock, policy)
    before = outbox_keys(db)
    out = record_task(db, actor(user), rid, "followup", NOTES, clock, policy)
    assert_refused(db, rid, out, user, "followup_refused", "not_owner")
    assert task(db, rid, "followup").done_at is None
    assert outbox_keys(db) == before


@pytest.mark.parametrize("details, field", [
    ({"evidence": "   ", "actions": ""}, "evidence"),
    ({"notes": None, "actions": None}, "notes"),
    ({}, "notes"),
])
def test_the_record_needs_its_notes(db, clock, policy, details, field):
    rid = deployed(db, clock, policy, "major")
    before = writes(db, rid)
    kind = "followup" if "evidence" in details else "retrospective"
    with pytest.raises(InputError) as exc:
        record_task(db, actor(DEPLOYER), rid, kind, details, clock, policy)
    assert exc.value.field == field
    assert writes(db, rid) == before
    assert task(db, rid, kind).done_at is None


def test_an_unknown_task_kind_is_an_input_error(db, clock, policy):
    rid = deployed(db, clock, policy)
    with pytest.raises(InputError):
        record_task(db, actor(DEPLOYER), rid, "postmortem", {"notes": "x"}, clock, policy)


def test_a_task_is_recorded_once(db, clock, policy):
    rid = deployed(db, clock, policy)
    first_at = clock.advance(hours=2)
    record_task(db, actor(DEPLOYER), rid, "followup", NOTES, clock, policy)
    before = writes(db, rid)
    clock.advance(hours=1)
    out = record_task(db, actor("U0RM"), rid, "followup", {"evidence": "something else"}, clock, policy)
    assert not out.changed and not out.refused
    assert iso_times(out.message) == (f"The 24-hour follow-up of REL-{rid} was already recorded by {DEPLOYER} at "
                                      f"{first_at:%Y-%m-%dT%H:%M:%SZ}.")
    t = task(db, rid, "followup")
    assert (t.done_by, t.done_at, t.details) == (DEPLOYER, first_at, NOTES)
    assert writes(db, rid) == before
    assert len(events(db, rid, "followup_recorded")) == 1


@pytest.mark.parametrize("after, late", [(timedelta(0), False), (timedelta(minutes=1), True),
                                         (timedelta(hours=30), True)])
def test_a_record_after_the_due_time_is_flagged_late(db, clock, policy, after, late):
    rid = deployed(db, clock, policy)
    clock.set(FINISHED + timedelta(hours=24) + after)
    record_task(db, actor(DEPLOYER), rid, "followup", NOTES, clock, policy)
    assert events(db, rid, "followup_recorded")[0].after["late"] is late


def test_the_retrospective_of_a_major_release(db, clock, policy):
    rid = deployed(db, clock, policy, "major")
    due = task(db, rid, "retrospective").due_at
    clock.set(due + timedelta(hours=1))
    out = record_task(db, actor(REQUESTER), rid, "retrospective", {"notes": "went fine", "actions": "automate X"},
                      clock, policy)
    assert out.changed and out.message == f"The retrospective of REL-{rid} is recorded."
    ev = events(db, rid, "retrospective_recorded")[0]
    assert ev.after == {"kind": "retrospective", "notes": "went fine", "actions": "automate X",
                        "due_at": due.isoformat(), "late": True}
    note = row(db, f"note:{rid}:retrospective_recorded:")
    assert note.payload == {"event": "retrospective_recorded", "by": REQUESTER}
    assert task(db, rid, "followup").done_at is None  # one record does not close the other


def test_a_retrospective_not_owed_is_refused(db, clock, policy):
    rid = deployed(db, clock, policy, "minor")  # a successful minor release owes none
    out = record_task(db, actor(DEPLOYER), rid, "retrospective", {"notes": "anyway"}, clock, policy)
    assert_refused(db, rid, out, DEPLOYER, "retrospective_refused", "no_task")
    assert out.message == f"REL-{rid} owes no retrospective."
    assert task(db, rid, "retrospective") is None


def test_nothing_is_owed_before_the_deployment_ends(db, clock, policy):
    rid = deploying(db, clock, policy)
    out = record_task(db, actor(DEPLOYER), rid, "followup", NOTES, clock, policy)
    assert_refused(db, rid, out, DEPLOYER, "followup_refused", "no_task")
