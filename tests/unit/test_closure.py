"""Closure (QMS 4.4 step 6): the release manager signs off the complete release record last, after every
post-deployment sign-off and every aftercare task it owes; and a role Slack could not check is "try again",
never a refusal. Against the real database."""
from __future__ import annotations

from datetime import timedelta

import pytest

from commands.aftercare import record_task, sign_off
from commands.errors import CouldNotCheck
from commands.outcome import Actor
from commands.policy import Policy, PolicyError
from conftest import ROLES, actor
from test_aftercare import (DEPLOYER, FINISHED, NOTES, STABLE, assert_refused, deployed, followed_up, row,
                            signoffs, task, writes)
from unit_support import REQUESTER, actions, events, outbox_keys, release


def test_the_two_sign_offs_alone_do_not_close_the_release(db, clock, policy):
    """QMS 4.4 step 6: the release record is signed off by the release manager; qa_lead and operations
    (step 5) and an open 24-hour follow-up are not a closed release."""
    rid = deployed(db, clock, policy)
    clock.set(STABLE + timedelta(minutes=5))
    first = sign_off(db, actor("U0OPS"), rid, clock, policy)
    assert first.changed and "closed" not in first.message
    clock.advance(minutes=7)
    out = sign_off(db, actor("U0QA"), rid, clock, policy)
    assert out.changed and out.message == f"Your sign-off of REL-{rid} as qa_lead is recorded."
    assert release(db, rid).state == "stabilising"
    assert "closed" not in actions(db, rid)
    assert row(db, f"note:{rid}:closed:") is None


def test_the_release_manager_signs_off_last_and_closes_the_release(db, clock, policy):
    rid = deployed(db, clock, policy)
    clock.set(STABLE)
    sign_off(db, actor("U0OPS"), rid, clock, policy)
    sign_off(db, actor("U0QA"), rid, clock, policy)
    clock.advance(hours=3)
    followed_up(db, clock, policy, rid)
    assert release(db, rid).state == "stabilising"  # a recorded follow-up is not the release manager's sign-off
    now = clock.advance(minutes=10)
    out = sign_off(db, actor("U0RM"), rid, clock, policy, role_hint="release_manager")
    assert out.changed
    assert out.message == f"Your sign-off of REL-{rid} as release_manager is recorded. REL-{rid} is closed."
    assert release(db, rid).state == "closed"
    assert signoffs(db, rid) == [("operations", "U0OPS"), ("qa_lead", "U0QA"), ("release_manager", "U0RM")]
    assert actions(db, rid)[-2:] == ["signed_off", "closed"]
    [closed] = events(db, rid, "closed")
    assert (closed.actor, closed.at) == ("U0RM", now)
    assert closed.reason == ("the release manager signed off after every post-deployment sign-off and aftercare "
                             "record was in")
    assert (closed.before["state"], closed.after["state"]) == ("stabilising", "closed")
    note = row(db, f"note:{rid}:closed:")
    assert note.payload == {"event": "closed"} and note.kind == "thread_note"
    # closed is final: a late sign-off is refused
    late = sign_off(db, actor("U0QAGROUP"), rid, clock, policy)
    assert_refused(db, rid, late, "U0QAGROUP", "signoff_refused", "not_stabilising")


def test_the_release_manager_may_not_sign_before_the_other_sign_offs(db, clock, policy):
    rid = deployed(db, clock, policy)
    clock.set(STABLE)
    followed_up(db, clock, policy, rid)
    sign_off(db, actor("U0QA"), rid, clock, policy)
    before = writes(db, rid)[1:3]
    out = sign_off(db, actor("U0RM"), rid, clock, policy)
    assert_refused(db, rid, out, "U0RM", "signoff_refused", "closing_not_last")
    assert out.message == (f"The release manager signs off REL-{rid} last; still open: sign-off from operations.")
    assert writes(db, rid)[1:3] == before
    assert release(db, rid).state == "stabilising"


