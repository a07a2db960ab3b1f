"""Separation of duties (QMS §3.4, §3.6), enforced by commands.vote against the real database."""
from __future__ import annotations

from datetime import timedelta

import pytest

from commands.errors import CouldNotCheck, InputError, NotFound
from commands.outcome import Actor, could_not_check
from commands.policy import Policy
from commands.record import show_release
from commands.release import cancel_release
from commands.vote import cast_vote, withdraw_vote
from conftest import ROLES, START, actor
from unit_support import actions, counts, dev, events, new_release, outbox_keys, release, votes

# one line, no answers: cab ×2 + release_manager + security; 22 days out, past major's 14-day lead time
MAJOR = {"type": "major", "start": "2026-12-15 14:00"}


def go(db, clock, user, rid, **kw):
    who = user if isinstance(user, Actor) else actor(user)
    return cast_vote(db, who, rid, "go", clock, **kw)


def nogo(db, clock, user, rid, reason="tests are red", **kw):
    who = user if isinstance(user, Actor) else actor(user)
    return cast_vote(db, who, rid, "nogo", clock, note=reason, **kw)


def assert_refused(db, clock, out, rid, user, code, action="vote_refused"):
    assert out.refused and not out.changed
    ev = events(db, rid, action)[-1]
    assert ev.actor == user
    assert ev.after["code"] == code
    assert ev.reason == out.message
    assert ev.at == clock.now()
    return ev


# --- the requester never votes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("requester, decision", [("U0QA", "go"), ("U0RM", "go"), ("U0RM", "nogo")])
def test_requester_cannot_vote_on_their_own_release(db, clock, policy, requester, decision):
    rid = new_release(db, clock, policy, requester=actor(requester))
    clock.advance(minutes=3)
    keys = outbox_keys(db)
    out = cast_vote(db, actor(requester), rid, decision, clock, note="mine")
    ev = assert_refused(db, clock, out, rid, requester, "requester")
    assert ev.after["decision"] == decision
    assert "requester never approves their own release" in out.message
    assert votes(db, rid) == []
    assert release(db, rid).state == "pending"
    assert outbox_keys(db) == keys  # a refusal announces nothing
    assert actions(db, rid) == ["requested", "vote_refused"]


def test_requester_refusal_stands_even_after_others_approve(db, clock, policy):
    rid = new_release(db, clock, policy, requester=actor("U0QA"))
    go(db, clock, "U0RM", rid)
    out = go(db, clock, "U0QA", rid)
    assert out.refused
    go(db, clock, "U0QAGROUP", rid)
    r = release(db, rid)
    assert r.state == "approved"
    assert {v.voter_id for v in votes(db, rid)} == {"U0RM", "U0QAGROUP"}


# --- a Go fills a role the release needs, held by the voter -------------------------------------------------------

@pytest.mark.parametrize("user", ["U0PL", "U0EXEC", "U0DEV2"])
def test_voter_without_a_required_role_is_refused(db, clock, policy, user):
    rid = new_release(db, clock, policy)  # minor: release_manager + qa_lead
    out = go(db, clock, user, rid)
    assert_refused(db, clock, out, rid, user, "no_required_role")
    assert "release_manager ×1" in out.message and "qa_lead ×1" in out.message
    assert votes(db, rid) == []


def test_no_go_from_someone_without_a_required_role_is_refused(db, clock, policy):
    rid = new_release(db, clock, policy)
    out = nogo(db, clock, "U0OPS", rid)
    assert_refused(db, clock, out, rid, "U0OPS", "no_required_role")
    assert votes(db, rid) == []
    go(db, clock, "U0RM", rid)
    go(db, clock, "U0QA", rid)
    assert release(db, rid).state == "approved"


def test_go_when_your_role_is_already_filled_by_others_is_refused(db, clock, policy):
    rid = new_release(db, clock, policy)
    assert go(db, clock, "U0QA", rid).changed
    out = go(db, clock, "U0QAGROUP", rid)
    assert_refused(db, clock, out, rid, "U0QAGROUP", "role_filled")
    assert "qa_lead (U0QA)" in out.message
    assert [(v.voter_id, v.role) for v in votes(db, rid)] == [("U0QA", "qa_lead")]
    assert release(db, rid).state == "pending"


