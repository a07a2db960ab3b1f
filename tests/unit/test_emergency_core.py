"""Opening an emergency (QMS 4.6), its assessment, and co-approval after it (QMS 3.7, 4.2)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from commands.blackout import add_blackout
from commands.emergency import assess, open_emergency
from commands.errors import InputError
from commands.vote import cast_vote
from conftest import START, actor
from storage.models import Emergency, Outbox, ReleaseFlag
from unit_support import actions, assessed, counts, dev, events, new_release, release

LINE = {"service": "payments", "incident": "INC-4211", "summary": "Stop double charges"}
FULL = {"blast_radius": "payments checkout only", "rollback": "redeploy 2.3.0", "scope": "confirmed",
        "ci": "passed"}


def opened(db, clock, policy, **fields):
    out = open_emergency(db, dev(), {**LINE, **fields}, clock, policy)
    assert out.changed, out.message
    return out


def emergency(db, rid) -> Emergency:
    with Session(db, expire_on_commit=False) as s:
        return s.exec(select(Emergency).where(Emergency.release_id == rid)).one()


def flags(db, rid) -> list[str]:
    with Session(db) as s:
        return [f.kind for f in s.exec(select(ReleaseFlag).where(ReleaseFlag.release_id == rid))]


# --- opening -----------------------------------------------------------------------------------------------------

def test_emergency_opens_now_for_the_policy_window_with_no_planning_flags(db, clock, policy):
    out = opened(db, clock, policy)
    r = release(db, out.release.id)
    assert (r.effective_type, r.start_at, r.end_at) == ("emergency", START, START + timedelta(hours=4))
    assert r.version == "hotfix" and r.summary == "Stop double charges"
    assert flags(db, r.id) == []  # an emergency's window opens now: no lead-time or window flag
    em = emergency(db, r.id)
    assert em.incident == "INC-4211" and not em.security and em.opened_at == START
    assert (em.assessment_target_minutes, em.approval_target_minutes) == (15, 30)
    assert r.approver_sets == [{"cab": 2}, {"release_manager": 1, "engineering_lead": 1}]
    # the requester is told the id and where the bridge will be
    assert "REL-1" in out.message and "#rel-1-payments-emergency" in out.message
    assert "cab ×2 or release_manager + engineering_lead" in out.message
    with Session(db) as s:
        assert [o.key for o in s.exec(select(Outbox).where(Outbox.kind == "bridge_open"))] == ["bridge-open:1"]


def test_an_emergency_needs_its_incident_and_writes_nothing_without_it(db, clock, policy):
    with pytest.raises(InputError) as info:
        open_emergency(db, dev(), {**LINE, "incident": " "}, clock, policy)
    assert info.value.field == "incident" and "QMS 4.6" in info.value.message
    assert counts(db) == (0, 0, 0, 0) and events(db) == []


def test_a_one_line_request_answering_incident_needs_the_reference_too(db, clock, policy):
    from unit_support import request
    from commands.errors import FieldErrors
    with pytest.raises(FieldErrors) as info:
        request(db, clock, policy, type="emergency", start="2026-11-23 09:00", tz="UTC", incident="")
    assert "incident" in info.value.errors
    assert counts(db) == (0, 0, 0, 0)


def test_security_yes_adds_security_to_every_set(db, clock, policy):
    r = release(db, opened(db, clock, policy, security="yes").release.id)
    assert r.approver_sets == [{"cab": 2, "security": 1},
                               {"release_manager": 1, "engineering_lead": 1, "security": 1}]
    assert emergency(db, r.id).security


@pytest.mark.parametrize("fields, field", [({"security": "maybe"}, "security"), ({"service": "pay ments"}, "service"),
                                           ({"summary": ""}, "summary")])
def test_bad_emergency_input_writes_nothing(db, clock, policy, fields, field):
    with pytest.raises(InputError) as info:
        open_emergency(db, dev(), {**LINE, **fields}, clock, policy)
    assert info.value.field == field and counts(db) == (0, 0, 0, 0)


def test_an_emergency_in_a_blackout_still_needs_the_executive(db, clock, policy):
    # QMS 5.1 names no exception: the emergency skips planning, not the blackout's VP-level override
    assert add_blackout(db, actor("U0RM"), {"name": "Close", "start": "2026-11-23 08:00", "end": "2026-11-23 18:00",
                                            "tz": "UTC"}, clock, policy).changed
    out = opened(db, clock, policy)
    assert flags(db, out.release.id) == ["blackout"] and "blackout" in out.message
    assessed(db, clock, out.release.id)
    for user in ("U0CAB1", "U0CAB2"):
        cast_vote(db, actor(user), out.release.id, "go", clock)
    assert release(db, out.release.id).state == "pending"


# --- assessment ---------------------------------------------------------------------------------------------------

def test_each_item_is_audited_once_and_completion_is_timed(db, clock, policy):
    rid = opened(db, clock, policy).release.id
    clock.advance(minutes=4)
    out = assess(db, "U0OPS", rid, {"blast_radius": "checkout only", "scope": "confirmed"}, clock, policy)
    assert out.changed and "still needs: rollback option, automated CI checks passed" in out.message
    again = assess(db, "U0OPS", rid, {"blast_radius": "checkout only"}, clock, policy)  # a double click
    assert not again.changed and "Already recorded" in again.message
    assert emergency(db, rid).assessed_at is None
    clock.advance(minutes=8)
    out = assess(db, "U0EL", rid, {"rollback": "redeploy 2.3.0", "ci": "passed", "scope": "confirmed"}, clock,
                 policy)
    assert out.changed and "complete" in out.message
    em = emergency(db, rid)
    assert em.assessed_at == START + timedelta(minutes=12)
    assert (em.blast_radius, em.blast_radius_by, em.rollback_option, em.ci_passed_by) == (
        "checkout only", "U0OPS", "redeploy 2.3.0", "U0EL")
    recorded = events(db, rid, "assessment_recorded")
    assert sorted(e.after["item"] for e in recorded) == ["blast_radius", "ci", "rollback", "scope"]
    [done] = events(db, rid, "assessment_complete")
    assert done.after == {"assessment_minutes": 12.0, "assessment_target_minutes": 15,
                          "assessment_within_target": True}


def test_an_assessment_past_its_target_is_recorded_as_such(db, clock, policy):
    rid = opened(db, clock, policy).release.id
    clock.advance(minutes=20)
    assess(db, "U0OPS", rid, FULL, clock, policy)
    [done] = events(db, rid, "assessment_complete")
    assert done.after["assessment_within_target"] is False and done.after["assessment_minutes"] == 20.0


@pytest.mark.parametrize("fields", [{}, {"scope": "yes"}, {"ci": "failed"}, {"blast_radius": " "},
                                    {"blast_radius": "x" * 2001}, {"severity": "p1"}])
def test_bad_assessment_input_writes_nothing(db, clock, policy, fields):
    rid = opened(db, clock, policy).release.id
    before = len(events(db, rid))
    with pytest.raises(InputError):
        assess(db, "U0OPS", rid, fields, clock, policy)
    assert len(events(db, rid)) == before


def test_a_release_that_is_not_an_emergency_has_no_assessment(db, clock, policy):
    rid = new_release(db, clock, policy)
    before = len(events(db, rid))
    with pytest.raises(InputError) as info:
        assess(db, "U0OPS", rid, {"ci": "passed"}, clock, policy)
    assert "not an emergency" in info.value.message and len(events(db, rid)) == before


# --- co-approval after assessment -------------------------------------------------------------------------------

def test_a_go_before_the_assessment_is_refused_naming_what_is_missing(db, clock, policy):
    rid = opened(db, clock, policy).release.id
    assess(db, "U0OPS", rid, {"blast_radius": "checkout only"}, clock, policy)
    out = cast_vote(db, actor("U0CAB1"), rid, "go", clock)
    assert out.refused and "rollback option" in out.message and "blast radius" not in out.message
    [ev] = events(db, rid, "vote_refused")
    assert ev.after["code"] == "assessment_incomplete" and "scope confirmed" in ev.reason
    # a No-go is heard before the assessment: blocking is a control, not an approval
    assert cast_vote(db, actor("U0EL"), rid, "nogo", clock, note="wrong fix").changed


@pytest.mark.parametrize("voters, which", [(("U0CAB1", "U0CAB2"), "cab ×2"),
                                           (("U0RM", "U0EL"), "release_manager + engineering_lead")])
def test_either_set_approves_after_assessment_and_the_cycle_time_is_recorded(db, clock, policy, voters, which):
    rid = opened(db, clock, policy).release.id
    clock.advance(minutes=10)
    assessed(db, clock, rid)
    clock.advance(minutes=25)
    first = cast_vote(db, actor(voters[0]), rid, "go", clock)
    assert first.changed and release(db, rid).state == "pending"
    out = cast_vote(db, actor(voters[1]), rid, "go", clock)
    assert out.data.get("moved") == "approved" and release(db, rid).state == "approved"
    em = emergency(db, rid)
    assert em.approver_set == which and em.approved_at == START + timedelta(minutes=35)
    [ev] = events(db, rid, "approved")
    assert ev.after["approver_set"] == which and which in ev.reason
    assert (ev.after["approval_minutes"], ev.after["approval_target_minutes"], ev.after["approval_within_target"]) \
        == (35.0, 30, False)
    # once one set is complete, nobody more is needed
    other = "U0RM" if voters[0].startswith("U0CAB") else "U0CAB1"
    late = cast_vote(db, actor(other), rid, "go", clock)
    assert late.refused and which in late.message


def test_half_of_each_set_does_not_approve(db, clock, policy):
    rid = opened(db, clock, policy).release.id
    assessed(db, clock, rid)
    for user in ("U0CAB1", "U0RM"):
        assert cast_vote(db, actor(user), rid, "go", clock).changed
    assert release(db, rid).state == "pending" and emergency(db, rid).approved_at is None
    assert cast_vote(db, actor("U0EL"), rid, "go", clock).data.get("moved") == "approved"
    assert emergency(db, rid).approver_set == "release_manager + engineering_lead"


def test_the_requester_never_co_approves_their_own_emergency(db, clock, policy):
    out = open_emergency(db, actor("U0RM"), LINE, clock, policy)
    assessed(db, clock, out.release.id)
    refused = cast_vote(db, actor("U0RM"), out.release.id, "go", clock)
    assert refused.refused and "requested" in refused.message
    assert actions(db, out.release.id)[-1] == "vote_refused"