@pytest.mark.parametrize("type_, open_", [
    ("minor", "the 24-hour follow-up"),
    ("major", "the 24-hour follow-up, the retrospective"),
])
def test_the_release_manager_may_not_sign_before_the_aftercare_is_recorded(db, clock, policy, type_, open_):
    """Decided: the release manager signs off the complete record, so their sign-off waits for every open
    aftercare task too; the release therefore always closes on the release manager's sign-off."""
    rid = deployed(db, clock, policy, type_)
    clock.set(FINISHED + timedelta(hours=24))
    sign_off(db, actor("U0QA"), rid, clock, policy)
    sign_off(db, actor("U0OPS"), rid, clock, policy)
    out = sign_off(db, actor("U0RM"), rid, clock, policy, role_hint="release_manager")
    assert_refused(db, rid, out, "U0RM", "signoff_refused", "closing_not_last")
    assert out.message == f"The release manager signs off REL-{rid} last; still open: {open_}."
    assert ("release_manager", "U0RM") not in signoffs(db, rid)


def test_a_major_release_closes_once_its_retrospective_is_recorded_too(db, clock, policy):
    rid = deployed(db, clock, policy, "major")
    clock.set(FINISHED + timedelta(hours=24))
    sign_off(db, actor("U0QA"), rid, clock, policy)
    sign_off(db, actor("U0OPS"), rid, clock, policy)
    followed_up(db, clock, policy, rid)
    assert sign_off(db, actor("U0RM"), rid, clock, policy).refused
    assert record_task(db, actor(REQUESTER), rid, "retrospective", {"notes": "fine"}, clock, policy).changed
    assert release(db, rid).state == "stabilising"
    assert sign_off(db, actor("U0RM"), rid, clock, policy).changed
    assert release(db, rid).state == "closed"


def _reminder_rows(db, rid):
    return [k for k in outbox_keys(db) if k.startswith(f"reminder:{rid}:closing_signoff")]


@pytest.mark.parametrize("last", ["signoff", "followup"])
def test_the_release_manager_is_reminded_once_when_only_their_sign_off_is_left(db, clock, policy, last):
    rid = deployed(db, clock, policy)
    clock.set(STABLE)
    sign_off(db, actor("U0QA"), rid, clock, policy)
    if last == "signoff":
        followed_up(db, clock, policy, rid)
        assert _reminder_rows(db, rid) == []
        now = clock.advance(minutes=1)
        sign_off(db, actor("U0OPS"), rid, clock, policy)
    else:
        sign_off(db, actor("U0OPS"), rid, clock, policy)
        assert _reminder_rows(db, rid) == []
        now = clock.advance(minutes=1)
        followed_up(db, clock, policy, rid)
    assert _reminder_rows(db, rid) == [f"reminder:{rid}:closing_signoff:"]
    r = row(db, f"reminder:{rid}:closing_signoff:")
    assert (r.kind, r.due_at, r.payload) == ("reminder", now, {"reminder": "closing_signoff"})
    # repeats write nothing new
    sign_off(db, actor("U0OPS"), rid, clock, policy)
    record_task(db, actor(DEPLOYER), rid, "followup", NOTES, clock, policy)
    assert _reminder_rows(db, rid) == [f"reminder:{rid}:closing_signoff:"]


def test_a_release_manager_who_is_also_qa_lead_fills_one_role(db, clock):
    roles = {**ROLES, "qa_lead": ROLES["qa_lead"] + ["U0RMQA"], "release_manager": ["U0RM", "U0RMQA"]}
    pol = Policy.from_mapping({"roles": roles})
    both = Actor("U0RMQA", frozenset({"qa_lead", "release_manager"}))
    rid = deployed(db, clock, pol)
    clock.set(STABLE)
    assert sign_off(db, both, rid, clock, pol).changed  # the sign-off owed first
    assert signoffs(db, rid) == [("qa_lead", "U0RMQA")]
    sign_off(db, actor("U0OPS"), rid, clock, pol)
    followed_up(db, clock, pol, rid)
    out = sign_off(db, both, rid, clock, pol, role_hint="release_manager")
    assert_refused(db, rid, out, "U0RMQA", "signoff_refused", "one_person_one_role")
    assert release(db, rid).state == "stabilising"
    assert sign_off(db, actor("U0RM"), rid, clock, pol).changed
    assert release(db, rid).state == "closed"


