"""Who a pipeline may deploy as (issue 7 items 2, 3, 12): each token's allow-list, the deploying role, and
the actor a pipeline names being a real workspace member held to the same separation of duties as a click."""
from __future__ import annotations

import httpx
import pytest

from conftest import start_bot, serving
from test_api import (ALL_CHECKED, ALL_CHECKED_QUERY, DEPLOYMENTS, GATE, IN_WINDOW, PROVENANCE, approved, counts,
                      deployments, events, release, report)

PEOPLE_TOKEN = "pp-0123456789abcdef0123"  # may name people, production only
SELF_TOKEN = "sf-0123456789abcdef0123"  # acts only as itself (the default)
STAGING_TOKEN = "st-0123456789abcdef0123"  # may name people, staging only
TOKENS = (f"deploy-pipeline={PEOPLE_TOKEN};envs=production;act_for=people, ci={SELF_TOKEN},"
          f"staging-ci={STAGING_TOKEN};envs=staging;act_for=people")


@pytest.fixture
def pbot(db, clock, policy, emulator):
    yield from serving(start_bot(db, clock, policy, emulator, env_overrides={"RELEASEBOT_API_TOKENS": TOKENS}))


def client(bot, token):
    return httpx.Client(base_url=bot.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def started(c, clock, actor=None):
    clock.set(IN_WINDOW)
    body = {"status": "started", "checklist": ALL_CHECKED, **PROVENANCE}  # the package: approved() records it
    if actor is not None:
        body["actor"] = actor
    return c.post(DEPLOYMENTS, json=body)


# ---- item 2: each token's allow-list ---------------------------------------------------------------------

def test_a_token_cannot_deploy_to_an_environment_outside_its_allow_list(pbot, db, clock):
    approved(pbot, db)  # a production release
    with client(pbot, STAGING_TOKEN) as c:
        r = started(c, clock, "U0OPS")
        gate = c.get(GATE, params={"actor": "U0OPS", **ALL_CHECKED_QUERY}).json()
    assert r.status_code == 409, r.text
    assert any("pipeline:staging-ci may deploy only to staging" in x for x in r.json()["reasons"])
    assert gate["allowed"] is False and any("only to staging" in x for x in gate["reasons"])
    assert deployments(db) == [] and release(db).state == "approved"
    [ev] = events(db, "deploy_refused")
    assert ev.actor == "U0OPS via pipeline:staging-ci"


def test_a_self_only_token_cannot_name_a_person(pbot, db, clock):
    approved(pbot, db)
    with client(pbot, SELF_TOKEN) as c:
        r = started(c, clock, "U0OPS")
    assert r.status_code == 409, r.text
    assert any("acts only as itself" in x for x in r.json()["reasons"])
    assert deployments(db) == []
    assert events(db, "deploy_refused")[0].actor == "U0OPS via pipeline:ci"


def test_a_self_only_token_deploys_as_its_own_identity(pbot, db, clock):
    approved(pbot, db)
    clock.set(IN_WINDOW)
    with client(pbot, SELF_TOKEN) as c:
        assert c.get(GATE, params={**ALL_CHECKED_QUERY, **PROVENANCE}).json()["allowed"] is True
        r = started(c, clock)
        assert r.status_code == 201, r.text
        clock.advance(minutes=10)
        assert c.post(DEPLOYMENTS, json={"status": "succeeded"}).status_code == 200
    [dep] = deployments(db)
    assert (dep.deployer_id, dep.pipeline) == ("pipeline:ci", "ci")
    assert events(db, "deployment_started")[0].actor == "pipeline:ci"
    assert events(db, "deployment_success")[0].actor == "pipeline:ci"


def test_a_pipeline_acting_as_itself_cannot_finish_a_deployment_a_person_runs(pbot, db, clock):
    approved(pbot, db)
    with client(pbot, PEOPLE_TOKEN) as c:
        assert started(c, clock, "U0OPS").status_code == 201
    with client(pbot, SELF_TOKEN) as c:
        r = c.post(DEPLOYMENTS, json={"status": "succeeded"})
    assert r.status_code == 409 and "Only the deployer" in r.json()["error"]
    assert release(db).state == "deploying"
    assert events(db, "finish_refused")[0].actor == "pipeline:ci"


# ---- item 3: only a deploying role deploys -----------------------------------------------------------------

def test_a_person_without_a_deploying_role_is_refused_with_the_role_named(pbot, db, clock):
    approved(pbot, db)
    clock.set(IN_WINDOW)
    with client(pbot, PEOPLE_TOKEN) as c:
        gate = c.get(GATE, params={"actor": "U0DEV", **ALL_CHECKED_QUERY, **PROVENANCE}).json()
        r = started(c, clock, "U0DEV")
    assert gate["allowed"] is False
    assert gate["reasons"] == ["U0DEV holds no deploying role (operations or platform_lead); QMS 3.4: a DevOps / "
                               "Platform Engineer executes the deployment"]
    assert r.status_code == 409 and r.json()["reasons"] == gate["reasons"]
    assert deployments(db) == []


# ---- item 12: the actor is a real member, held to the same rules as a click -------------------------------

@pytest.mark.parametrize("kind", ["missing", "deleted", "bot"])
def test_an_actor_who_is_not_a_workspace_member_gets_422_and_writes_nothing(pbot, db, clock, kind):
    approved(pbot, db)
    getattr(pbot.emulator, f"{kind}_users").add("UNOBODY99")
    before = counts(db)
    with client(pbot, PEOPLE_TOKEN) as c:
        r = started(c, clock, "UNOBODY99")
        gate = c.get(GATE, params={"actor": "UNOBODY99"})
    assert r.status_code == 422 and "UNOBODY99" in r.json()["error"], r.text
    assert gate.status_code == 422
    assert counts(db) == before


def test_slack_failing_the_member_lookup_gets_502_try_again(pbot, db, clock):
    approved(pbot, db)
    pbot.emulator.fail_next("users.info", status=500)
    before = counts(db)
    with client(pbot, PEOPLE_TOKEN) as c:
        r = started(c, clock, "U0OPS")
    assert r.status_code == 502 and "try again" in r.json()["error"]
    assert counts(db) == before
    with client(pbot, PEOPLE_TOKEN) as c:
        assert started(c, clock, "U0OPS").status_code == 201  # Slack is back: the same request works


def test_member_lookups_are_cached_briefly(pbot, db, clock):
    approved(pbot, db)
    with client(pbot, PEOPLE_TOKEN) as c:
        for _ in range(3):
            c.get(GATE, params={"actor": "U0OPS"})
        assert len(pbot.emulator.calls_to("users.info")) == 1
        clock.advance(minutes=10)
        c.get(GATE, params={"actor": "U0OPS"})
    assert len(pbot.emulator.calls_to("users.info")) == 2


def test_a_pipeline_report_of_the_outcome_obeys_the_finisher_rule(pbot, db, clock):
    approved(pbot, db)
    with client(pbot, PEOPLE_TOKEN) as c:
        assert started(c, clock, "U0OPS").status_code == 201
        r = report(c, "succeeded", "U0DEV")  # a bystander named by the pipeline
        rb = report(c, "rolled_back", "U0QA", note="canary red")  # an approver
    assert r.status_code == rb.status_code == 409
    assert "Only the deployer, operations or a release manager" in r.json()["error"]
    assert release(db).state == "deploying"
    assert [e.actor for e in events(db, "finish_refused")] == ["U0DEV via pipeline:deploy-pipeline",
                                                               "U0QA via pipeline:deploy-pipeline"]


def test_a_deploying_role_slack_could_not_check_is_502_try_again(db, clock, emulator):
    from commands.policy import Policy
    from conftest import ROLES
    policy = Policy.from_mapping({"roles": {**ROLES, "operations": ["U0OPS", "S0ONCALL"]}})
    running = start_bot(db, clock, policy, emulator, env_overrides={"RELEASEBOT_API_TOKENS": TOKENS})
    try:
        approved(running, db)  # the on-call group is not listed yet, so nothing about it is cached
        emulator.user_groups["S0ONCALL"] = ["U0ONCALL"]
        emulator.fail_next("usergroups.users.list", 10, status=500)  # every group lookup of this request
        before = counts(db)
        with client(running, PEOPLE_TOKEN) as c:
            r = started(c, clock, "U0ONCALL")
            assert r.status_code == 502 and "try again" in r.json()["error"], r.text
            assert counts(db) == before  # no refusal audited
            emulator.heal()
            assert started(c, clock, "U0ONCALL").status_code == 201  # Slack answers again: they deploy
    finally:
        running.slack.close()
        running.server.close()
        running.thread.join(timeout=5)
        running.executor.shutdown(wait=True)
