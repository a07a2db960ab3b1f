"""Requesting, editing, cancelling, accepting a misclassification and listing releases, against the real database."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from commands.classification import Answers
from commands.errors import FieldErrors, InputError, NotFound
from commands.record import list_releases, show_release
from commands.release import accept_misclassification, cancel_release, edit_release, request_release
from commands.vote import cast_vote
from conftest import START, actor
from unit_support import (RAW, REQUESTER, actions, counts, dev, events, new_release, outbox_keys, release, request,
                          votes)

UTC = timezone.utc


def go(db, clock, user, rid):
    return cast_vote(db, actor(user), rid, "go", clock)


def approve_minor(db, clock, rid):
    go(db, clock, "U0RM", rid)
    go(db, clock, "U0QA", rid)
    assert release(db, rid).state == "approved"


# --- request_release ----------------------------------------------------------------------------------------------

def test_request_creates_a_pending_release(db, clock, policy):
    out = request(db, clock, policy, risk="low", rollback="redeploy 2.3.0", links="https://ci.test/1")
    assert out.changed
    assert out.message == "REL-1 requested: payments 2.3.1 as minor."
    assert out.data["window"] == (datetime(2026, 12, 1, 14, 0, tzinfo=timezone.utc),
                                  datetime(2026, 12, 1, 15, 0, tzinfo=timezone.utc), "Europe/London")
    r = release(db, out.release.id)
    assert (r.ref, r.service, r.version, r.environment) == ("REL-1", "payments", "2.3.1", "production")
    assert (r.requested_type, r.derived_type, r.effective_type, r.misclassified) == ("minor", "minor", "minor", False)
    assert r.classification_answered is True and r.answers == Answers(feature=True).as_dict()
    assert r.required_roles == {"release_manager": 1, "qa_lead": 1}
    assert r.start_at == datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
    assert r.end_at == datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    assert r.start_at.utcoffset() == timedelta(0)
    assert (r.tz, r.duration_minutes, r.summary) == ("Europe/London", 60, "Add refunds")
    assert (r.risk, r.rollback_plan, r.links) == ("low", "redeploy 2.3.0", "https://ci.test/1")
    assert (r.requester_id, r.state, r.round, r.approval_seq) == (REQUESTER, "pending", 1, 0)
    assert r.created_at == START and r.updated_at == START
    [ev] = events(db, r.id)
    assert (ev.action, ev.actor, ev.at, ev.before) == ("requested", REQUESTER, START, {})
    assert ev.after["version"] == "2.3.1" and ev.after["state"] == "pending"
    assert ev.after["start_at"] == "2026-12-01T14:00:00+00:00"
    assert ev.after["classification_answered"] is True and ev.after["answered_by"] == REQUESTER
    # the approval message, and the first approval nudge for when the SLA runs out
    assert outbox_keys(db) == ["approval:1:post", "reminder:1:approval_nudge:1:1"]


def test_request_with_answers_records_them(db, clock, policy):
    out = request(db, clock, policy, answers=Answers(feature=True, sensitive=True))
    r = release(db, out.release.id)
    assert r.classification_answered is True
    assert r.answers == Answers(feature=True, sensitive=True).as_dict()
    assert r.required_roles == {"release_manager": 1, "qa_lead": 1, "security": 1}
    [ev] = events(db, r.id)
    assert ev.after["answers"]["sensitive"] is True and ev.after["classification_answered"] is True


def test_a_request_that_does_not_answer_the_questions_is_refused(db, clock, policy):
    with pytest.raises(FieldErrors) as info:
        request_release(db, dev(), dict(RAW), None, clock, policy)
    assert set(info.value.errors) == {"flags"}
    assert counts(db) == (0, 0, 0, 0)


def test_flags_none_is_recorded_as_the_requesters_answer(db, clock, policy):
    # "none" is an answer with an owner: if it is wrong, that is a misclassification found later.
    out = request(db, clock, policy, type="patch", answers=Answers())
    r = release(db, out.release.id)
    assert r.classification_answered is True and not any(r.answers.values())
    assert (r.derived_type, r.effective_type, r.misclassified) == ("patch", "patch", False)
    [ev] = events(db, r.id, "requested")
    assert ev.actor == REQUESTER and ev.after["answered_by"] == REQUESTER
    assert ev.after["classification_answered"] is True and ev.after["answers"] == Answers().as_dict()


def test_an_emergency_without_an_incident_is_refused(db, clock, policy):
    with pytest.raises(FieldErrors) as info:
        request(db, clock, policy, type="emergency", answers=Answers(cve=True))
    assert set(info.value.errors) == {"type"} and "QMS 4.6" in info.value.errors["type"]
    assert counts(db) == (0, 0, 0, 0)


def test_invalid_request_writes_nothing(db, clock, policy):
    with pytest.raises(FieldErrors) as info:
        request(db, clock, policy, start="2026-11-01 10:00", duration="0")
    assert set(info.value.errors) == {"start", "duration"}
    assert counts(db) == (0, 0, 0, 0)


def test_request_is_idempotent_by_request_key(db, clock, policy):
    first = request(db, clock, policy, request_key="view:V123")
    before = counts(db)
    clock.advance(seconds=5)
    second = request(db, clock, policy, request_key="view:V123", summary="retried delivery")
    assert not second.changed
    assert second.release.id == first.release.id
    assert second.message == "REL-1 was already created from this request."
    assert counts(db) == before == (1, 0, 1, 2)  # one approval post, one first nudge
    assert release(db, 1).summary == "Add refunds"
    third = request(db, clock, policy, request_key="view:V124")
    assert third.changed and third.release.id == 2


def test_requests_without_a_key_are_never_merged(db, clock, policy):
    a = request(db, clock, policy)
    b = request(db, clock, policy)
    assert a.release.id != b.release.id
    assert counts(db)[0] == 2


def test_misclassification_is_recorded(db, clock, policy):
    out = request(db, clock, policy, type="patch", answers=Answers(feature=True))
    r = release(db, out.release.id)
    assert (r.requested_type, r.derived_type, r.effective_type, r.misclassified) == ("patch", "minor", "minor", True)
    # both types' controls apply: minor's approvers and patch's engineering lead
    assert r.required_roles == {"release_manager": 1, "qa_lead": 1, "engineering_lead": 1}
    assert actions(db, r.id) == ["requested", "misclassified"]
    [ev] = events(db, r.id, "misclassified")
    assert ev.actor == REQUESTER and ev.at == START
    assert ev.before == {"derived_type": "minor"}
    assert ev.after == {"requested_type": "patch", "effective_type": "minor",
                        "required_roles": {"release_manager": 1, "qa_lead": 1, "engineering_lead": 1}}
    assert "do not include" in ev.reason and "release_manager" in ev.reason
    assert "misclassification" in out.message and "/release accept REL-1" in out.message


def test_a_stricter_type_adds_its_controls_and_keeps_the_derived_ones(db, clock, policy):
    out = request(db, clock, policy, type="major", answers=Answers(feature=True), start="2026-12-15 14:00")
    r = release(db, out.release.id)
    # major's approvers do not include minor's QA lead, so it stays, and the choice is recorded
    assert r.required_roles == {"cab": 2, "release_manager": 1, "security": 1, "qa_lead": 1}
    assert r.misclassified and actions(db, r.id) == ["requested", "misclassified"]


def test_a_feature_requested_as_security_keeps_minor_lead_time(db, clock, policy):
    # 4h is security's lead time; minor's 7 days still apply (QMS 3.7)
    out = request(db, clock, policy, type="security", answers=Answers(feature=True), start="2026-11-24 14:00")
    r = release(db, out.release.id)
    assert r.required_roles == {"security": 1, "release_manager": 1, "qa_lead": 1}
    [flag] = show_release(db, r.id).flags
    assert flag.kind == "lead_time" and "7d" in flag.detail


# --- edit -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, field", [
    ({"version": "2.3.2"}, "version"),
    ({"summary": "Add refunds and voids"}, "summary"),
    ({"start": "2026-12-02 14:00"}, "start_at"),
    ({"duration": "2h"}, "end_at"),
    ({"tz": "America/New_York"}, "tz"),
    ({"risk": "medium: new table"}, "risk"),
    ({"risk": ""}, "risk"),
    ({"links": "https://ci.test/2"}, "links"),
])
def test_any_edit_of_what_was_approved_starts_a_new_round(db, clock, policy, changes, field):
    rid = new_release(db, clock, policy, rollback="redeploy 2.3.0", risk="low")
    approve_minor(db, clock, rid)
    clock.advance(hours=1)
    out = edit_release(db, dev(), rid, {**changes, "reason": " CAB asked for it "}, clock, policy)
    assert out.changed and "Earlier votes no longer count" in out.message
    r = release(db, rid)
    assert r.round == 2 and r.state == "pending"
    rec = show_release(db, rid)
    assert rec.status.missing() == {"release_manager": 1, "qa_lead": 1}
    assert len(rec.votes) == 2 and {v.round for v in rec.votes} == {1}  # kept for the record
    [ev] = events(db, rid, "edited")
    assert ev.before[field] != ev.after[field]
    assert ev.before["round"] == 1 and ev.after["round"] == 2
    assert ev.before["state"] == "approved" and ev.after["state"] == "pending"
    assert ev.reason == "CAB asked for it; votes reset: the release changed after votes were cast"
    assert f"note:{rid}:votes_reset:2" in outbox_keys(db)
    # old votes no longer count: one new Go is not enough, and the earlier voters may vote again
    out = go(db, clock, "U0RM", rid)
    assert out.changed and out.data["moved"] is None
    assert release(db, rid).state == "pending"
    go(db, clock, "U0QA", rid)
    assert release(db, rid).state == "approved"
    assert release(db, rid).approval_seq == 2
    assert [v.round for v in votes(db, rid)] == [1, 1, 2, 2]


def test_edit_values_are_applied(db, clock, policy):
    rid = new_release(db, clock, policy)
    edit_release(db, dev(), rid, {"start": "2026-12-02 09:30", "tz": "America/New_York", "duration": "1h30m",
                                  "version": "2.3.2"}, clock, policy)
    r = release(db, rid)
    assert r.start_at == datetime(2026, 12, 2, 14, 30, tzinfo=UTC)
    assert r.end_at == datetime(2026, 12, 2, 16, 0, tzinfo=UTC)
    assert (r.tz, r.duration_minutes, r.version) == ("America/New_York", 90, "2.3.2")


def test_edit_of_the_zone_alone_keeps_the_wall_clock_time(db, clock, policy):
    rid = new_release(db, clock, policy)  # 14:00 London = 14:00 UTC in December
    edit_release(db, dev(), rid, {"tz": "America/New_York"}, clock, policy)
    assert release(db, rid).start_at == datetime(2026, 12, 1, 19, 0, tzinfo=UTC)


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_an_edit_after_approval_needs_a_reason_and_writes_nothing(db, clock, policy, reason):
    rid = new_release(db, clock, policy, risk="low")
    approve_minor(db, clock, rid)
    before = counts(db)
    changes = {"risk": ""} if reason is None else {"risk": "", "reason": reason}
    with pytest.raises(InputError) as info:
        edit_release(db, dev(), rid, changes, clock, policy)
    assert info.value.field == "reason" and "reason=" in info.value.form
    assert counts(db) == before
    r = release(db, rid)
    assert (r.state, r.round, r.risk) == ("approved", 1, "low")


def test_an_edit_before_approval_may_give_a_reason(db, clock, policy):
    rid = new_release(db, clock, policy)
    go(db, clock, "U0QA", rid)
    out = edit_release(db, dev(), rid, {"risk": "low", "reason": "forgot it"}, clock, policy)
    assert out.changed and "Earlier votes no longer count" in out.message
    [ev] = events(db, rid, "edited")
    assert ev.reason == "forgot it; votes reset: the release changed after votes were cast"
    assert release(db, rid).round == 2


@pytest.mark.parametrize("changes", [{"env": "staging"}, {"type": "patch"}, {"flags": "none"}, {"colour": "red"}])
def test_type_environment_and_answers_cannot_be_edited(db, clock, policy, changes):
    rid = new_release(db, clock, policy)
    before = counts(db)
    with pytest.raises(InputError) as info:
        edit_release(db, dev(), rid, changes, clock, policy)
    assert "cancel" in info.value.message and "request" in info.value.message
    assert counts(db) == before


def test_edit_before_any_vote_starts_a_round_but_announces_no_reset(db, clock, policy):
    rid = new_release(db, clock, policy)
    out = edit_release(db, dev(), rid, {"version": "2.3.2"}, clock, policy)
    assert out.changed and "Earlier votes" not in out.message
    [ev] = events(db, rid, "edited")
    assert ev.reason is None
    assert not any(":votes_reset:" in k for k in outbox_keys(db))


def test_edit_with_the_same_values_changes_nothing(db, clock, policy):
    rid = new_release(db, clock, policy)
    before = counts(db)
    out = edit_release(db, dev(), rid, {"version": "2.3.1", "summary": "Add refunds"}, clock, policy)
    assert not out.changed and "nothing changed" in out.message
    assert counts(db) == before
    assert release(db, rid).revision == 0


def test_edit_with_nothing_to_change(db, clock, policy):
    rid = new_release(db, clock, policy)
    with pytest.raises(InputError):
        edit_release(db, dev(), rid, {}, clock, policy)


def test_invalid_edit_writes_nothing(db, clock, policy):
    rid = new_release(db, clock, policy)
    before = counts(db)
    with pytest.raises(InputError) as info:
        edit_release(db, dev(), rid, {"version": "2.3 .2"}, clock, policy)
    assert info.value.field == "version"
    with pytest.raises(InputError) as info:
        edit_release(db, dev(), rid, {"start": "2026-03-29 01:30"}, clock, policy)  # in the past anyway
    assert info.value.field == "start"
    assert counts(db) == before
    assert release(db, rid).version == "2.3.1"


@pytest.mark.parametrize("who, allowed", [(REQUESTER, True), ("U0RM", True), ("U0QA", False), ("U0CAB1", False),
                                          ("U0EXEC", False)])
def test_only_the_requester_or_a_release_manager_can_edit(db, clock, policy, who, allowed):
    rid = new_release(db, clock, policy)
    out = edit_release(db, actor(who), rid, {"version": "9.9.9"}, clock, policy)
    assert out.changed is allowed and out.refused is not allowed
    assert release(db, rid).version == ("9.9.9" if allowed else "2.3.1")
    if not allowed:
        [ev] = events(db, rid, "edit_refused")
        assert ev.actor == who and ev.after == {"code": "not_owner"}
        assert "Only the requester or a release manager" in out.message


def test_a_cancelled_release_cannot_be_edited(db, clock, policy):
    rid = new_release(db, clock, policy)
    cancel_release(db, dev(), rid, "not needed", clock)
    out = edit_release(db, dev(), rid, {"version": "2.3.2"}, clock, policy)
    assert out.refused
    assert events(db, rid, "edit_refused")[0].after["code"] == "not_live"
    assert release(db, rid).version == "2.3.1"


# --- cancel ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reason", ["", "   ", None])
def test_cancel_needs_a_reason_and_writes_nothing(db, clock, policy, reason):
    rid = new_release(db, clock, policy)
    before = counts(db)
    with pytest.raises(InputError) as info:
        cancel_release(db, dev(), rid, reason, clock)
    assert info.value.field == "reason"
    assert counts(db) == before
    assert release(db, rid).state == "pending"


@pytest.mark.parametrize("who", [REQUESTER, "U0RM"])
def test_requester_or_release_manager_can_cancel(db, clock, policy, who):
    rid = new_release(db, clock, policy)
    approve_minor(db, clock, rid)
    clock.advance(minutes=30)
    out = cancel_release(db, actor(who), rid, "  superseded  ", clock)
    assert out.changed and out.message == f"REL-{rid} is cancelled."
    r = release(db, rid)
    assert (r.state, r.cancel_reason) == ("cancelled", "superseded")
    [ev] = events(db, rid, "cancelled")
    assert ev.actor == who and ev.reason == "superseded" and ev.at == clock.now()
    assert ev.before["state"] == "approved" and ev.after["state"] == "cancelled"
    assert f"note:{rid}:cancelled:" in outbox_keys(db)


@pytest.mark.parametrize("who", ["U0QA", "U0CAB1", "U0EL"])
def test_others_cannot_cancel(db, clock, policy, who):
    rid = new_release(db, clock, policy)
    out = cancel_release(db, actor(who), rid, "I do not like it", clock)
    assert out.refused
    assert release(db, rid).state == "pending"
    [ev] = events(db, rid, "cancel_refused")
    assert ev.actor == who and ev.after["code"] == "not_owner"


def test_cancel_twice_is_refused(db, clock, policy):
    rid = new_release(db, clock, policy)
    cancel_release(db, dev(), rid, "dup", clock)
    out = cancel_release(db, dev(), rid, "dup again", clock)
    assert out.refused
    assert events(db, rid, "cancel_refused")[0].after["code"] == "not_live"
    assert release(db, rid).cancel_reason == "dup"


def test_cancel_a_missing_release(db, clock, policy):
    with pytest.raises(NotFound):
        cancel_release(db, dev(), 42, "gone", clock)


# --- accept a misclassification -------------------------------------------------------------------------------------

def misclassified(db, clock, policy, requester=None, answers=Answers(feature=True), type="patch") -> int:
    rid = new_release(db, clock, policy, requester=requester, answers=answers, type=type)
    assert release(db, rid).misclassified
    return rid


def test_release_manager_accepts_a_misclassification(db, clock, policy):
    rid = misclassified(db, clock, policy)
    assert release(db, rid).required_roles == {"release_manager": 1, "qa_lead": 1, "engineering_lead": 1}
    clock.advance(hours=1)
    out = accept_misclassification(db, actor("U0RM"), rid, "  a config-only change  ", clock, policy)
    assert out.changed and "now follows patch controls alone" in out.message
    r = release(db, rid)
    assert r.effective_type == "patch"
    assert r.required_roles == {"engineering_lead": 1, "qa_lead": 1}
    assert (r.misclassification_accepted_by, r.misclassification_reason) == ("U0RM", "a config-only change")
    [ev] = events(db, rid, "misclassification_accepted")
    assert ev.actor == "U0RM" and ev.at == clock.now() and ev.reason == "a config-only change"
    assert ev.before["effective_type"] == "minor" and ev.after["effective_type"] == "patch"
    assert ev.before["required_roles"] == {"release_manager": 1, "qa_lead": 1, "engineering_lead": 1}
    assert ev.after["required_roles"] == {"engineering_lead": 1, "qa_lead": 1}
    # the requested type's approvers now decide
    assert go(db, clock, "U0EL", rid).changed
    go(db, clock, "U0QA", rid)
    assert release(db, rid).state == "approved"


def test_accepting_keeps_security_for_a_sensitive_change(db, clock, policy):
    rid = misclassified(db, clock, policy, answers=Answers(feature=True, sensitive=True))
    accept_misclassification(db, actor("U0RM"), rid, "ok", clock, policy)
    assert release(db, rid).required_roles == {"engineering_lead": 1, "qa_lead": 1, "security": 1}


def test_accepting_can_complete_an_approval(db, clock, policy):
    # breaking change asked for as a security patch: major's approvers apply until accepted
    rid = misclassified(db, clock, policy, answers=Answers(breaking=True), type="security")
    go(db, clock, "U0RM", rid)
    go(db, clock, "U0SEC", rid)
    assert release(db, rid).state == "pending"
    out = accept_misclassification(db, actor("U0RM"), rid, "CVE fix, API change is additive", clock, policy)
    assert out.changed
    assert release(db, rid).state == "approved"
    # accepting changes the lead time that applies, so the window is checked again
    assert actions(db, rid)[-3:] == ["misclassification_accepted", "planning_checked", "approved"]
    assert [k for k in outbox_keys(db) if k.startswith(f"note:{rid}:approved")] == [f"note:{rid}:approved:1"]


@pytest.mark.parametrize("who", ["U0QA", "U0CAB1", "U0EXEC", "U0EL"])
def test_only_a_release_manager_can_accept(db, clock, policy, who):
    rid = misclassified(db, clock, policy)
    out = accept_misclassification(db, actor(who), rid, "fine", clock, policy)
    assert out.refused
    [ev] = events(db, rid, "accept_misclassification_refused")
    assert ev.actor == who and ev.after["code"] == "not_release_manager"
    assert release(db, rid).effective_type == "minor"


def test_the_requester_cannot_accept_even_as_release_manager(db, clock, policy):
    rid = misclassified(db, clock, policy, requester=actor("U0RM"))
    out = accept_misclassification(db, actor("U0RM"), rid, "trust me", clock, policy)
    assert out.refused
    assert events(db, rid, "accept_misclassification_refused")[0].after["code"] == "requester"
    r = release(db, rid)
    assert r.effective_type == "minor" and r.misclassification_accepted_by is None


@pytest.mark.parametrize("reason", ["", "  ", None])
def test_accepting_needs_a_reason_and_writes_nothing(db, clock, policy, reason):
    rid = misclassified(db, clock, policy)
    before = counts(db)
    with pytest.raises(InputError) as info:
        accept_misclassification(db, actor("U0RM"), rid, reason, clock, policy)
    assert info.value.field == "reason"
    assert counts(db) == before


def test_nothing_to_accept(db, clock, policy):
    rid = new_release(db, clock, policy)
    out = accept_misclassification(db, actor("U0RM"), rid, "why not", clock, policy)
    assert out.refused
    assert events(db, rid, "accept_misclassification_refused")[0].after["code"] == "nothing_to_accept"
    rid2 = misclassified(db, clock, policy)
    accept_misclassification(db, actor("U0RM"), rid2, "ok", clock, policy)
    again = accept_misclassification(db, actor("U0RM"), rid2, "ok again", clock, policy)
    assert again.refused
    assert events(db, rid2, "accept_misclassification_refused")[0].after["code"] == "nothing_to_accept"
    assert release(db, rid2).misclassification_reason == "ok"


def test_a_cancelled_misclassification_cannot_be_accepted(db, clock, policy):
    rid = misclassified(db, clock, policy)
    cancel_release(db, dev(), rid, "dropped", clock)
    out = accept_misclassification(db, actor("U0RM"), rid, "ok", clock, policy)
    assert out.refused
    assert events(db, rid, "accept_misclassification_refused")[0].after["code"] == "not_live"
    assert release(db, rid).effective_type == "minor"


# --- list -----------------------------------------------------------------------------------------------------------

@pytest.fixture
def four(db, clock, policy):
    """1: dev's, 1 Dec, pending.  2: EL's, 30 Nov, approved (RM + QA).
    3: dev's, 5 Dec, cancelled.  4: EL's, 24 Nov, pending, QA voted."""
    r1 = new_release(db, clock, policy)
    r2 = new_release(db, clock, policy, requester=actor("U0EL"), start="2026-11-30 10:00")
    r3 = new_release(db, clock, policy, start="2026-12-05 10:00")
    r4 = new_release(db, clock, policy, requester=actor("U0EL"), start="2026-11-24 10:00")
    approve_minor(db, clock, r2)
    cancel_release(db, dev(), r3, "not needed", clock)
    go(db, clock, "U0QA", r4)
    return r1, r2, r3, r4


def ids(rows):
    return [r.id for r in rows]


def test_list_pending(db, clock, four):
    r1, r2, r3, r4 = four
    assert ids(list_releases(db, dev(), "pending", clock)) == [r4, r1]
    clock.set(datetime(2026, 11, 26, tzinfo=UTC))
    assert ids(list_releases(db, dev(), "pending", clock)) == [r4, r1]  # still waiting, though its window passed


def test_list_upcoming(db, clock, four):
    r1, r2, r3, r4 = four
    assert ids(list_releases(db, dev(), "upcoming", clock)) == [r4, r2, r1]
    clock.set(datetime(2026, 11, 24, 11, 0, tzinfo=UTC))  # r4's window (10:00-11:00 UTC) ends now
    assert ids(list_releases(db, dev(), "upcoming", clock)) == [r4, r2, r1]
    clock.advance(minutes=1)
    assert ids(list_releases(db, dev(), "upcoming", clock)) == [r2, r1]


def test_list_mine(db, clock, four):
    r1, r2, r3, r4 = four
    assert ids(list_releases(db, dev(), "mine", clock)) == [r3, r1]
    assert ids(list_releases(db, actor("U0QA"), "mine", clock)) == [r4, r2]
    assert ids(list_releases(db, actor("U0RM"), "mine", clock)) == [r2]
    assert ids(list_releases(db, actor("U0EL"), "mine", clock)) == [r4, r2]
    assert list_releases(db, actor("U0EXEC"), "mine", clock) == []


def test_list_all_newest_first_with_a_limit(db, clock, four):
    r1, r2, r3, r4 = four
    assert ids(list_releases(db, dev(), None, clock)) == [r4, r3, r2, r1]
    assert ids(list_releases(db, dev(), None, clock, limit=2)) == [r4, r3]


def test_show_release_keeps_every_round_and_the_trail(db, clock, policy):
    rid = new_release(db, clock, policy)
    approve_minor(db, clock, rid)
    edit_release(db, dev(), rid, {"version": "2.3.2", "reason": "hotfix in the build"}, clock, policy)
    go(db, clock, "U0QA", rid)
    rec = show_release(db, rid)
    assert rec.release.round == 2
    assert [(v.voter_id, v.round) for v in rec.votes] == [("U0RM", 1), ("U0QA", 1), ("U0QA", 2)]
    assert rec.status.missing() == {"release_manager": 1}
    assert [e.action for e in rec.trail] == ["requested", "vote_go", "vote_go", "approved", "edited", "vote_go"]
    with pytest.raises(NotFound):
        show_release(db, 99)


def test_edit_of_risk_after_the_window_began_is_allowed(db, clock, policy):
    from commands.release import edit_release as _edit, request_release as _request
    from conftest import actor as _actor
    _request(db, _actor("U0DEV"), {"service": "pay", "version": "1", "type": "minor", "start": "2026-11-23 10:00",
                                   "tz": "UTC", "duration": "2h", "summary": "s"}, Answers(feature=True), clock,
             policy)
    clock.advance(hours=2)
    out = _edit(db, _actor("U0DEV"), 1, {"risk": "low"}, clock, policy)
    assert out.changed and out.release.risk == "low" and out.release.round == 2


# --- the union of controls holds wherever the type's controls are read --------------------------------------------

def test_the_longer_stabilisation_of_the_union_holds_after_deploying(db, clock, policy):
    from commands.deploy import Deployer, finish_deployment
    from unit_support import start
    # a feature asked for as security: minor's 2h stabilisation, not security's 30m
    rid = new_release(db, clock, policy, type="security", answers=Answers(feature=True), start="2026-12-09 10:00",
                      tz="UTC")
    for user in ("U0SEC", "U0RM", "U0QA"):
        go(db, clock, user, rid)
    assert release(db, rid).state == "approved"
    clock.set(datetime(2026, 12, 9, 10, 5, tzinfo=UTC))
    deployer = Deployer("U0DEPL", frozenset({"platform_lead"}), pipeline="deploy")
    assert start(db, clock, policy, rid, deployer).changed
    finish_deployment(db, deployer, rid, "success", clock, policy)
    [ev] = events(db, rid, "deployment_success")
    assert ev.after["stabilisation_ends_at"] == (clock.now() + timedelta(hours=2)).isoformat()


def test_the_shorter_approval_sla_of_the_union_times_the_nudges(db, clock, policy):
    from unit_support import outbox
    # an incident asked for as major: emergency's 30-minute SLA, not major's 4 hours
    rid = new_release(db, clock, policy, type="major", answers=Answers(incident=True), start="2026-12-15 14:00")
    [nudge] = [r for r in outbox(db) if r.key == f"reminder:{rid}:approval_nudge:1:1"]
    assert nudge.due_at == START + timedelta(minutes=30)


@pytest.mark.parametrize("change", ["cancel", "edit"])
def test_a_release_manager_slack_could_not_confirm_is_try_again_not_an_audited_refusal(db, clock, policy, change):
    """Cancel and edit by someone other than the requester need a release manager. When Slack cannot
    list the group that would make this person one, that is "try again": nothing written, nothing audited."""
    from commands.errors import CouldNotCheck
    from commands.outcome import Actor
    rid = new_release(db, clock, policy)
    before = actions(db)
    maybe_rm = Actor("U0RMGROUP", frozenset(), frozenset({"release_manager"}))
    with pytest.raises(CouldNotCheck):
        if change == "cancel":
            cancel_release(db, maybe_rm, rid, "no longer needed", clock)
        else:
            edit_release(db, maybe_rm, rid, {"version": "2.3.2"}, clock, policy)
    assert actions(db) == before
    assert release(db, rid).state == "pending"
    # someone Slack confirms is not a release manager is still refused, and that is audited
    out = cancel_release(db, Actor("U0NOBODY"), rid, "no longer needed", clock)
    assert out.refused and actions(db)[-1] == "cancel_refused"
