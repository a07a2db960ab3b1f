"""The release package at the gate over real HTTP (QMS 4.3, 4.4): test evidence from pipelines (/evidence) and
people (/release test, the Record test result form), waivers, documents (/package, /release edit), the artefact
a pipeline starts, and a manual production deployment from Slack's form."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from storage.models import AuditEvent, Deployment, NonConformance, Release
from storage.quality_models import TestResult, Waiver

from conftest import CHANNEL, TABLES, start_bot, serving
from package_steps import ARTIFACT, COMMIT, form_values, ready

UTC = timezone.utc
TOKEN = "ev-0123456789abcdef0123"
LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-15 10:00" tz=UTC duration=60m '
        'summary="Add refunds"')
IN_WINDOW = datetime(2026, 12, 15, 10, 5, tzinfo=UTC)
CHECKED = {"monitoring": True, "rollback": True, "oncall": True}
FORM_CHECKED = {"checklist": {"checklist": {"selected_options": [{"value": "monitoring"}, {"value": "rollback"},
                                                                  {"value": "oncall"}]}}}
EVIDENCE, PACKAGE = "/api/v1/releases/REL-1/evidence", "/api/v1/releases/REL-1/package"
DEPLOYMENTS = "/api/v1/releases/REL-1/deployments"


@pytest.fixture
def api_bot(db, clock, policy, emulator):
    yield from serving(start_bot(db, clock, policy, emulator,
                                 env_overrides={"RELEASEBOT_API_TOKENS": f"ci={TOKEN};act_for=people"}))


@pytest.fixture
def api(api_bot):
    with httpx.Client(base_url=api_bot.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as c:
        yield c


def approved(bot, db):
    bot.command(LINE, user="U0DEV")
    bot.command("go REL-1", user="U0RM")
    bot.command("go REL-1", user="U0QA")
    assert release(db).state == "approved"


def release(db, rid=1) -> Release:
    with Session(db) as s:
        return s.get(Release, rid)


def rows(db, model) -> list:
    with Session(db) as s:
        return list(s.exec(select(model).order_by(model.id)))


def counts(db) -> dict[str, int]:
    with db.connect() as conn:
        return {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one() for t in TABLES}


def actions(db) -> list[str]:
    return [e.action for e in rows(db, AuditEvent)]


def answered(bot) -> str:
    return bot.emulator.calls_to("response_url")[-1].args["text"]


def evidence(api, phase, status="passed", **extra) -> httpx.Response:
    return api.post(EVIDENCE, json={"phase": phase, "status": status, "url": f"https://ci.test/{phase}",
                                    "artifact": ARTIFACT, **extra})


# ---- the pipeline's evidence and documents ---------------------------------------------------------------------

def test_evidence_is_recorded_and_says_what_the_gate_still_misses(api_bot, api, db, clock):
    approved(api_bot, db)
    r = evidence(api, "security", summary="0 critical")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["recorded"]["phase"] == "security" and body["recorded"]["status"] == "passed"
    assert body["recorded"]["artifact"] == ARTIFACT and body["recorded"]["at"] == "2026-11-23T09:00:00Z"
    assert body["missing"] == ["phase:performance", "phase:regression", "document:release_notes", "document:runbook"]
    [row] = rows(db, TestResult)
    assert (row.reported_by, row.source, row.summary) == ("pipeline:ci", "pipeline", "0 critical")
    assert actions(db)[-1] == "test_result"
    api_bot.deliver()
    assert any("Test result for REL-1" in c.args["text"] for c in api_bot.emulator.calls_to("chat.postMessage")
               if c.args.get("thread_ts"))


@pytest.mark.parametrize("body, status, fragment", [
    ({"phase": "smoke", "status": "passed", "url": "https://ci.test/1"}, 400, "not a test phase"),
    ({"phase": "security", "status": "green", "url": "https://ci.test/1"}, 400, "status must be passed or failed"),
    ({"phase": "security", "status": "passed", "url": "https://ci.test/1", "colour": "red"}, 400,
     "unknown field colour"),
    ({"phase": "security", "status": "passed"}, 400, "url is required"),
    ({"phase": 3, "status": "passed", "url": "https://ci.test/1"}, 400, "phase must be a string"),
])
def test_bad_evidence_gets_400_and_writes_nothing(api_bot, api, db, body, status, fragment):
    approved(api_bot, db)
    before = counts(db)
    r = api.post(EVIDENCE, json=body)
    assert r.status_code == status and fragment in r.json()["error"], r.text
    assert counts(db) == before


def test_evidence_for_an_unknown_release_is_404(api_bot, api, db):
    before = counts(db)
    r = api.post("/api/v1/releases/REL-7/evidence", json={"phase": "security", "status": "passed",
                                                         "url": "https://ci.test/1"})
    assert r.status_code == 404 and counts(db) == before


def test_uat_from_a_pipeline_is_403_and_records_no_result(api_bot, api, db):
    approved(api_bot, db)
    r = evidence(api, "uat")
    assert r.status_code == 403 and "a pipeline cannot record it" in r.json()["error"]
    assert rows(db, TestResult) == []
    assert actions(db)[-1] == "test_result_refused"  # a refusal is audited, like every refusal


def test_the_package_from_the_pipeline_keeps_the_votes(api_bot, api, db):
    approved(api_bot, db)
    r = api.post(PACKAGE, json={"notes": "https://wiki.test/n", "runbook": "https://wiki.test/r"})
    assert r.status_code == 200, r.text
    assert sorted(r.json()["documents"]) == ["release_notes", "runbook"]
    rel = release(db)
    assert (rel.state, rel.round, rel.release_notes, rel.runbook) == ("approved", 1, "https://wiki.test/n",
                                                                       "https://wiki.test/r")
    before = counts(db)
    for bad in ({"notes": "see the wiki"}, {"poem": "x"}, {}):
        assert api.post(PACKAGE, json=bad).status_code == 400
    assert counts(db) == before


# ---- the gate with the package ------------------------------------------------------------------------------------

def test_a_pipeline_start_without_the_package_is_refused_naming_each_missing_item(api_bot, api, db, clock):
    approved(api_bot, db)
    evidence(api, "security")
    clock.set(IN_WINDOW)
    r = api.post(DEPLOYMENTS, json={"status": "started", "actor": "U0OPS", "checklist": CHECKED,
                                    "artifact": ARTIFACT, "commit": COMMIT})
    assert r.status_code == 409
    reasons = r.json()["reasons"]
    assert [x.split(" is required")[0] for x in reasons if x.startswith("test phase")] == [
        "test phase performance", "test phase regression"]
    assert any(x.startswith("the release notes is missing") for x in reasons)
    assert any(x.startswith("the deployment runbook is missing") for x in reasons)
    assert rows(db, Deployment) == []


def test_a_wrong_artefact_is_refused_with_the_reason(api_bot, api, db, clock):
    approved(api_bot, db)
    ready(api_bot)
    clock.set(IN_WINDOW)
    r = api.post(DEPLOYMENTS, json={"status": "started", "actor": "U0OPS", "checklist": CHECKED,
                                    "artifact": "payments:2.4.0", "commit": COMMIT})
    assert r.status_code == 409
    [reason] = [x for x in r.json()["reasons"] if x.startswith("artefact")]
    assert reason.startswith("artefact payments:2.4.0 does not carry REL-1's approved version 2.3.1")
    assert rows(db, Deployment) == []
    r = api.post(DEPLOYMENTS, json={"status": "started", "actor": "U0OPS", "checklist": CHECKED,
                                    "artifact": ARTIFACT, "commit": COMMIT})
    assert r.status_code == 201, r.text
    [dep] = rows(db, Deployment)
    assert (dep.artifact, dep.manual, dep.package_complete) == (ARTIFACT, False, True)


def test_a_failure_after_a_pass_shuts_the_gate(api_bot, api, db, clock):
    approved(api_bot, db)
    ready(api_bot)
    assert evidence(api, "regression", "failed").status_code == 201
    clock.set(IN_WINDOW)
    r = api.get("/api/v1/releases/REL-1/gate", params={"actor": "U0OPS", "monitoring": "1", "rollback": "1",
                                                       "oncall": "1", "artifact": ARTIFACT, "commit": COMMIT})
    assert r.json()["reasons"] == [f"test phase regression is required (QMS 4.3) and its latest result for artefact "
                                   f"{ARTIFACT} failed; record a pass, or a release manager waives it"]


def test_a_waiver_in_slack_opens_the_gate(api_bot, api, db, clock):
    approved(api_bot, db)
    ready(api_bot)
    assert evidence(api, "performance", "failed").status_code == 201
    before = rows(db, AuditEvent), counts(db)["waiver"], counts(db)["outbox"]
    api_bot.command("waive REL-1 item=performance", user="U0RM")
    assert "a waiver needs a written reason" in answered(api_bot)
    assert (rows(db, AuditEvent), counts(db)["waiver"], counts(db)["outbox"]) == before  # only the delivery's own
    api_bot.command('waive REL-1 item=performance reason="baseline env down"', user="U0QA")
    assert "Only a release manager may waive" in answered(api_bot)
    assert rows(db, Waiver) == [] and actions(db)[-1] == "waiver_refused"
    api_bot.command('waive REL-1 item=performance reason="baseline env down; canary watches p95"', user="U0RM")
    assert "is waived" in answered(api_bot)
    [w] = rows(db, Waiver)
    assert (w.item, w.by) == ("phase:performance", "U0RM")
    clock.set(IN_WINDOW)
    r = api.post(DEPLOYMENTS, json={"status": "started", "actor": "U0OPS", "checklist": CHECKED,
                                    "artifact": ARTIFACT, "commit": COMMIT})
    assert r.status_code == 201, r.text
    [dep] = rows(db, Deployment)
    assert dep.package_complete is False  # open by exception


# ---- people's evidence in Slack -------------------------------------------------------------------------------

def test_uat_by_someone_who_is_not_the_product_owner_is_refused_in_slack(bot, db):
    bot.command(LINE.replace("type=minor flags=feature", "type=major flags=breaking"), user="U0DEV")
    bot.command("test REL-1 phase=uat status=passed url=https://jira.test/UAT-1", user="U0QA")
    assert "you do not hold product_owner" in answered(bot) and "U0PO" in answered(bot)
    assert rows(db, TestResult) == []
    bot.command("test REL-1 phase=uat status=passed url=https://jira.test/UAT-1", user="U0PO")
    assert "uat passed recorded" in answered(bot)
    [row] = rows(db, TestResult)
    assert (row.phase, row.reported_by, row.source, row.artifact) == ("uat", "U0PO", "slack", None)


def test_bad_test_input_in_slack_says_the_right_form(bot, db):
    bot.command(LINE, user="U0DEV")
    before = rows(db, AuditEvent), rows(db, TestResult), counts(db)["outbox"]
    bot.command("test REL-1 phase=smoke status=passed url=https://ci.test/1", user="U0QA")
    assert "'smoke' is not a test phase" in answered(bot) and "/release test REL-12 phase=" in answered(bot)
    bot.command("test REL-9 phase=security status=passed url=https://ci.test/1", user="U0QA")
    assert "REL-9 does not exist" in answered(bot)
    assert (rows(db, AuditEvent), rows(db, TestResult), counts(db)["outbox"]) == before


def test_the_record_test_result_button_opens_the_form_and_records(bot, db):
    bot.command(LINE, user="U0DEV")
    post = bot.emulator.calls_to("chat.postMessage")[0]
    assert "Record test result" in json.dumps(post.args["blocks"])
    bot.click("evidence_record", "1", user="U0QA", channel=post.response["channel"], message_ts=post.response["ts"])
    view = bot.emulator.calls_to("views.open")[-1].args["view"]
    assert view["callback_id"] == "evidence_form"
    values = {"phase": {"phase": {"type": "static_select", "selected_option": {"value": "security"}}},
              "status": {"status": {"type": "static_select", "selected_option": {"value": "passed"}}},
              "url": {"url": {"type": "plain_text_input", "value": "https://ci.test/sec"}},
              "artifact": {"artifact": {"type": "plain_text_input", "value": ARTIFACT}}}
    bot.submit("evidence_form", values, user="U0QA", private_metadata=view["private_metadata"])
    [row] = rows(db, TestResult)
    assert (row.phase, row.status, row.url, row.artifact, row.reported_by) == (
        "security", "passed", "https://ci.test/sec", ARTIFACT, "U0QA")
    assert "security passed recorded" in bot.emulator.said_to("U0QA")[-1]


# ---- a manual production deployment from Slack --------------------------------------------------------------------

def open_deploy_form(bot, clock, user="U0PL") -> dict:
    clock.set(IN_WINDOW)
    post = bot.emulator.calls_to("chat.postMessage")[0]
    bot.click("deploy_start", "1", user=user, channel=post.response["channel"], message_ts=post.response["ts"])
    view = bot.emulator.calls_to("views.open")[-1].args["view"]
    assert view["callback_id"] == "deploy_checklist"
    assert {"artifact", "commit", "justification"} <= {b.get("block_id") for b in view["blocks"]}
    return view


def test_a_manual_production_deployment_is_justified_recorded_and_one_non_conformance(bot, db, clock):
    approved(bot, db)
    ready(bot)
    view = open_deploy_form(bot, clock)
    before = counts(db)
    bot.submit("deploy_checklist", {**FORM_CHECKED, **form_values(justification=None)}, user="U0PL",
               private_metadata=view["private_metadata"])
    assert "needs a written justification" in bot.emulator.said_to("U0PL")[-1]
    assert rows(db, Deployment) == [] and counts(db)["audit_event"] == before["audit_event"] + 1  # deploy_refused
    view = open_deploy_form(bot, clock)
    for _ in range(2):  # a double submit: one deployment, one non-conformance
        bot.submit("deploy_checklist", {**FORM_CHECKED, **form_values()}, user="U0PL",
                   private_metadata=view["private_metadata"])
    [dep] = rows(db, Deployment)
    assert (dep.manual, dep.justification, dep.artifact, dep.commit) == (
        True, "the deploy pipeline is down (INC-77)", ARTIFACT, COMMIT)
    [nc] = rows(db, NonConformance)
    assert (nc.kind, nc.deployment_id) == ("manual_deployment", dep.id)
    bot.deliver()
    posted = [c for c in bot.emulator.calls_to("chat.postMessage") if c.args.get("channel") == CHANNEL
              and not c.args.get("thread_ts") and "Non-conformance" in c.args["text"]]
    assert len(posted) == 1 and "<@U0RM>" in posted[0].args["text"] and "by hand" in posted[0].args["text"]