def test_go_after_approval_from_a_filled_role_is_refused_and_does_not_reannounce(db, clock, policy):
    rid = new_release(db, clock, policy)
    go(db, clock, "U0RM", rid)
    go(db, clock, "U0QA", rid)
    out = go(db, clock, "U0QAGROUP", rid)
    assert_refused(db, clock, out, rid, "U0QAGROUP", "role_filled")
    assert len(events(db, rid, "approved")) == 1
    assert release(db, rid).state == "approved"


# --- one person fills one role ------------------------------------------------------------------------------------

@pytest.fixture
def overlap_policy() -> Policy:
    roles = {**ROLES, "cab": ROLES["cab"] + ["U0BOTH"], "release_manager": ROLES["release_manager"] + ["U0BOTH"]}
    return Policy.from_mapping({"roles": roles}, source="overlapping roles")


BOTH = Actor("U0BOTH", frozenset({"cab", "release_manager"}))


def test_one_person_cannot_fill_two_roles(db, clock, overlap_policy):
    assert set(overlap_policy.role_members("cab")) >= {"U0BOTH"}
    assert overlap_policy.role_members("release_manager") == ("U0RM", "U0BOTH")
    rid = new_release(db, clock, overlap_policy, **MAJOR)
    first = go(db, clock, BOTH, rid)
    assert first.changed and first.data["role"] == "cab"
    n_events = len(events(db, rid))
    again = go(db, clock, BOTH, rid, role_hint="release_manager")
    assert not again.changed
    assert "already recorded" in again.message and "cab" in again.message
    assert len(events(db, rid)) == n_events
    assert [(v.voter_id, v.role, v.decision) for v in votes(db, rid)] == [("U0BOTH", "cab", "go")]
    go(db, clock, "U0CAB1", rid)
    go(db, clock, "U0SEC", rid)
    rec = show_release(db, rid)
    assert rec.status.missing() == {"release_manager": 1}
    assert release(db, rid).state == "pending"
    out = go(db, clock, "U0RM", rid)
    assert out.data["moved"] == "approved"
    assert release(db, rid).state == "approved"


def test_multi_role_holder_picks_a_role_by_hint_and_then_holds_only_that_one(db, clock, overlap_policy):
    rid = new_release(db, clock, overlap_policy, **MAJOR)
    assert go(db, clock, BOTH, rid, role_hint="release_manager").data["role"] == "release_manager"
    assert not go(db, clock, BOTH, rid).changed
    go(db, clock, "U0CAB1", rid)
    go(db, clock, "U0SEC", rid)
    assert show_release(db, rid).status.missing() == {"cab": 1}
    go(db, clock, "U0CAB2", rid)
    assert release(db, rid).state == "approved"


def test_multi_role_holder_gets_the_open_role(db, clock, overlap_policy):
    rid = new_release(db, clock, overlap_policy, **MAJOR)
    go(db, clock, "U0CAB1", rid)
    go(db, clock, "U0CAB2", rid)
    assert go(db, clock, BOTH, rid).data["role"] == "release_manager"


def test_switching_roles_goes_through_withdrawal_and_never_adds_a_second_row(db, clock, overlap_policy):
    rid = new_release(db, clock, overlap_policy, **MAJOR)
    go(db, clock, BOTH, rid)                      # cab
    nogo(db, clock, BOTH, rid, reason="wait")     # keeps the cab seat
    assert [(v.role, v.decision) for v in votes(db, rid)] == [("cab", "nogo")]
    withdraw_vote(db, BOTH, rid, clock)
    go(db, clock, BOTH, rid, role_hint="release_manager")
    assert [(v.voter_id, v.role, v.decision) for v in votes(db, rid)] == [("U0BOTH", "release_manager", "go")]
    go(db, clock, "U0CAB1", rid)
    go(db, clock, "U0SEC", rid)
    assert show_release(db, rid).status.missing() == {"cab": 1}


def test_role_counts_need_distinct_people(db, clock, policy):
    rid = new_release(db, clock, policy, **MAJOR)
    assert release(db, rid).required_roles == {"cab": 2, "release_manager": 1, "security": 1}
    go(db, clock, "U0CAB1", rid)
    assert not go(db, clock, "U0CAB1", rid).changed
    assert not go(db, clock, "U0CAB1", rid, role_hint="cab").changed
    go(db, clock, "U0RM", rid)
    go(db, clock, "U0SEC", rid)
    rec = show_release(db, rid)
    assert rec.status.role("cab").goes == ("U0CAB1",)
    assert rec.status.missing() == {"cab": 1}
    assert release(db, rid).state == "pending"
    go(db, clock, "U0CAB2", rid)
    assert release(db, rid).state == "approved"
    assert show_release(db, rid).status.role("cab").goes == ("U0CAB1", "U0CAB2")
    # a third CAB member finds the seats taken
    assert go(db, clock, "U0CAB3", rid).refused


