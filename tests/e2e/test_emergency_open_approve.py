"""The emergency track's opening, assessment and co-approval (QMS 4.6, 3.7), over signed HTTP and the emulator."""
from __future__ import annotations

import json

import httpx
import pytest
from sqlmodel import Session, select

from storage.models import AuditEvent, Emergency, Outbox, Release

from conftest import CHANNEL, serving, start_bot

TOKEN = "ci-0123456789abcdef0123"
OPEN = 'emergency service=payments incident=INC-4211 summary="Stop double charges"'
ASSESS = 'assess REL-1 blast_radius="checkout only" rollback="redeploy 2.3.0" scope=confirmed'
META = json.dumps({"channel": "C0DEV"})


@pytest.fixture
def em_bot(db, clock, policy, emulator):
    yield from serving(start_bot(db, clock, policy, emulator, env_overrides={"RELEASEBOT_API_TOKENS":
                                                                             f"ci={TOKEN}"}))


def rows(db, model):
    with Session(db) as s:
        return list(s.exec(select(model).order_by(model.id)))


def said(bot, n=-1) -> str:
    return bot.emulator.calls_to("response_url")[n].args["text"]


def thread(bot) -> list[str]:
    return [c.args["text"] for c in bot.emulator.calls_to("chat.postMessage") if c.args.get("thread_ts")]


def ci_passed(bot, ref="REL-1"):
    with httpx.Client(base_url=bot.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as c:
        return c.post(f"/api/v1/releases/{ref}/assessment", json={"ci": "passed"})


def test_release_emergency_opens_an_emergency_release_and_says_where_the_bridge_is(em_bot, db, clock):
    r = em_bot.command(OPEN, user="U0DEV")
    assert r.status_code == 200
    [rel] = rows(db, Release)
    assert (rel.effective_type, rel.version, rel.start_at) == ("emergency", "hotfix", clock.now())
    [em] = rows(db, Emergency)
    assert em.incident == "INC-4211" and em.release_id == rel.id
    text = said(em_bot)
    assert "REL-1" in text and "#rel-1-payments-emergency" in text and "assess REL-1" in text
    # the approval message shows both ways of approving
    [post] = [c for c in em_bot.emulator.calls_to("chat.postMessage")  # in the release channel, not the bridge
              if c.args.get("channel") == CHANNEL and not c.args.get("thread_ts") and c.args.get("blocks")
              and "Any one" in json.dumps(c.args["blocks"])]
    shown = json.dumps(post.args["blocks"])
    assert "Any one of these sets approves" in shown and "cab" in shown and "engineering_lead" in shown
    assert [o.kind for o in rows(db, Outbox) if o.kind == "bridge_open"] == ["bridge_open"]


def test_an_emergency_without_an_incident_is_refused_and_nothing_is_written(em_bot, db):
    em_bot.command('emergency service=payments summary="Stop double charges"', user="U0DEV")
    assert "incident" in said(em_bot) and "QMS 4.6" in said(em_bot)
    assert rows(db, Release) == [] and rows(db, AuditEvent) == []


def test_co_approval_by_two_cab_members_after_the_assessment(em_bot, db):
    em_bot.command(OPEN, user="U0DEV")
    em_bot.command("go REL-1", user="U0CAB1")
    assert "co-approval follows the assessment" in said(em_bot) and "blast radius" in said(em_bot)
    em_bot.command(ASSESS, user="U0OPS")
    assert "still needs: automated CI checks passed" in said(em_bot)
    assert ci_passed(em_bot).json()["assessed"] is True
    # the pipeline's report is recorded once, as the pipeline
    again = ci_passed(em_bot)
    assert again.status_code == 200 and "Already recorded" in again.json()["message"]
    em_bot.command("go REL-1", user="U0CAB1")
    em_bot.command("go REL-1", user="U0CAB2")
    assert "REL-1 is now approved" in said(em_bot)
    [rel] = rows(db, Release)
    [em] = rows(db, Emergency)
    assert rel.state == "approved" and em.approver_set == "cab ×2" and em.ci_passed_by == "pipeline:ci"
    em_bot.deliver()
    assert any("approved* by the approver set cab ×2" in t for t in thread(em_bot))
    acts = [e.action for e in rows(db, AuditEvent)]
    assert acts.count("assessment_recorded") == 4 and acts.count("assessment_complete") == 1
    assert acts.index("assessment_complete") < acts.index("approved")
    assert "vote_refused" in acts


def test_co_approval_by_a_release_manager_and_an_engineering_lead_after_the_assessment(em_bot, db):
    em_bot.command(OPEN + " security=no", user="U0DEV")
    em_bot.command(ASSESS + " ci=passed", user="U0EL")
    assert "complete" in said(em_bot)
    em_bot.command("go REL-1", user="U0CAB1")       # half of the CAB set...
    em_bot.command("go REL-1", user="U0RM")         # ...and half of the other: not approved
    assert rows(db, Release)[0].state == "pending"
    em_bot.command("go REL-1", user="U0EL")
    [rel] = rows(db, Release)
    [em] = rows(db, Emergency)
    assert rel.state == "approved" and em.approver_set == "release_manager + engineering_lead"
    [ev] = [e for e in rows(db, AuditEvent) if e.action == "approved"]
    assert ev.after["approval_target_minutes"] == 30 and ev.after["approval_within_target"] is True


def test_the_pipeline_reports_ci_only_for_an_emergency(em_bot, db):
    em_bot.command('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-15 10:00" '
                   'tz=UTC duration=60m summary="Add refunds"', user="U0DEV")
    r = ci_passed(em_bot)
    assert r.status_code == 400 and "not an emergency" in r.json()["error"]
    em_bot.command(OPEN, user="U0DEV")
    bad = httpx.post(f"{em_bot.url}/api/v1/releases/REL-2/assessment", json={"ci": "failed"},
                     headers={"Authorization": f"Bearer {TOKEN}"})
    assert bad.status_code == 400
    assert [e.action for e in rows(db, AuditEvent) if e.release_id == 2].count("assessment_recorded") == 0


def test_the_request_form_asks_for_the_incident_when_it_answers_one(em_bot, db):
    from test_request_modal import answers, chosen_type, values
    em_bot.command("request", user="U0DEV")
    view = em_bot.emulator.calls_to("views.open")[0].response["view"]
    assert "incident" not in [b.get("block_id") for b in view["blocks"]]
    em_bot.slack.view_block_action("answers", view, values(answers=answers("incident")), user="U0DEV")
    em_bot.idle()
    [update] = em_bot.emulator.calls_to("views.update")
    assert "incident" in [b.get("block_id") for b in update.args["view"]["blocks"]]
    r = em_bot.submit("release_request", values(answers=answers("incident"), type=chosen_type("emergency")),
                      user="U0DEV", private_metadata=META)
    assert r.json()["response_action"] == "errors" and "QMS 4.6" in r.json()["errors"]["incident"]
    assert rows(db, Release) == []
    ok = values(answers=answers("incident"), type=chosen_type("emergency"),
                incident={"incident": {"type": "plain_text_input", "value": "INC-4211"}})
    em_bot.submit("release_request", ok, user="U0DEV", private_metadata=META)
    [em] = rows(db, Emergency)
    assert em.incident == "INC-4211"
