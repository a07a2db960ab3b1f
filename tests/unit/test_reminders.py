"""Reminders are outbox rows; whether one is still owed is decided when it comes due (commands.reminders.due),
and a sent approval nudge schedules the next one (after_sent). Rows are read from the real database by key."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import select

from commands import announce, reminders
from commands.aftercare import record_task, sign_off
from commands.deploy import CHECKLIST, Deployer, finish_deployment
from commands.rollback import decide_rollback
from commands.release import cancel_release, edit_release, load
from commands.vote import cast_vote
from conftest import START, actor
from storage.db import transaction
from storage.models import Outbox
from unit_support import start, REQUESTER, counts, dev, new_release, outbox_keys, release

UTC = timezone.utc
WINDOW = dict(start="2026-12-09 10:00", tz="UTC", duration="60m")  # a Wednesday, past every lead time
IN_WINDOW = datetime(2026, 12, 9, 10, 5, tzinfo=UTC)
FINISHED = datetime(2026, 12, 9, 10, 30, tzinfo=UTC)
ALL_CHECKED = {key: True for key, _ in CHECKLIST}
DEPLOYER = "U0DEPL"
DEPLOYING = frozenset({"platform_lead"})  # only a deploying role starts a deployment (QMS 3.4)
VOTERS = {"minor": ("U0RM", "U0QA"), "major": ("U0CAB1", "U0CAB2", "U0RM", "U0SEC")}
FOUR_HOURS = timedelta(hours=4)


def row(db, key) -> Outbox | None:
    with transaction(db) as s:
        return s.exec(select(Outbox).where(Outbox.key == key)).first()


def due(db, policy, key):
    with transaction(db) as s:
        r = s.exec(select(Outbox).where(Outbox.key == key)).one()
        return reminders.due(s, r, policy)


def sent(db, policy, key, at):
    with transaction(db) as s:
        r = s.exec(select(Outbox).where(Outbox.key == key)).one()
        reminders.after_sent(s, r, at, policy)


def nudge(rid, round_=1, n=1) -> str:
    return f"reminder:{rid}:approval_nudge:{round_}:{n}"


def go(db, clock, user, rid):
    assert cast_vote(db, actor(user), rid, "go", clock).changed


def deploying(db, clock, policy, type_="minor") -> int:
    rid = new_release(db, clock, policy, type=type_, **WINDOW)
    for user in VOTERS[type_]:
        go(db, clock, user, rid)
    clock.set(IN_WINDOW)
    assert start(db, clock, policy, rid, Deployer(DEPLOYER, DEPLOYING, pipeline="deploy")).changed
    return rid


def deployed(db, clock, policy, type_="minor", outcome="success") -> int:
    rid = deploying(db, clock, policy, type_)
    clock.set(FINISHED)
    assert finish_deployment(db, Deployer(DEPLOYER), rid, outcome, clock, policy).changed
    return rid


# --- approval nudges ----------------------------------------------------------------------------------------------

def test_a_request_schedules_the_first_nudge_one_sla_later(db, clock, policy):
    rid = new_release(db, clock, policy, **WINDOW)
    r = row(db, nudge(rid))
    assert (r.kind, r.due_at, r.created_at, r.stream) == ("reminder", START + FOUR_HOURS, START, None)
    assert r.payload == {"reminder": "approval_nudge", "round": 1, "n": 1}


def test_a_due_nudge_lists_every_missing_role(db, clock, policy):
    rid = new_release(db, clock, policy, **WINDOW)
    n = due(db, policy, nudge(rid))
    assert isinstance(n, reminders.Notice)
    assert (n.what, n.users, n.roles) == ("approval_nudge", (), ("release_manager", "qa_lead"))
    assert n.detail == {"missing": {"release_manager": 1, "qa_lead": 1}}
    assert n.release.id == rid


def test_a_due_nudge_lists_only_the_roles_still_missing(db, clock, policy):
    rid = new_release(db, clock, policy, type="major", **WINDOW)
    go(db, clock, "U0CAB1", rid)
    go(db, clock, "U0RM", rid)
    n = due(db, policy, nudge(rid))
    assert n.roles == ("cab", "security")
    assert n.detail == {"missing": {"cab": 1, "security": 1}}


def test_a_nudge_is_skipped_once_approved(db, clock, policy):
    rid = new_release(db, clock, policy, **WINDOW)
    go(db, clock, "U0RM", rid)
    go(db, clock, "U0QA", rid)
    skip = due(db, policy, nudge(rid))
    assert isinstance(skip, reminders.Skip)
    assert skip.reason == "no longer waiting for votes (approved, round 1)"


def test_a_nudge_is_skipped_once_cancelled(db, clock, policy):
    rid = new_release(db, clock, policy, **WINDOW)
    cancel_release(db, dev(), rid, "descoped", clock)
    skip = due(db, policy, nudge(rid))
    assert isinstance(skip, reminders.Skip) and "cancelled" in skip.reason


def test_a_nudge_of_an_earlier_round_is_skipped_though_still_pending(db, clock, policy):
    rid = new_release(db, clock, policy, **WINDOW)
    go(db, clock, "U0RM", rid)
    clock.advance(hours=1)
    edit_release(db, dev(), rid, {"version": "2.3.2"}, clock, policy)
    assert (release(db, rid).state, release(db, rid).round) == ("pending", 2)
    skip = due(db, policy, nudge(rid, 1, 1))
    assert isinstance(skip, reminders.Skip)
    assert skip.reason == "no longer waiting for votes (pending, round 2)"
    # the new round has its own nudge, one SLA after the reset, and both roles are missing again
    fresh = row(db, nudge(rid, 2, 1))
    assert fresh.due_at == START + timedelta(hours=1) + FOUR_HOURS
    n = due(db, policy, nudge(rid, 2, 1))
    assert isinstance(n, reminders.Notice) and n.roles == ("release_manager", "qa_lead")


def test_after_sent_schedules_the_next_nudge_one_sla_after_the_previous_due_time(db, clock, policy):
    rid = new_release(db, clock, policy, **WINDOW)
    first = row(db, nudge(rid))
    late = first.due_at + timedelta(hours=3)  # delivered late: the cadence still follows the due times
    sent(db, policy, nudge(rid), late)
    second = row(db, nudge(rid, 1, 2))
    assert (second.kind, second.due_at, second.created_at) == ("reminder", first.due_at + FOUR_HOURS, late)
    assert second.payload == {"reminder": "approval_nudge", "round": 1, "n": 2}
    sent(db, policy, nudge(rid, 1, 2), second.due_at)
    third = row(db, nudge(rid, 1, 3))
    assert third.due_at == START + 3 * FOUR_HOURS
    assert third.payload["n"] == 3


def test_after_sent_uses_the_types_sla(db, clock, policy):
    rid = new_release(db, clock, policy, type="emergency", **WINDOW)
    first = row(db, nudge(rid))
    assert first.due_at == START + timedelta(minutes=30)
    sent(db, policy, nudge(rid), first.due_at)
    assert row(db, nudge(rid, 1, 2)).due_at == START + timedelta(minutes=60)


def test_after_sent_keys_the_next_nudge_by_the_current_round(db, clock, policy):
    rid = new_release(db, clock, policy, **WINDOW)
    edit_release(db, dev(), rid, {"version": "2.3.2"}, clock, policy)
    r2 = row(db, nudge(rid, 2, 1))
    sent(db, policy, nudge(rid, 2, 1), r2.due_at)
    nxt = row(db, nudge(rid, 2, 2))
    assert nxt.due_at == r2.due_at + FOUR_HOURS
    assert nxt.payload == {"reminder": "approval_nudge", "round": 2, "n": 2}


def test_after_sent_twice_for_one_row_schedules_one_next_nudge(db, clock, policy):
    rid = new_release(db, clock, policy, **WINDOW)
    at = START + FOUR_HOURS
    sent(db, policy, nudge(rid), at)
    before = counts(db)
    sent(db, policy, nudge(rid), at + timedelta(minutes=1))  # a redelivery of the same row
    assert counts(db) == before
    assert [k for k in outbox_keys(db) if ":approval_nudge:" in k] == [nudge(rid), nudge(rid, 1, 2)]


def test_after_sent_of_other_reminders_schedules_nothing(db, clock, policy):
    rid = deployed(db, clock, policy, "major")
    before = outbox_keys(db)
    for what in ("followup", "followup_escalation", "retrospective_soon", "retrospective_due", "signoff_request",
                 "stuck_deployment", "stuck_escalation"):
        sent(db, policy, f"reminder:{rid}:{what}:", FINISHED + timedelta(days=3))
    assert outbox_keys(db) == before


# --- follow-up and retrospective reminders ------------------------------------------------------------------------

def test_follow_up_reminder_goes_to_the_deployer(db, clock, policy):
    rid = deployed(db, clock, policy)
    n = due(db, policy, f"reminder:{rid}:followup:")
    assert isinstance(n, reminders.Notice)
    assert (n.what, n.users) == ("followup", (DEPLOYER,))
    assert n.detail == {"due_at": FINISHED + timedelta(hours=24)}


def test_follow_up_escalation_names_only_the_release_managers(db, clock, policy):
    rid = deployed(db, clock, policy)
    n = due(db, policy, f"reminder:{rid}:followup_escalation:")
    assert isinstance(n, reminders.Notice)
    assert (n.what, n.users, n.roles) == ("followup_escalation", (), ("release_manager",))
    assert n.detail == {"due_at": FINISHED + timedelta(hours=24)}


def test_follow_up_reminders_are_skipped_once_recorded(db, clock, policy):
    rid = deployed(db, clock, policy)
    clock.advance(hours=5)
    record_task(db, actor(DEPLOYER), rid, "followup", {"evidence": "all green"}, clock, policy)
    for what in ("followup", "followup_escalation"):
        skip = due(db, policy, f"reminder:{rid}:{what}:")
        assert isinstance(skip, reminders.Skip)
        assert skip.reason == "followup already recorded"


@pytest.mark.parametrize("what", ["retrospective_soon", "retrospective_due"])
def test_retrospective_reminders_go_to_the_deployer_and_the_requester(db, clock, policy, what):
    rid = deployed(db, clock, policy, "major")
    n = due(db, policy, f"reminder:{rid}:{what}:")
    assert isinstance(n, reminders.Notice)
    assert (n.what, n.users) == (what, (DEPLOYER, REQUESTER))
    assert n.detail == {"due_at": datetime(2026, 12, 16, 10, 30, tzinfo=UTC)}  # 5 business days


def test_retrospective_reminders_are_skipped_once_recorded_and_the_follow_up_is_not(db, clock, policy):
    rid = deployed(db, clock, policy, "minor", outcome="rolled_back")
    record_task(db, actor(REQUESTER), rid, "retrospective", {"notes": "root cause: config"}, clock, policy)
    for what in ("retrospective_soon", "retrospective_due"):
        skip = due(db, policy, f"reminder:{rid}:{what}:")
        assert isinstance(skip, reminders.Skip) and skip.reason == "retrospective already recorded"
    assert isinstance(due(db, policy, f"reminder:{rid}:followup:"), reminders.Notice)


# --- sign-off requests ----------------------------------------------------------------------------------------------

def test_signoff_request_lists_every_sign_off_role(db, clock, policy):
    rid = deployed(db, clock, policy)
    n = due(db, policy, f"reminder:{rid}:signoff_request:")
    assert isinstance(n, reminders.Notice)
    assert (n.what, n.users, n.roles) == ("signoff_request", (), ("qa_lead", "operations"))
    assert n.detail == {"needed": ["qa_lead", "operations"]}


def test_signoff_request_lists_only_the_roles_still_needed(db, clock, policy):
    rid = deployed(db, clock, policy)
    clock.set(FINISHED + timedelta(hours=2))
    assert sign_off(db, actor("U0QA"), rid, clock, policy).changed
    n = due(db, policy, f"reminder:{rid}:signoff_request:")
    assert n.roles == ("operations",) and n.detail == {"needed": ["operations"]}


def test_signoff_request_is_skipped_once_every_sign_off_is_in(db, clock, policy):
    rid = deployed(db, clock, policy)
    clock.set(FINISHED + timedelta(hours=2))
    sign_off(db, actor("U0QA"), rid, clock, policy)
    sign_off(db, actor("U0OPS"), rid, clock, policy)
    skip = due(db, policy, f"reminder:{rid}:signoff_request:")
    assert isinstance(skip, reminders.Skip) and skip.reason == "every post-deployment sign-off is in"
    record_task(db, actor(DEPLOYER), rid, "followup", {"evidence": "all green"}, clock, policy)
    sign_off(db, actor("U0RM"), rid, clock, policy)
    skip = due(db, policy, f"reminder:{rid}:signoff_request:")
    assert isinstance(skip, reminders.Skip) and skip.reason == "release is closed"


def test_signoff_request_is_skipped_when_a_rollback_was_decided_during_stabilisation(db, clock, policy):
    rid = deployed(db, clock, policy)
    clock.advance(minutes=30)
    decide_rollback(db, Deployer("U0OPS", frozenset({"operations"})), rid, "error rate +20%", clock)
    skip = due(db, policy, f"reminder:{rid}:signoff_request:")
    assert isinstance(skip, reminders.Skip) and skip.reason == "release is rolling_back"


def test_an_unknown_reminder_is_skipped(db, clock, policy):
    rid = new_release(db, clock, policy, **WINDOW)
    with transaction(db) as s:
        announce.reminder(s, load(s, rid), "horoscope", START, START)
    skip = due(db, policy, f"reminder:{rid}:horoscope:")
    assert isinstance(skip, reminders.Skip) and skip.reason == "unknown reminder 'horoscope'"


# --- the release manager's closing sign-off ----------------------------------------------------------------------

CLOSING = "reminder:{}:closing_signoff:"


def all_but_closing(db, clock, policy) -> int:
    rid = deployed(db, clock, policy)
    clock.set(FINISHED + timedelta(hours=2))
    sign_off(db, actor("U0QA"), rid, clock, policy)
    sign_off(db, actor("U0OPS"), rid, clock, policy)
    record_task(db, actor(DEPLOYER), rid, "followup", {"evidence": "all green"}, clock, policy)
    return rid


def test_closing_signoff_reminder_names_the_release_managers(db, clock, policy):
    rid = all_but_closing(db, clock, policy)
    n = due(db, policy, CLOSING.format(rid))
    assert isinstance(n, reminders.Notice)
    assert (n.what, n.users, n.roles) == ("closing_signoff", (), ("release_manager",))
    assert n.detail == {"needed": ["release_manager"]}


def test_closing_signoff_reminder_is_skipped_once_closed(db, clock, policy):
    rid = all_but_closing(db, clock, policy)
    assert sign_off(db, actor("U0RM"), rid, clock, policy).changed
    skip = due(db, policy, CLOSING.format(rid))
    assert isinstance(skip, reminders.Skip) and skip.reason == "release is closed"


def test_closing_signoff_reminder_is_skipped_after_a_rollback(db, clock, policy):
    rid = all_but_closing(db, clock, policy)
    decide_rollback(db, Deployer("U0OPS", frozenset({"operations"})), rid, "error rate +20%", clock)
    skip = due(db, policy, CLOSING.format(rid))
    assert isinstance(skip, reminders.Skip) and skip.reason == "release is rolling_back"


# --- deployments left running past their window ---------------------------------------------------------------------

WINDOW_END = datetime(2026, 12, 9, 11, 0, tzinfo=UTC)


def test_starting_a_deployment_schedules_the_stuck_reminder_and_its_escalation(db, clock, policy):
    rid = deploying(db, clock, policy)
    first, second = row(db, f"reminder:{rid}:stuck_deployment:"), row(db, f"reminder:{rid}:stuck_escalation:")
    assert (first.kind, first.due_at, first.created_at, first.payload) == (
        "reminder", WINDOW_END + timedelta(minutes=30), IN_WINDOW, {"reminder": "stuck_deployment"})
    assert (second.kind, second.due_at, second.payload) == (
        "reminder", WINDOW_END + timedelta(minutes=60), {"reminder": "stuck_escalation"})


def test_the_grace_period_comes_from_the_policy(db, clock):
    from conftest import ROLES
    from commands.policy import Policy
    pol = Policy.from_mapping({"roles": ROLES, "deployment": {"stuck_grace": "2h"}})
    rid = deploying(db, clock, pol)
    assert row(db, f"reminder:{rid}:stuck_deployment:").due_at == WINDOW_END + timedelta(hours=2)
    assert row(db, f"reminder:{rid}:stuck_escalation:").due_at == WINDOW_END + timedelta(hours=4)


def test_a_stuck_deployment_reminds_the_deployer(db, clock, policy):
    rid = deploying(db, clock, policy)
    n = due(db, policy, f"reminder:{rid}:stuck_deployment:")
    assert isinstance(n, reminders.Notice)
    assert (n.what, n.users, n.roles) == ("stuck_deployment", (DEPLOYER,), ())
    assert n.detail == {"state": "deploying", "window_end": WINDOW_END, "started_at": IN_WINDOW}


def test_a_stuck_deployment_escalates_to_the_release_managers(db, clock, policy):
    rid = deploying(db, clock, policy)
    n = due(db, policy, f"reminder:{rid}:stuck_escalation:")
    assert isinstance(n, reminders.Notice)
    assert (n.what, n.users, n.roles) == ("stuck_escalation", (), ("release_manager",))
    assert n.detail["state"] == "deploying"


def test_a_rollback_still_running_is_stuck_too(db, clock, policy):
    rid = deploying(db, clock, policy)
    decide_rollback(db, Deployer(DEPLOYER), rid, "error rate +20%", clock)
    for what in ("stuck_deployment", "stuck_escalation"):
        n = due(db, policy, f"reminder:{rid}:{what}:")
        assert isinstance(n, reminders.Notice) and n.detail["state"] == "rolling_back"


@pytest.mark.parametrize("outcome", ["success", "rolled_back", "failed"])
def test_stuck_reminders_are_skipped_once_the_deployment_finished(db, clock, policy, outcome):
    rid = deployed(db, clock, policy, outcome=outcome)
    for what in ("stuck_deployment", "stuck_escalation"):
        skip = due(db, policy, f"reminder:{rid}:{what}:")
        state = {"success": "stabilising"}.get(outcome, outcome)
        assert isinstance(skip, reminders.Skip) and skip.reason == f"deployment finished ({state})"


def test_an_emergencys_nudge_puts_the_missing_assessment_first(db, clock, policy):
    # QMS 4.6: co-approval follows the assessment, and a Go before it is refused; a nudge to approvers must
    # say what the assessment still needs, not only which approvals are missing.
    from bot.messages.aftercare import reminder
    from unit_support import assessed
    rid = new_release(db, clock, policy, type="emergency")
    notice = due(db, policy, nudge(rid))
    assert notice.detail["assessment_missing"] == ["blast radius", "rollback option",
                                                   "scope confirmed as the minimum needed",
                                                   "automated CI checks passed"]
    text, _ = reminder(notice, policy)
    assert "assessment" in text and "blast radius" in text and text.index("blast radius") < text.index("cab")
    assert assessed(db, clock, rid).changed
    text, _ = reminder(due(db, policy, nudge(rid)), policy)
    assert "assessment" not in text and "cab" in text