# --- No-go ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reason", [None, "", "   \n"])
def test_no_go_needs_a_reason_and_writes_nothing(db, clock, policy, reason):
    rid = new_release(db, clock, policy)
    before = counts(db)
    with pytest.raises(InputError) as info:
        cast_vote(db, actor("U0QA"), rid, "nogo", clock, note=reason)
    assert info.value.field == "reason"
    assert "reason" in info.value.message and info.value.form
    assert counts(db) == before


def test_no_go_blocks_approval_until_withdrawn(db, clock, policy):
    rid = new_release(db, clock, policy)
    out = nogo(db, clock, "U0QAGROUP", rid, reason="perf regression 12%")
    assert out.changed and out.data["role"] == "qa_lead"
    assert "blocked until you withdraw" in out.message
    go(db, clock, "U0QA", rid)
    out = go(db, clock, "U0RM", rid)
    assert out.data["moved"] is None
    rec = show_release(db, rid)
    assert rec.status.blocked and not rec.status.approved
    assert rec.status.missing() == {}
    assert [v.note for v in rec.status.nogos] == ["perf regression 12%"]
    assert release(db, rid).state == "pending"
    assert not any(k.startswith(f"note:{rid}:approved") for k in outbox_keys(db))
    clock.advance(minutes=10)
    assert withdraw_vote(db, actor("U0QAGROUP"), rid, clock).changed
    r = release(db, rid)
    assert r.state == "approved"
    [approved] = events(db, rid, "approved")
    assert approved.actor == "U0QAGROUP" and approved.at == clock.now()
    assert [k for k in outbox_keys(db) if k.startswith(f"note:{rid}:approved")] == [f"note:{rid}:approved:1"]


def test_no_go_from_a_holder_of_a_filled_role_still_blocks(db, clock, policy):
    rid = new_release(db, clock, policy)
    go(db, clock, "U0QA", rid)
    assert nogo(db, clock, "U0QAGROUP", rid).changed
    go(db, clock, "U0RM", rid)
    assert release(db, rid).state == "pending"


def test_changing_go_to_no_go_after_approval_revokes_it(db, clock, policy):
    rid = new_release(db, clock, policy)
    go(db, clock, "U0RM", rid)
    go(db, clock, "U0QA", rid)
    assert release(db, rid).state == "approved"
    clock.advance(hours=2)
    out = nogo(db, clock, "U0QA", rid, reason="found a data loss bug")
    assert out.changed and out.data == {"role": "qa_lead", "moved": "revoked"}
    r = release(db, rid)
    assert r.state == "pending"
    [revoked] = events(db, rid, "approval_revoked")
    assert revoked.actor == "U0QA" and revoked.at == clock.now()
    assert revoked.before["state"] == "approved" and revoked.after["state"] == "pending"
    assert f"note:{rid}:approval_revoked:1" in outbox_keys(db)
    assert [(v.voter_id, v.role, v.decision, v.note) for v in votes(db, rid)] == \
        [("U0RM", "release_manager", "go", None), ("U0QA", "qa_lead", "nogo", "found a data loss bug")]
    assert actions(db, rid) == ["requested", "vote_go", "vote_go", "approved", "vote_nogo", "approval_revoked"]


def test_withdrawing_a_go_after_approval_revokes_it(db, clock, policy):
    rid = new_release(db, clock, policy)
    go(db, clock, "U0RM", rid)
    go(db, clock, "U0QA", rid)
    withdraw_vote(db, actor("U0RM"), rid, clock)
    assert release(db, rid).state == "pending"
    assert len(events(db, rid, "approval_revoked")) == 1
    # going again approves a second time, announced under a new key
    go(db, clock, "U0RM", rid)
    assert release(db, rid).state == "approved"
    assert [k for k in outbox_keys(db) if k.startswith(f"note:{rid}:approved")] == \
        [f"note:{rid}:approved:1", f"note:{rid}:approved:2"]


# --- idempotency and exactly-once approval --------------------------------------------------------------------------

