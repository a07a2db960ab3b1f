"""Alternative approver sets (QMS 3.7: the Emergency CAB, or a release manager and an engineering lead)
and the [emergency] policy section."""
from __future__ import annotations

from datetime import date, timedelta

import pytest

from commands.approval import GO, NOGO, CastVote, status
from commands.classification import Answers, classify, controls
from commands.policy import Policy, PolicyError

SETS = [{"cab": 2}, {"release_manager": 1, "engineering_lead": 1}]
UNION = {"cab": 2, "release_manager": 1, "engineering_lead": 1}


def go(user, role):
    return CastVote(user, role, GO)


@pytest.mark.parametrize("votes, which", [
    ([go("U0CAB1", "cab"), go("U0CAB2", "cab")], "cab ×2"),
    ([go("U0RM", "release_manager"), go("U0EL", "engineering_lead")], "release_manager + engineering_lead"),
    # a mix that completes one set still approves, by that set
    ([go("U0CAB1", "cab"), go("U0RM", "release_manager"), go("U0EL", "engineering_lead")],
     "release_manager + engineering_lead"),
])
def test_any_one_complete_set_approves_and_says_which(votes, which):
    st = status(UNION, votes, SETS)
    assert st.approved and st.approver_set == which
    assert st.missing() == {} and st.open_roles() == ()


@pytest.mark.parametrize("votes", [
    [],
    [go("U0CAB1", "cab")],                                          # half the CAB
    [go("U0CAB1", "cab"), go("U0RM", "release_manager")],          # half of each set: not one whole set
    [go("U0CAB1", "cab"), go("U0EL", "engineering_lead")],
    [go("U0RM", "release_manager")],
])
def test_partial_mixes_do_not_approve(votes):
    st = status(UNION, votes, SETS)
    assert not st.approved and st.approver_set is None


def test_a_nogo_blocks_even_a_complete_set():
    st = status(UNION, [go("U0CAB1", "cab"), go("U0CAB2", "cab"), CastVote("U0RM", "release_manager", NOGO, "no")],
                SETS)
    assert not st.approved and st.blocked


def test_what_is_missing_is_said_per_set_and_a_go_fills_a_role_some_set_needs():
    st = status(UNION, [go("U0CAB1", "cab")], SETS)
    assert st.missing_text() == "cab or release_manager + engineering_lead"
    assert st.missing() == {"cab": 1, "release_manager": 1, "engineering_lead": 1}
    assert set(st.open_roles()) == {"cab", "release_manager", "engineering_lead"}


def test_one_set_behaves_as_before():
    st = status({"release_manager": 1, "qa_lead": 1}, [go("U0RM", "release_manager")], [{"release_manager": 1,
                                                                                        "qa_lead": 1}])
    assert not st.alternatives and not st.approved and st.missing() == {"qa_lead": 1}
    st = status({"release_manager": 1}, [go("U0RM", "release_manager")])
    assert st.approved and st.approver_set is None


# --- classification: the union per alternative -----------------------------------------------------------------

def test_an_emergency_gets_both_alternative_sets():
    c = classify(Policy.default(), Answers(incident=True), "emergency")
    assert c.approver_sets == SETS and c.required_roles == UNION


def test_security_joins_every_set():
    c = classify(Policy.default(), Answers(incident=True, sensitive=True), "emergency")
    assert c.approver_sets == [{"cab": 2, "security": 1},
                               {"release_manager": 1, "engineering_lead": 1, "security": 1}]


def test_a_stricter_requested_type_adds_its_roles_to_every_alternative():
    # an incident asked for as minor: minor's release manager and QA lead join each way of approving
    c = classify(Policy.default(), Answers(incident=True), "minor")
    assert c.effective == "emergency"
    assert c.approver_sets == [{"cab": 2, "release_manager": 1, "qa_lead": 1},
                               {"release_manager": 1, "engineering_lead": 1, "qa_lead": 1}]
    # neither alternative approves without the QA lead
    votes = [go("U0CAB1", "cab"), go("U0CAB2", "cab"), go("U0RM", "release_manager")]
    assert not status(c.required_roles, votes, c.approver_sets).approved
    assert status(c.required_roles, [*votes, go("U0QA", "qa_lead")], c.approver_sets).approver_set == \
        "cab ×2 + release_manager + qa_lead"


def test_a_set_that_includes_another_is_dropped_as_redundant():
    # major's {cab 2, rm, security} includes emergency's {cab 2}: with it, the second alternative only adds roles
    c = controls(Policy.default(), ("emergency", "major"))
    assert c.sets() == ({"cab": 2, "release_manager": 1, "security": 1},)


def test_a_type_without_the_emergency_track_drops_it():
    # the cab approves a major, but a major has no bridge or assessment: asking major for an incident is recorded
    c = classify(Policy.default(), Answers(incident=True), "major")
    assert c.misclassified and c.effective == "emergency"
    assert any("emergency track" in m for m in c.missing)


# --- policy ------------------------------------------------------------------------------------------------------

