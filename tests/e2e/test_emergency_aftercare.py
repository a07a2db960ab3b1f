"""An emergency after its deployment, through Slack and the Pipeline API (issue 10 items 6, 8, 9): validation
refused early then confirmed with the thread's button, the deferred steps reminded in the bridge, a step missed
by the clock recorded as one non-conformance, and `releasebot audit` showing the steps."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from sqlmodel import Session, select

from storage.models import Emergency, NonConformance, Task

from conftest import CHANNEL, start_bot, serving
from package_steps import COMMIT, form_values, ready

UTC = timezone.utc
LINE = ('request service=payments version=1.2.4 type=emergency flags=incident start="2026-12-15 10:00" tz=UTC '
        'duration=60m summary="Stop double charges" incident=INC-4211')
IN_WINDOW = datetime(2026, 12, 15, 10, 5, tzinfo=UTC)
FINISHED = datetime(2026, 12, 15, 10, 30, tzinfo=UTC)
ALL_CHECKED = {"checklist": {"checklist": {"selected_options": [{"value": "monitoring"}, {"value": "rollback"},
                                                                 {"value": "oncall"}]}}, **form_values("payments:1.2.4")}
TOKEN = "dp-0123456789abcdef0123"
ARTIFACT = "payments:1.2.4"


def approved(bot, db):
    bot.command(LINE, user="U0DEV")
    # co-approval follows the assessment (QMS 4.6)
    bot.command('assess REL-1 blast_radius="payments" rollback="redeploy 1.2.3" scope=confirmed ci=passed',
                user="U0OPS")
    bot.command("go REL-1", user="U0RM")
    bot.command("go REL-1", user="U0EL")
    ready(bot, 1, "emergency", artifact=ARTIFACT)  # QMS 4.6: the CI checks and targeted regression; its documents are deferred


def started(bot, clock):
    clock.set(IN_WINDOW)  # outside its window the button refuses before the checklist opens (the precheck)
    post = bot.emulator.calls_to("chat.postMessage")[0]
    bot.click("deploy_start", "1", user="U0PL", channel=post.response["channel"], message_ts=post.response["ts"])
    view = bot.emulator.calls_to("views.open")[-1].args["view"]
    clock.set(IN_WINDOW)
    bot.submit("deploy_checklist", ALL_CHECKED, user="U0PL", private_metadata=view["private_metadata"])


def deployed(bot, db, clock):
    approved(bot, db)
    started(bot, clock)
    clock.set(FINISHED)
    bot.command("done REL-1 outcome=success", user="U0PL")
    bot.deliver()


def answered(bot) -> str:
    return bot.emulator.calls_to("response_url")[-1].args["text"]


def posts_to(bot, channel, thread=None) -> list[str]:
    return [c.args["text"] for c in bot.emulator.calls_to("chat.postMessage")
            if c.args.get("channel") == channel and (thread is None or bool(c.args.get("thread_ts")) == thread)]


def nonconformances(db) -> list[NonConformance]:
    with Session(db) as s:
        return list(s.exec(select(NonConformance)))


def bridge_channel(db) -> str:
    """The bridge channel the delivery loop made for REL-1 (conversations.create in the emulator)."""
    with Session(db) as s:
        em = s.exec(select(Emergency).where(Emergency.release_id == 1)).one()
    assert em.bridge_kind == "channel" and em.bridge_channel
    return em.bridge_channel


def test_a_deferred_step_missed_by_the_clock_is_one_non_conformance(bot, db, clock, db_url, monkeypatch, capsys):
    deployed(bot, db, clock)
    BRIDGE = bridge_channel(db)
    with Session(db) as s:
        steps = {t.kind: t for t in s.exec(select(Task).where(Task.release_id == 1))}
    assert steps["change_request"].due_at == FINISHED + timedelta(hours=4)

    clock.set(FINISHED + timedelta(hours=3))  # an hour before the 4-hour deadline: the owner, in the bridge
    bot.deliver()
    [soon] = [t for t in posts_to(bot, BRIDGE) if "formal change request" in t]
    assert "is due" in soon and "/release step REL-1 change_request" in soon
    [soon_call] = [c for c in bot.emulator.calls_to("chat.postMessage") if c.args["text"] == soon]
    assert "<@U0DEV>" in json.dumps(soon_call.args["blocks"])

    clock.set(FINISHED + timedelta(hours=4))  # the deadline: due now, and a non-conformance
    bot.deliver()
    assert any("is due now" in t and "formal change request" in t for t in posts_to(bot, BRIDGE))
    [nc] = nonconformances(db)
    assert nc.kind == "deferred_step_overdue" and "formal change request" in nc.detail and "still open" in nc.detail
    [announced] = [t for t in posts_to(bot, CHANNEL, thread=False) if "Non-conformance" in t]
    assert "<@U0RM>" in announced and "REL-1" in announced
    assert any("Non-conformance" in t for t in posts_to(bot, CHANNEL, thread=True))

    clock.set(FINISHED + timedelta(hours=5))  # overdue: escalated once to the release managers
    bot.deliver()
    clock.advance(hours=1)
    bot.deliver()
    assert len(nonconformances(db)) == 1
    assert len([t for t in posts_to(bot, CHANNEL, thread=False) if "Non-conformance" in t]) == 1
    [escalation] = [c for c in bot.emulator.calls_to("chat.postMessage") if "is overdue" in c.args["text"]
                    and "formal change request" in c.args["text"]]
    assert escalation.args["channel"] == BRIDGE
    shown = json.dumps(escalation.args["blocks"])
    assert "<@U0RM>" in shown and "<@U0DEV>" not in shown

    bot.command("step REL-1 change_request link=CR-123", user="U0DEV")  # late still records, with its lateness
    assert "is recorded" in answered(bot) and "2h00m late" in answered(bot)
    assert len(nonconformances(db)) == 1

    monkeypatch.setenv("DATABASE_URL", db_url)
    from bot import cli
    capsys.readouterr()
    assert cli.main(["audit", "REL-1", "--format", "json"]) == 0
    record = json.loads(capsys.readouterr().out)
    step = {s["step"]: s for s in record["deferred_steps"]}
    assert set(step) == {"change_request", "planning", "test_review", "docs", "retrospective"}
    assert step["change_request"]["details"] == {"link": "CR-123"} and step["change_request"]["late_by_minutes"] == 120
    assert step["test_review"]["owner"] == "role:qa_lead" and step["planning"]["done_at"] is None
    assert [n["kind"] for n in record["nonconformances"]] == ["deferred_step_overdue"]


def test_a_step_recorded_in_time_is_no_non_conformance_and_bad_input_writes_nothing(bot, db, clock):
    deployed(bot, db, clock)
    bot.command("step REL-1 change_request", user="U0DEV")
    assert "needs link=" in answered(bot)
    bot.command("step REL-1 change_request link=https://cr.example/CR-7", user="U0DEV")
    assert "is recorded" in answered(bot) and "late" not in answered(bot)
    clock.set(FINISHED + timedelta(hours=6))
    bot.deliver()
    assert not [n for n in nonconformances(db) if "change request" in n.detail]
    about = [c.args["text"] for c in bot.emulator.calls_to("chat.postMessage") if "formal change request" in c.args["text"]]
    assert about == ["The formal change request of REL-1 was recorded by <@U0DEV>."]  # no reminder, no escalation


def test_validation_is_refused_early_then_confirmed_with_the_thread_button(bot, db, clock):
    deployed(bot, db, clock)
    [success] = [c for c in bot.emulator.calls_to("chat.postMessage") if "deployed successfully" in c.args["text"]]
    clock.set(FINISHED + timedelta(minutes=20))
    bot.command('validate REL-1 note="incident resolved"', user="U0OPS")
    assert "at least 30" in answered(bot)
    clock.set(FINISHED + timedelta(minutes=30))
    bot.command('validate REL-1 note="incident resolved"', user="U0DEV")
    assert "operations" in answered(bot)
    [button] = [e for b in success.args["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert button["action_id"] == "emergency_validate"
    bot.click("emergency_validate", button["value"], user="U0OPS", channel=success.args["channel"],
              message_ts=success.response["ts"])
    view = bot.emulator.calls_to("views.open")[-1].args["view"]
    assert view["callback_id"] == "emergency_validate_form"
    bot.submit("emergency_validate_form", {"note": {"note": {"value": "INC-1 resolved; no new error patterns"}}},
               user="U0OPS", private_metadata=view["private_metadata"])
    with Session(db) as s:
        em = s.exec(select(Emergency).where(Emergency.release_id == 1)).one()
    assert em.validated_by == "U0OPS" and em.validated_at == FINISHED + timedelta(minutes=30)
    assert em.validation_note == "INC-1 resolved; no new error patterns"
    bot.deliver()
    assert any("validated by <@U0OPS>" in t for t in posts_to(bot, CHANNEL, thread=True))


@pytest.fixture
def api_bot(db, clock, policy, emulator):
    yield from serving(start_bot(db, clock, policy, emulator,
                                 env_overrides={"RELEASEBOT_API_TOKENS": f"deploy-pipeline={TOKEN};act_for=people"}))


def test_a_pipeline_report_owes_the_deferred_steps_too_and_a_third_deployment_is_counted(api_bot, db, clock):
    approved(api_bot, db)
    clock.set(IN_WINDOW)
    with httpx.Client(base_url=api_bot.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as api:
        url = "/api/v1/releases/REL-1/deployments"
        assert api.post(url, json={"status": "started", "actor": "U0OPS", "artifact": ARTIFACT, "commit": COMMIT,
                                   "checklist": {"monitoring": True, "rollback": True,
                                                 "oncall": True}}).status_code < 300
        clock.set(FINISHED)
        assert api.post(url, json={"status": "succeeded", "actor": "U0OPS"}).status_code < 300
    with Session(db) as s:
        kinds = {t.kind for t in s.exec(select(Task).where(Task.release_id == 1))}
    assert {"change_request", "planning", "test_review", "docs", "retrospective"} <= kinds