@pytest.mark.parametrize("decision", ["go", "nogo"])
def test_double_vote_is_idempotent(db, clock, policy, decision):
    rid = new_release(db, clock, policy)
    first = cast_vote(db, actor("U0QA"), rid, decision, clock, note="why")
    assert first.changed
    before = counts(db)
    clock.advance(seconds=2)
    second = cast_vote(db, actor("U0QA"), rid, decision, clock, note="why")
    assert not second.changed and not second.refused
    assert "already recorded" in second.message
    assert counts(db) == before
    [v] = votes(db, rid)
    assert v.decided_at == START  # the first decision stands
    assert release(db, rid).revision == first.release.revision


def test_approval_happens_exactly_once(db, clock, policy):
    rid = new_release(db, clock, policy)
    assert go(db, clock, "U0RM", rid).data["moved"] is None
    out = go(db, clock, "U0QA", rid)
    assert out.data["moved"] == "approved" and "is now approved" in out.message
    go(db, clock, "U0QA", rid)
    go(db, clock, "U0RM", rid)
    go(db, clock, "U0QAGROUP", rid)  # refused: seat filled
    assert release(db, rid).approval_seq == 1
    [approved] = events(db, rid, "approved")
    assert approved.actor == "U0QA"
    assert approved.before["state"] == "pending" and approved.after["state"] == "approved"
    notes = [k for k in outbox_keys(db) if k.startswith(f"note:{rid}:approved")]
    assert notes == [f"note:{rid}:approved:1"]
    assert len(votes(db, rid)) == 2


# --- role hints -----------------------------------------------------------------------------------------------------

def test_role_hint_that_is_not_a_role_is_an_input_error(db, clock, policy):
    rid = new_release(db, clock, policy)
    before = counts(db)
    with pytest.raises(InputError) as info:
        go(db, clock, "U0QA", rid, role_hint="qa")
    assert info.value.field == "role" and "'qa' is not a role" in info.value.message
    assert counts(db) == before


def test_role_hint_for_a_role_the_release_does_not_need(db, clock, policy):
    rid = new_release(db, clock, policy)
    out = go(db, clock, "U0QA", rid, role_hint="cab")
    assert_refused(db, clock, out, rid, "U0QA", "role_not_required")
    assert votes(db, rid) == []


def test_role_hint_for_a_role_the_voter_does_not_hold(db, clock, policy):
    rid = new_release(db, clock, policy)
    out = go(db, clock, "U0QA", rid, role_hint="release_manager")
    assert_refused(db, clock, out, rid, "U0QA", "role_not_held")
    assert votes(db, rid) == []


def test_role_hint_for_a_filled_role_is_refused_even_if_another_role_is_open(db, clock, overlap_policy):
    rid = new_release(db, clock, overlap_policy, **MAJOR)
    go(db, clock, "U0RM", rid)
    out = go(db, clock, BOTH, rid, role_hint="release_manager")
    assert_refused(db, clock, out, rid, "U0BOTH", "role_filled")
    assert go(db, clock, BOTH, rid, role_hint="cab").data["role"] == "cab"


def test_good_role_hint(db, clock, policy):
    rid = new_release(db, clock, policy)
    out = nogo(db, clock, "U0QA", rid, role_hint="qa_lead")
    assert out.data["role"] == "qa_lead"


# --- cancelled and missing releases ---------------------------------------------------------------------------------

def test_votes_on_a_cancelled_release_are_refused(db, clock, policy):
    rid = new_release(db, clock, policy)
    go(db, clock, "U0RM", rid)
    cancel_release(db, dev(), rid, "superseded by 2.3.2", clock)
    clock.advance(minutes=1)
    out = go(db, clock, "U0QA", rid)
    assert_refused(db, clock, out, rid, "U0QA", "not_live")
    out = nogo(db, clock, "U0QA", rid)
    assert_refused(db, clock, out, rid, "U0QA", "not_live")
    out = withdraw_vote(db, actor("U0RM"), rid, clock)
    assert_refused(db, clock, out, rid, "U0RM", "not_live", action="withdraw_refused")
    assert [(v.voter_id, v.decision) for v in votes(db, rid)] == [("U0RM", "go")]
    assert release(db, rid).state == "cancelled"


def test_withdraw_without_a_vote_writes_nothing(db, clock, policy):
    rid = new_release(db, clock, policy)
    before = counts(db)
    out = withdraw_vote(db, actor("U0QA"), rid, clock)
    assert not out.changed and "no vote" in out.message
    withdraw_vote(db, actor("U0QA"), rid, clock)
    assert counts(db) == before


def test_withdraw_twice(db, clock, policy):
    rid = new_release(db, clock, policy)
    go(db, clock, "U0QA", rid)
    assert withdraw_vote(db, actor("U0QA"), rid, clock).changed
    before = counts(db)
    assert not withdraw_vote(db, actor("U0QA"), rid, clock).changed
    assert counts(db) == before
    [v] = votes(db, rid)
    assert v.decision == "withdrawn"