def test_the_old_single_table_form_is_one_set():
    p = Policy.from_mapping({"types": {"emergency": {"approvers": {"release_manager": 1, "engineering_lead": 1}}}})
    assert [dict(s) for s in p.type("emergency").approver_sets] == [{"release_manager": 1, "engineering_lead": 1}]
    c = classify(p, Answers(incident=True), "emergency")
    assert c.approver_sets is None and c.required_roles == {"release_manager": 1, "engineering_lead": 1}


@pytest.mark.parametrize("approvers, key", [
    ([], "types.emergency.approvers"),
    ([{"cab": 2}, {}], "types.emergency.approvers[1]"),
    ([{"cab": 2}, {"wizard": 1}], "types.emergency.approvers[1].wizard"),
    ([{"cab": 0}], "types.emergency.approvers[0].cab"),
    ([{"cab": 2}, {"cab": 2}], "types.emergency.approvers[1]"),
])
def test_bad_approver_sets_are_refused_at_start_up(approvers, key):
    with pytest.raises(PolicyError) as info:
        Policy.from_mapping({"types": {"emergency": {"approvers": approvers}}}, source="t.toml")
    assert info.value.key == key


def test_the_emergency_section_defaults():
    e = Policy.default().emergency
    assert (e.window, e.bridge, e.channel_name) == (timedelta(hours=4), "channel", "rel-{n}-{service}-emergency")
    assert (e.assessment_target, e.approval_target) == (timedelta(minutes=15), timedelta(minutes=30))
    assert (e.min_monitoring, e.extended_monitoring) == (timedelta(minutes=30), timedelta(hours=24))
    assert (e.change_request_within, e.planning_within, e.test_review_within, e.docs_within) == (
        timedelta(hours=4), timedelta(hours=24), timedelta(hours=24), timedelta(hours=24))
    assert (e.retrospective_business_days, e.frequency_limit, e.frequency_days) == (5, 2, 30)
    assert e.quarterly_review is None  # the end of each calendar quarter (commands.frequency.review_due)


def test_the_emergency_section_is_immutable_and_overridable():
    e = Policy.from_mapping({"emergency": {"window": "2h", "bridge": "thread", "quarterly_review": "2027-04-15"}},
                            source="t").emergency
    assert (e.window, e.bridge, e.quarterly_review) == (timedelta(hours=2), "thread", date(2027, 4, 15))
    with pytest.raises(Exception):
        e.window = timedelta(hours=9)  # type: ignore[misc]


@pytest.mark.parametrize("spec, key", [
    ({"window": "soon"}, "emergency.window"),
    ({"window": "2d"}, "emergency.window"),
    ({"bridge": "email"}, "emergency.bridge"),
    ({"channel_name": "emergency"}, "emergency.channel_name"),
    ({"channel_name": "rel-{n}-{team}"}, "emergency.channel_name"),
    ({"frequency_limit": 0}, "emergency.frequency_limit"),
    ({"frequency_days": True}, "emergency.frequency_days"),
    ({"retrospective_business_days": "5"}, "emergency.retrospective_business_days"),
    ({"quarterly_review": "next quarter"}, "emergency.quarterly_review"),
    ({"assessment_target": 15}, "emergency.assessment_target"),
    ({"pager": "on"}, "emergency.pager"),
])
def test_bad_emergency_values_are_refused_at_start_up(spec, key):
    with pytest.raises(PolicyError) as info:
        Policy.from_mapping({"emergency": spec}, source="t.toml")
    assert info.value.key == key


# --- rendering ---------------------------------------------------------------------------------------------------

def test_the_approval_message_shows_each_set_and_which_one_approved():
    from bot.messages.aftercare import thread_note
    from bot.messages.common import BLOCK_LIMIT, TEXT_LIMIT
    from bot.messages.release import roles_block
    from storage.models import Release
    r = Release(id=7, service="payments", version="hotfix", environment="production", requested_type="emergency",
                derived_type="emergency", effective_type="emergency", required_roles=UNION, approver_sets=SETS,
                tz="UTC", duration_minutes=240, summary="x", requester_id="U0DEV", state="pending")
    waiting = roles_block(r, status(UNION, [go("U0CAB1", "cab")], SETS))[0]["text"]["text"]
    assert "Any one of these sets approves" in waiting and "*cab* 1/2: <@U0CAB1>" in waiting
    assert "*release_manager* 0/1: waiting" in waiting and len(waiting) <= TEXT_LIMIT
    [done] = roles_block(r, status(UNION, [go("U0RM", "release_manager"), go("U0EL", "engineering_lead")], SETS))
    assert "Approved by the set *release_manager + engineering_lead*" in done["text"]["text"]
    text, blocks = thread_note("approved", r, {"approver_set": "cab ×2"})
    assert "approved* by the approver set cab ×2" in text and (blocks is None or len(blocks) <= BLOCK_LIMIT)
    # a single set keeps the old rendering
    single = roles_block(r, status({"release_manager": 1}, []))[0]["text"]["text"]
    assert "Any one" not in single and "*release_manager* 0/1" in single
