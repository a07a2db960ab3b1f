"""The deployment gate (QMS §3.4, §4.4 step 4): gate_reasons, check_gate and start_deployment, against the real
database."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, select

from commands.deploy import CHECKLIST, Deployer, check_gate, gate_reasons, start_deployment
from commands.errors import CouldNotCheck, NotFound
from commands.outcome import Actor
from commands.release import cancel_release, edit_release, load
from commands.vote import cast_vote, withdraw_vote
from commands.policy import Policy
from commands.provenance import Provenance
from conftest import ROLES, START, actor
from storage.models import Deployment
from unit_support import (COMMIT, REQUESTER, actions, artifact_of, counts, dev, events, new_release, outbox,
                          outbox_keys, ready_to_deploy, release)
from bot.times import iso_times

UTC = timezone.utc
# A window well past every type's lead time, so the requests stay valid whatever the planning checks demand.
WINDOW = dict(start="2026-12-09 10:00", tz="UTC", duration="60m")  # a Wednesday
OPENS = datetime(2026, 12, 9, 10, 0, tzinfo=UTC)
CLOSES = OPENS + timedelta(minutes=60)
IN_WINDOW = OPENS + timedelta(minutes=5)
ALL_CHECKED = {key: True for key, _ in CHECKLIST}
DEPLOYER = "U0DEPL"  # never votes
# Only a deploying role may deploy (QMS 3.4); every deployer below holds one, platform_lead, on top of
# whatever conftest gives them, so that each test sees only the rule it is about.
DEPLOYING = frozenset({"platform_lead"})
POLICY = Policy.from_mapping({"roles": ROLES}, source="test policy")
VOTERS = {"minor": ("U0RM", "U0QA"), "patch": ("U0EL", "U0QA"), "major": ("U0CAB1", "U0CAB2", "U0RM", "U0SEC")}


def go(db, clock, user, rid):
    out = cast_vote(db, actor(user), rid, "go", clock)
    assert out.changed, out.message
    return out


def nogo(db, clock, user, rid, reason="smoke tests are red"):
    out = cast_vote(db, actor(user), rid, "nogo", clock, note=reason)
    assert out.changed, out.message
    return out


def approved(db, clock, policy, type_="minor", **fields) -> int:
    rid = new_release(db, clock, policy, type=type_, **{**WINDOW, **fields})
    for user in VOTERS[type_]:
        go(db, clock, user, rid)
    assert release(db, rid).state == "approved"
    ready_to_deploy(db, clock, rid, POLICY)  # the package (QMS 4.3, 4.4): tests/unit/test_gate_package.py
    return rid


JUSTIFICATION = "the pipeline runner is down"


def prov(db, rid, **kw) -> dict:
    """What a start by hand from Slack names: the artefact, the commit and why not the pipeline."""
    return {"artifact": artifact_of(db, rid), "commit": COMMIT, "justification": JUSTIFICATION, **kw}


def deployments(db, rid=None) -> list[Deployment]:
    with Session(db, expire_on_commit=False) as s:
        q = select(Deployment).order_by(Deployment.id)
        if rid is not None:
            q = q.where(Deployment.release_id == rid)
        return list(s.exec(q))


def gate(db, clock, rid, deployer=DEPLOYER, checklist=None) -> list[str]:
    who = globals()["deployer"](deployer) if isinstance(deployer, str) else deployer
    return check_gate(db, rid, who, clock, ALL_CHECKED if checklist is None else checklist, POLICY,
                      Provenance(**prov(db, rid)))


def deployer(user=DEPLOYER, pipeline=None) -> Deployer:
    return Deployer(user, actor(user).roles | DEPLOYING, pipeline=pipeline)


def written(db) -> tuple:
    """(releases, votes, audit events, outbox rows, deployments) and the outbox keys."""
    return counts(db) + (len(deployments(db)),), outbox_keys(db)


# --- each failed condition is named ------------------------------------------------------------------------------

def test_an_approved_release_in_its_window_with_a_full_checklist_passes(db, clock, policy):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    assert gate(db, clock, rid) == []


def test_pending_release_is_refused_as_not_approved(db, clock, policy):
    rid = new_release(db, clock, policy, **WINDOW)
    ready_to_deploy(db, clock, rid, POLICY)
    go(db, clock, "U0RM", rid)  # one of two roles: still pending
    clock.set(IN_WINDOW)
    assert gate(db, clock, rid) == [f"REL-{rid} is pending, not approved"]


def test_cancelled_release_is_refused_as_not_approved(db, clock, policy):
    rid = approved(db, clock, policy)
    cancel_release(db, dev(), rid, "postponed", clock)
    clock.set(IN_WINDOW)
    assert gate(db, clock, rid) == [f"REL-{rid} is cancelled, not approved"]


def test_a_standing_no_go_is_named_with_voter_role_and_reason(db, clock, policy):
    rid = approved(db, clock, policy)
    nogo(db, clock, "U0QA", rid, reason="p95 regressed 30%")
    clock.set(IN_WINDOW)
    reasons = gate(db, clock, rid)
    assert reasons == [f"REL-{rid} is pending, not approved",
                       "a No-go from U0QA (qa_lead) stands: p95 regressed 30%"]


def test_a_withdrawn_no_go_no_longer_blocks(db, clock, policy):
    rid = approved(db, clock, policy)
    nogo(db, clock, "U0QA", rid)
    withdraw_vote(db, actor("U0QA"), rid, clock)
    go(db, clock, "U0QAGROUP", rid)
    clock.set(IN_WINDOW)
    assert gate(db, clock, rid) == []


@pytest.mark.parametrize("now, inside", [
    (OPENS - timedelta(seconds=1), False),
    (OPENS, True),  # the window's start is inside it
    (CLOSES - timedelta(seconds=1), True),
    (CLOSES, False),  # its end is not
    (CLOSES + timedelta(days=1), False),
])
def test_window_edges_start_inclusive_end_exclusive(db, clock, policy, now, inside):
    rid = approved(db, clock, policy)
    clock.set(now)
    reasons = gate(db, clock, rid)
    if inside:
        assert reasons == []
    else:
        [reason] = reasons
        reason = iso_times(reason)
        assert "outside the planned window 2026-12-09T10:00:00Z–2026-12-09T11:00:00Z" in reason
        assert f"now ({now:%Y-%m-%dT%H:%M:%SZ})" in reason
        assert f"/release reschedule REL-{rid}" in reason


def test_before_the_window_at_request_time(db, clock, policy):
    rid = approved(db, clock, policy)
    assert clock.now() == START  # two weeks early
    [reason] = gate(db, clock, rid)
    assert "now (2026-11-23T09:00:00Z) is outside the planned window" in iso_times(reason)


@pytest.mark.parametrize("voter", ["U0RM", "U0QA"])
def test_a_go_voter_of_the_current_round_may_not_deploy(db, clock, policy, voter):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    role = "release_manager" if voter == "U0RM" else "qa_lead"
    assert gate(db, clock, rid, deployer=voter) == [
        f"{voter} voted Go as {role}; a go/no-go approver never executes the deployment (QMS 3.4)"]


def test_a_no_go_voter_of_the_current_round_may_not_deploy(db, clock, policy):
    rid = approved(db, clock, policy)
    nogo(db, clock, "U0RM", rid)
    clock.set(IN_WINDOW)
    reasons = gate(db, clock, rid, deployer="U0RM")
    assert ("U0RM voted No-go as release_manager; a go/no-go approver never executes the deployment (QMS 3.4)"
            in reasons)


def test_a_voter_of_an_earlier_reset_round_may_deploy(db, clock, policy):
    rid = new_release(db, clock, policy, **WINDOW)
    go(db, clock, "U0QA", rid)  # round 1
    edit_release(db, dev(), rid, {"version": "2.3.2"}, clock, policy)  # new version: votes reset
    assert release(db, rid).round == 2
    go(db, clock, "U0RM", rid)
    go(db, clock, "U0QAGROUP", rid)
    assert release(db, rid).state == "approved"
    ready_to_deploy(db, clock, rid, POLICY)  # for the artefact of the new version
    clock.set(IN_WINDOW)
    assert gate(db, clock, rid, deployer="U0QA") == []
    assert "U0QAGROUP voted Go as qa_lead" in gate(db, clock, rid, deployer="U0QAGROUP")[0]
    out = start_deployment(db, deployer("U0QA"), rid, ALL_CHECKED, clock, POLICY, **prov(db, rid))
    assert out.changed and not out.refused
    assert deployments(db, rid)[0].deployer_id == "U0QA"


def test_the_requester_who_never_voted_may_deploy(db, clock, policy):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    assert gate(db, clock, rid, deployer=REQUESTER) == []


@pytest.mark.parametrize("missing", [key for key, _ in CHECKLIST])
def test_each_missing_checklist_item_is_named(db, clock, policy, missing):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    text = dict(CHECKLIST)[missing]
    assert gate(db, clock, rid, checklist={**ALL_CHECKED, missing: False}) == [f"not confirmed: {text}"]
    # absent is the same as unticked
    without = {k: v for k, v in ALL_CHECKED.items() if k != missing}
    assert gate(db, clock, rid, checklist=without) == [f"not confirmed: {text}"]


def test_an_empty_checklist_names_every_item(db, clock, policy):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    assert gate(db, clock, rid, checklist={}) == [
        "not confirmed: monitoring and alerting are active",
        "not confirmed: the rollback plan is ready and tested",
        "not confirmed: on-call is confirmed",
    ]


def test_all_failures_are_listed_at_once(db, clock, policy):
    rid = approved(db, clock, policy)
    nogo(db, clock, "U0RM", rid, reason="change freeze")
    assert clock.now() < OPENS
    reasons = gate(db, clock, rid, deployer="U0RM", checklist={"rollback": True})
    assert len(reasons) == 6, reasons
    assert reasons[0] == f"REL-{rid} is pending, not approved"
    assert reasons[1] == "a No-go from U0RM (release_manager) stands: change freeze"
    assert "outside the planned window" in reasons[2]
    assert reasons[3].startswith("U0RM voted No-go as release_manager;")
    assert reasons[4:] == ["not confirmed: monitoring and alerting are active", "not confirmed: on-call is confirmed"]


def test_gate_reasons_reads_the_current_round_only(db, clock, policy):
    rid = approved(db, clock, policy)
    p = Provenance(**prov(db, rid))
    with Session(db) as s:
        r = load(s, rid)
        assert gate_reasons(r, s, deployer("U0RM"), IN_WINDOW, ALL_CHECKED, POLICY, p) != []
        assert gate_reasons(r, s, deployer(), IN_WINDOW, ALL_CHECKED, POLICY, p) == []


def test_check_gate_writes_nothing(db, clock, policy):
    rid = approved(db, clock, policy)
    before = written(db)
    assert gate(db, clock, rid, deployer="U0RM", checklist={}) != []
    assert written(db) == before
    assert release(db, rid).state == "approved"


# --- a refused start -----------------------------------------------------------------------------------------------

def test_refused_start_records_only_a_deploy_refused_event(db, clock, policy):
    rid = approved(db, clock, policy)
    clock.set(CLOSES + timedelta(minutes=1))
    r0 = release(db, rid)
    (releases, vote_rows, audit_rows, outbox_rows, deployment_rows), keys0 = written(db)
    out = start_deployment(db, deployer(pipeline="gitlab"), rid, {"monitoring": True}, clock, POLICY,
                           **prov(db, rid))
    assert out.refused and not out.changed
    reasons = out.data["reasons"]
    assert len(reasons) == 3
    assert "outside the planned window" in reasons[0]
    assert reasons[1:] == ["not confirmed: the rollback plan is ready and tested",
                           "not confirmed: on-call is confirmed"]
    assert out.message == f"REL-{rid} cannot be deployed now:\n" + "\n".join(f"• {r}" for r in reasons)
    # the refusal itself is audited, with every reason and the checklist as given
    assert written(db) == ((releases, vote_rows, audit_rows + 1, outbox_rows, deployment_rows), keys0)
    [ev] = events(db, rid, "deploy_refused")
    assert ev.actor == f"{DEPLOYER} via pipeline:gitlab"
    assert ev.at == clock.now()
    assert ev.after == {"code": "gate", "reasons": reasons, "checklist": {"monitoring": True},
                        "artifact": artifact_of(db, rid), "commit": COMMIT}
    assert ev.reason == out.message
    # ... and nothing else: no deployment, no state change, no announcement
    assert deployments(db) == []
    r = release(db, rid)
    assert (r.state, r.revision, r.updated_at) == ("approved", r0.revision, r0.updated_at)
    assert outbox_keys(db) == keys0


def test_refusal_by_an_approver_names_them(db, clock, policy):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    out = start_deployment(db, deployer("U0QA"), rid, ALL_CHECKED, clock, POLICY, **prov(db, rid))
    assert out.refused
    [ev] = events(db, rid, "deploy_refused")
    assert ev.actor == "U0QA"
    assert ev.after["reasons"] == ["U0QA voted Go as qa_lead; a go/no-go approver never executes the deployment "
                                   "(QMS 3.4)"]
    assert deployments(db) == [] and release(db, rid).state == "approved"


# --- a successful start ---------------------------------------------------------------------------------------------

def test_start_records_the_deployment(db, clock, policy):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    r0 = release(db, rid)
    keys0 = outbox_keys(db)
    out = start_deployment(db, deployer(pipeline="deploy"), rid, {**ALL_CHECKED, "extra": True}, clock, POLICY,
                           artifact="payments:2.3.1", commit="0123abcd", pipeline_url="https://ci.test/p/42")
    assert out.changed and not out.refused
    assert out.data == {"reasons": []}
    assert f"/release done REL-{rid} outcome=success|rolled_back|failed" in out.message
    r = release(db, rid)
    assert r.state == "deploying"
    assert r.revision == r0.revision + 1 and r.updated_at == IN_WINDOW
    [dep] = deployments(db)
    assert (dep.release_id, dep.deployer_id, dep.pipeline, dep.started_at) == (rid, DEPLOYER, "deploy", IN_WINDOW)
    assert (dep.manual, dep.justification, dep.package_complete, dep.policy_hash) == (False, None, True,
                                                                                       POLICY.digest)
    assert dep.checklist == {"monitoring": True, "rollback": True, "oncall": True}  # only the gate's items
    assert (dep.artifact, dep.commit, dep.pipeline_url) == ("payments:2.3.1", "0123abcd", "https://ci.test/p/42")
    assert (dep.finished_at, dep.outcome, dep.stabilisation_ends_at) == (None, None, None)
    [ev] = events(db, rid, "deployment_started")
    assert (ev.actor, ev.at) == (f"{DEPLOYER} via pipeline:deploy", IN_WINDOW)
    assert ev.before["state"] == "approved"
    assert ev.after["state"] == "deploying"
    assert ev.after["deployer"] == DEPLOYER
    assert ev.after["checklist"] == dep.checklist
    assert (ev.after["artifact"], ev.after["commit"], ev.after["pipeline_url"]) == (
        "payments:2.3.1", "0123abcd", "https://ci.test/p/42")
    new = [row for row in outbox(db) if row.key not in keys0]
    assert [row.key for row in new] == [f"approval:{rid}:event:{ev.id}", f"note:{rid}:deployment_started:",
                                        f"reminder:{rid}:stuck_deployment:", f"reminder:{rid}:stuck_escalation:"]
    assert new[0].kind == "approval_message"
    assert new[1].kind == "thread_note"
    assert new[1].payload == {"event": "deployment_started", "deployer": DEPLOYER}
    assert {row.stream for row in new[:2]} == {f"release:{rid}"}
    assert {row.due_at for row in new[:2]} == {IN_WINDOW}
    # the stuck-deployment reminders are due after the window (tests/unit/test_reminders.py)
    assert [row.kind for row in new[2:]] == ["reminder", "reminder"]


def test_start_through_a_pipeline_names_the_pipeline_in_the_audit(db, clock, policy):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    out = start_deployment(db, deployer(pipeline="deploy-prod"), rid, ALL_CHECKED, clock, POLICY,
                           **prov(db, rid, commit="beef"))
    assert out.changed
    [dep] = deployments(db)
    assert (dep.deployer_id, dep.pipeline, dep.commit) == (DEPLOYER, "deploy-prod", "beef")
    [ev] = events(db, rid, "deployment_started")
    assert ev.actor == f"{DEPLOYER} via pipeline:deploy-prod"
    assert ev.after["deployer"] == DEPLOYER


def test_a_second_start_by_the_same_deployer_is_idempotent(db, clock, policy):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    assert start_deployment(db, deployer(), rid, ALL_CHECKED, clock, POLICY, **prov(db, rid)).changed
    before = (actions(db, rid), outbox_keys(db), release(db, rid).revision)
    clock.advance(minutes=2)
    # a retried delivery; even with a different checklist it is the same deployment
    out = start_deployment(db, deployer(pipeline="gitlab"), rid, {}, clock, POLICY, **prov(db, rid))
    assert not out.changed and not out.refused
    assert iso_times(out.message) == f"REL-{rid} is already being deployed by you since 2026-12-09T10:05:00Z."
    assert out.data == {"reasons": []}
    assert (actions(db, rid), outbox_keys(db), release(db, rid).revision) == before
    [dep] = deployments(db)
    assert dep.started_at == IN_WINDOW and dep.pipeline is None


def test_a_second_start_by_someone_else_is_refused(db, clock, policy):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    start_deployment(db, deployer(), rid, ALL_CHECKED, clock, POLICY, **prov(db, rid))
    out = start_deployment(db, deployer("U0DEV2"), rid, ALL_CHECKED, clock, POLICY, **prov(db, rid))
    assert out.refused
    assert out.data["reasons"] == [f"REL-{rid} is deploying, not approved"]
    [dep] = deployments(db)
    assert dep.deployer_id == DEPLOYER
    assert events(db, rid, "deploy_refused")[-1].actor == "U0DEV2"


def test_start_on_a_missing_release_is_not_found(db, clock, policy):
    with pytest.raises(NotFound):
        start_deployment(db, deployer(), 999, ALL_CHECKED, clock, POLICY)
    assert deployments(db) == []


# --- only a deploying role deploys (QMS 3.4) ---------------------------------------------------------------------

@pytest.mark.parametrize("user", [DEPLOYER, REQUESTER, "U0EXEC"])
def test_a_person_without_a_deploying_role_is_refused_and_the_role_named(db, clock, policy, user):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    who = Deployer(user, actor(user).roles)  # no platform_lead granted here
    reason = (f"{user} holds no deploying role (operations or platform_lead); QMS 3.4: a DevOps / Platform "
              "Engineer executes the deployment")
    assert check_gate(db, rid, who, clock, ALL_CHECKED, POLICY, Provenance(**prov(db, rid))) == [reason]
    out = start_deployment(db, who, rid, ALL_CHECKED, clock, POLICY, **prov(db, rid))
    assert out.refused and out.data["reasons"] == [reason]
    [ev] = events(db, rid, "deploy_refused")
    assert ev.actor == user and ev.after["reasons"] == [reason]
    assert deployments(db) == [] and release(db, rid).state == "approved"


@pytest.mark.parametrize("user", ["U0OPS", "U0PL"])
def test_operations_and_platform_leads_deploy(db, clock, policy, user):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    out = start_deployment(db, Deployer(user, actor(user).roles), rid, ALL_CHECKED, clock, POLICY, **prov(db, rid))
    assert out.changed, out.message


def test_the_deploying_roles_are_policy(db, clock, policy):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    ops_only = Policy.from_mapping({"roles": ROLES, "deployment": {"deployers": ["operations"]}})
    [reason] = check_gate(db, rid, Deployer("U0PL", actor("U0PL").roles), clock, ALL_CHECKED, ops_only,
                          Provenance(**prov(db, rid)))
    assert "U0PL holds no deploying role (operations)" in reason


def test_a_role_slack_could_not_check_is_try_again_not_a_refusal(db, clock, policy):
    rid = approved(db, clock, policy)
    clock.set(IN_WINDOW)
    before = written(db)
    who = Deployer.of(Actor("U0OPSGROUP", frozenset(), frozenset({"operations"})))
    with pytest.raises(CouldNotCheck) as exc:
        start_deployment(db, who, rid, ALL_CHECKED, clock, POLICY, **prov(db, rid))
    assert "could not confirm whether you hold operations" in exc.value.message
    assert written(db) == before  # nothing written, nothing audited


def test_the_pipeline_identity_is_held_to_the_approver_rule_too(db, clock, policy):
    rid = new_release(db, clock, policy, **WINDOW)
    ready_to_deploy(db, clock, rid, POLICY)
    # an identity that voted (here a pipeline's, as any id could be) never executes the deployment
    assert cast_vote(db, Actor("pipeline:ci", frozenset({"release_manager"})), rid, "go", clock).changed
    go(db, clock, "U0QA", rid)
    clock.set(IN_WINDOW)
    reasons = gate(db, clock, rid, deployer(pipeline="ci"))
    assert reasons == ["pipeline:ci voted Go as release_manager; a go/no-go approver never executes the deployment "
                       "(QMS 3.4)"]
    assert gate(db, clock, rid, deployer(pipeline="nightly")) == []


# --- blackouts (QMS 5.1): deploying inside one needs an executive's override ---------------------------------------

def _freeze_behind_the_bots_back(db, clock, policy, **scope):
    """A blackout over the window that no planning check has seen (as if written by another path)."""
    from commands.blackout import materialize
    from storage.db import transaction
    from storage.models import Blackout
    with transaction(db) as s:
        b = Blackout(name="Peak trading", start_local=datetime(2026, 12, 9), end_local=datetime(2026, 12, 10),
                     tz="UTC", services=scope.get("services", []), environments=scope.get("environments", []),
                     created_by="U0RM", created_at=clock.now())
        s.add(b)
        s.flush()
        materialize(s, b, clock.now(), policy)
        return b.id


def test_the_gate_refuses_inside_a_blackout_without_an_executive_override(db, clock, policy):
    rid = approved(db, clock, policy)
    bid = _freeze_behind_the_bots_back(db, clock, policy)
    clock.set(IN_WINDOW)
    reasons = gate(db, clock, rid)
    assert [iso_times(r) for r in reasons] == [
        "REL-1 falls in blackout 'Peak trading' (2026-12-09T00:00:00Z–2026-12-10T00:00:00Z); deploying "
                       "in it needs an executive override of its blackout flag (QMS 5.1)"]
    assert bid


def test_the_gate_ignores_a_blackout_of_another_service(db, clock, policy):
    rid = approved(db, clock, policy)
    _freeze_behind_the_bots_back(db, clock, policy, services=["search"])
    clock.set(IN_WINDOW)
    assert gate(db, clock, rid) == []


def test_the_gate_lets_an_executive_override_of_the_blackout_stand(db, clock, policy):
    from commands.blackout import add_blackout
    from commands.release import override_flags
    add_blackout(db, actor("U0RM"), {"name": "Peak trading", "start": "2026-12-09 00:00", "end": "2026-12-10 00:00",
                                     "tz": "UTC"}, clock, policy)
    rid = new_release(db, clock, policy, **WINDOW)
    assert override_flags(db, actor("U0EXEC"), rid, "blackout", "VP approved", clock, policy).changed
    for user in VOTERS["minor"]:
        go(db, clock, user, rid)
    assert release(db, rid).state == "approved"
    ready_to_deploy(db, clock, rid, POLICY)
    clock.set(IN_WINDOW)
    assert gate(db, clock, rid) == []


def test_the_reasons_that_time_or_votes_fix_carry_a_code_besides_their_words(db, clock, policy):
    rid = approved(db, clock, policy)
    nogo(db, clock, "U0RM", rid, reason="change freeze")
    reasons = gate(db, clock, rid, checklist={})
    codes = [getattr(r, "code", None) for r in reasons]
    assert codes[:2] == ["not_approved", None] and codes[2] == "outside_window"  # the No-go's has none
    assert reasons[0] == f"REL-{rid} is pending, not approved"  # still a person's words, as before


def test_githubs_wait_goes_by_the_codes_not_by_the_gates_wording(monkeypatch):
    from types import SimpleNamespace

    from commands import github_gate
    from commands.outcome import Reason
    early = SimpleNamespace(state="pending", start_at=OPENS, ref="REL-1")
    reworded = [Reason("awaiting the vote", "not_approved"), Reason("too soon", "outside_window")]
    assert github_gate._waitable(early, OPENS - timedelta(hours=1), reworded) == []
    # the same words without the code are a refusal: no wording is matched
    worded = ["REL-1 is pending, not approved"]
    assert github_gate._waitable(early, OPENS - timedelta(hours=1), worded) == worded