def test_vote_on_a_missing_release(db, clock, policy):
    with pytest.raises(NotFound):
        go(db, clock, "U0QA", 999)
    with pytest.raises(NotFound):
        withdraw_vote(db, actor("U0QA"), 999, clock)


# --- what a vote records --------------------------------------------------------------------------------------------

def test_vote_row_and_event(db, clock, policy):
    rid = new_release(db, clock, policy)
    clock.advance(minutes=7)
    out = go(db, clock, "U0RM", rid, note="  looks good ")
    assert out.message == f"Your Go on REL-{rid} is recorded as release_manager."
    [v] = votes(db, rid)
    assert (v.voter_id, v.role, v.decision, v.note, v.round) == ("U0RM", "release_manager", "go", "looks good", 1)
    assert v.decided_at == START + timedelta(minutes=7)
    [ev] = events(db, rid, "vote_go")
    assert ev.actor == "U0RM" and ev.at == clock.now()
    assert ev.before["vote"] is None
    assert ev.after["vote"] == {"voter": "U0RM", "role": "release_manager", "decision": "go",
                                "note": "looks good", "round": 1}
    assert ev.reason == "looks good"
    r = release(db, rid)
    assert r.updated_at == clock.now() and r.revision == 1
    assert f"approval:{rid}:event:{ev.id}" in outbox_keys(db)


# --- roles Slack could not confirm just now (Actor.unresolved) ----------------------------------------------------

def unsure(user_id: str, roles=(), unresolved=()) -> Actor:
    return Actor(user_id, frozenset(roles), frozenset(unresolved))


@pytest.mark.parametrize("decision", ["go", "nogo"])
def test_unconfirmed_role_and_nothing_else_asks_to_try_again_and_writes_nothing(db, clock, policy, decision):
    rid = new_release(db, clock, policy)
    before = counts(db)
    with pytest.raises(CouldNotCheck) as info:
        cast_vote(db, unsure("U0QAGROUP", unresolved={"qa_lead"}), rid, decision, clock, note="r")
    assert info.value.message == could_not_check(["qa_lead"])  # the one wording, from commands.outcome
    assert counts(db) == before  # not an audited refusal: nobody decided anything


def test_unconfirmed_role_does_not_stop_a_go_for_a_confirmed_open_role(db, clock, policy):
    rid = new_release(db, clock, policy)
    out = go(db, clock, unsure("U0X", roles={"release_manager"}, unresolved={"qa_lead"}), rid)
    assert out.changed and out.data["role"] == "release_manager"


def test_unconfirmed_role_when_the_confirmed_one_is_filled_asks_to_try_again(db, clock, policy):
    rid = new_release(db, clock, policy)
    go(db, clock, "U0QA", rid)
    before = counts(db)
    with pytest.raises(CouldNotCheck):
        go(db, clock, unsure("U0X", roles={"qa_lead"}, unresolved={"release_manager"}), rid)
    assert counts(db) == before


def test_unconfirmed_role_the_release_does_not_need_changes_nothing(db, clock, policy):
    rid = new_release(db, clock, policy)
    out = go(db, clock, unsure("U0X", unresolved={"cab"}), rid)
    assert_refused(db, clock, out, rid, "U0X", "no_required_role")


def test_no_go_with_a_confirmed_role_is_recorded_despite_an_unconfirmed_one(db, clock, policy):
    rid = new_release(db, clock, policy)
    go(db, clock, "U0QA", rid)
    out = nogo(db, clock, unsure("U0X", roles={"qa_lead"}, unresolved={"release_manager"}), rid)
    assert out.changed and out.data["role"] == "qa_lead"


def test_asking_for_an_unconfirmed_role_by_name_is_not_refused_as_not_held(db, clock, policy):
    """`/release go REL-1 role=release_manager` while Slack cannot say whether the voter is a release
    manager: we do not know that they lack it, so the answer is 'try again', not an audited
    'You do not hold the release_manager role'."""
    rid = new_release(db, clock, policy)
    voter = unsure("U0X", roles={"qa_lead"}, unresolved={"release_manager"})
    before = counts(db)
    with pytest.raises(CouldNotCheck) as info:
        go(db, clock, voter, rid, role_hint="release_manager")
    assert "try again" in info.value.message
    assert counts(db) == before