def test_the_closing_role_comes_from_the_policy(db, clock):
    pol = Policy.from_mapping({"roles": ROLES, "deployment": {"closing_role": "engineering_lead"}})
    rid = deployed(db, clock, pol)
    clock.set(STABLE)
    sign_off(db, actor("U0QA"), rid, clock, pol)
    sign_off(db, actor("U0OPS"), rid, clock, pol)
    followed_up(db, clock, pol, rid)
    out = sign_off(db, actor("U0RM"), rid, clock, pol)
    assert_refused(db, rid, out, "U0RM", "signoff_refused", "no_signoff_role")
    assert sign_off(db, actor("U0EL"), rid, clock, pol).changed
    assert release(db, rid).state == "closed"


def test_policy_closing_role_and_stuck_grace_defaults_and_validation():
    d = Policy.default().deployment
    assert (d.closing_role, d.stuck_grace) == ("release_manager", timedelta(minutes=30))
    assert Policy.from_mapping({"deployment": {"stuck_grace": "1h"}}).deployment.stuck_grace == timedelta(hours=1)
    for bad, key in [({"closing_role": "boss"}, "deployment.closing_role"),
                     ({"closing_role": "qa_lead"}, "deployment.closing_role"),
                     ({"closing_role": ["release_manager"]}, "deployment.closing_role"),
                     ({"stuck_grace": "soon"}, "deployment.stuck_grace"),
                     ({"stuck_grace": 30}, "deployment.stuck_grace")]:
        with pytest.raises(PolicyError) as exc:
            Policy.from_mapping({"deployment": bad}, source="p.toml")
        assert exc.value.key == key


# --- roles Slack could not check (a user group lookup failed) -------------------------------------------------------

def test_a_sign_off_whose_role_could_not_be_checked_writes_and_audits_nothing(db, clock, policy):
    rid = deployed(db, clock, policy)
    clock.set(STABLE)
    before = writes(db, rid)
    unsure = Actor("U0QAGROUP", frozenset(), frozenset({"qa_lead"}))
    with pytest.raises(CouldNotCheck) as exc:
        sign_off(db, unsure, rid, clock, policy)
    assert "could not confirm whether you hold qa_lead" in exc.value.message
    assert writes(db, rid) == before
    assert events(db, rid, "signoff_refused") == []
    # when Slack answers again, the group member signs off
    assert sign_off(db, actor("U0QAGROUP"), rid, clock, policy).changed


def test_a_release_manager_who_may_owe_an_earlier_sign_off_is_not_refused_while_it_cannot_be_checked(db, clock,
                                                                                                     policy):
    rid = deployed(db, clock, policy)
    clock.set(STABLE)
    before = writes(db, rid)
    with pytest.raises(CouldNotCheck):
        sign_off(db, Actor("U0RM", frozenset({"release_manager"}), frozenset({"qa_lead"})), rid, clock, policy)
    assert writes(db, rid) == before


def test_a_real_non_member_is_still_refused_and_audited(db, clock, policy):
    rid = deployed(db, clock, policy)
    clock.set(STABLE)
    out = sign_off(db, Actor("U0DEV2", frozenset(), frozenset({"security"})), rid, clock, policy)
    assert_refused(db, rid, out, "U0DEV2", "signoff_refused", "no_signoff_role")


def test_a_task_record_whose_role_could_not_be_checked_writes_and_audits_nothing(db, clock, policy):
    rid = deployed(db, clock, policy)
    before = writes(db, rid)
    with pytest.raises(CouldNotCheck):
        record_task(db, Actor("U0X", frozenset(), frozenset({"operations"})), rid, "followup", NOTES, clock, policy)
    assert writes(db, rid) == before
    assert events(db, rid, "followup_refused") == []
    assert task(db, rid, "followup").done_at is None
