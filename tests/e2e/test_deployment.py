"""From approval to closure through Slack: the gate, the outcome, sign-offs, and the reminders on the clock."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from sqlmodel import Session, select

from storage.models import AuditEvent, Deployment, Outbox, Release, SignOff, Task

from package_steps import form_values, ready

UTC = timezone.utc
# conftest's clock starts at 2026-11-23 09:00 UTC (a Monday); the window opens 22 days later, past even
# a major release's lead time, and the tests move the clock into it.
LINE = ('request service=payments version=2.3.1 type={type} flags={flags} start="2026-12-15 10:00" tz=UTC duration=60m '
        'summary="Add refunds"')
IN_WINDOW = datetime(2026, 12, 15, 10, 5, tzinfo=UTC)
ALL_CHECKED = {"checklist": {"checklist": {"selected_options": [{"value": "monitoring"}, {"value": "rollback"},
                                                                 {"value": "oncall"}]}}, **form_values()}


def release(db, rid=1) -> Release:
    with Session(db) as s:
        return s.get(Release, rid)


def deployment(db, rid=1) -> Deployment:
    with Session(db) as s:
        return s.exec(select(Deployment).where(Deployment.release_id == rid)).one()


def actions(db, rid=1) -> list[str]:
    with Session(db) as s:
        return [e.action for e in s.exec(select(AuditEvent).where(AuditEvent.release_id == rid).order_by(AuditEvent.id))]


def said_to(bot, user) -> str:
    return bot.emulator.said_to(user)[-1]


def thread_posts(bot) -> list:
    return [c for c in bot.emulator.calls_to("chat.postMessage") if c.args.get("thread_ts")]


def approved(bot, db, type_="minor"):
    bot.command(LINE.format(type=type_, flags={"minor": "feature", "major": "breaking"}[type_]), user="U0DEV")
    for user in {"minor": ("U0RM", "U0QA"), "major": ("U0CAB1", "U0CAB2", "U0RM", "U0SEC")}[type_]:
        bot.command("go REL-1", user=user)
    assert release(db).state == "approved"
    ready(bot, 1, type_)


def start(bot, clock, user="U0PL", values=ALL_CHECKED):
    # U0PL: a platform lead, who holds a deploying role (QMS 3.4) and votes on none of these releases
    # in the window first: outside it the button refuses before the checklist opens (the precheck)
    clock.set(IN_WINDOW)
    post = bot.emulator.calls_to("chat.postMessage")[0]
    bot.click("deploy_start", "1", user=user, channel=post.response["channel"], message_ts=post.response["ts"])
    view = bot.emulator.calls_to("views.open")[-1].args["view"]
    assert view["callback_id"] == "deploy_checklist"
    return bot.submit("deploy_checklist", values, user=user, private_metadata=view["private_metadata"])


def click_in_thread(bot, action_id, value, user):
    post = bot.emulator.calls_to("chat.postMessage")[0]
    bot.click(action_id, value, user=user, channel=post.response["channel"], message_ts=post.response["ts"])


def test_start_deployment_button_appears_only_once_approved(bot, db):
    bot.command(LINE.format(type="minor", flags="feature"), user="U0DEV")
    first = json.dumps(bot.emulator.calls_to("chat.postMessage")[0].args["blocks"])
    assert "Start deployment" not in first
    bot.command("go REL-1", user="U0RM")
    bot.command("go REL-1", user="U0QA")
    assert "Start deployment" in json.dumps(bot.emulator.calls_to("chat.update")[-1].args["blocks"])


def test_happy_path_to_closed_with_signoffs_after_stabilisation(bot, db, clock):
    approved(bot, db)
    start(bot, clock)
    dep = deployment(db)
    assert release(db).state == "deploying" and dep.deployer_id == "U0PL" and dep.started_at == IN_WINDOW
    assert dep.checklist == {"monitoring": True, "rollback": True, "oncall": True}
    started = thread_posts(bot)[-1]
    assert "deployment started" in started.args["text"]
    assert [b["text"]["text"] for b in started.args["blocks"][1]["elements"]] == ["Succeeded", "Rolled back", "Failed"]

    click_in_thread(bot, "deploy_outcome", "1:success", "U0PL")
    dep = deployment(db)
    assert release(db).state == "stabilising" and dep.outcome == "success"
    assert dep.stabilisation_ends_at == IN_WINDOW + timedelta(hours=2)  # minor: 2 h (QMS 4.4 step 5)

    bot.command("signoff REL-1", user="U0QA")
    assert "stabilisation window" in bot.emulator.calls_to("response_url")[-1].args["text"]

    clock.advance(hours=2)
    assert bot.deliver() >= 1
    ask = thread_posts(bot)[-1]
    assert "sign-off needed from: qa_lead, operations" in ask.args["text"]
    shown = json.dumps(ask.args["blocks"])
    assert "<@U0QA>" in shown and "<!subteam^S0QALEADS>" in shown and "<@U0OPS>" in shown

    click_in_thread(bot, "signoff", "1:qa_lead", "U0QA")
    assert release(db).state == "stabilising"
    click_in_thread(bot, "signoff", "1:operations", "U0OPS")
    assert release(db).state == "stabilising"  # the follow-up and the release manager's sign-off are still open
    assert not [c for c in thread_posts(bot) if "is closed" in c.args["text"]]

    clock.advance(hours=22)
    bot.command('followup REL-1 evidence="error rate flat"', user="U0DEV")
    [ask_rm] = [c for c in thread_posts(bot) if "release manager's sign-off closes" in c.args["text"]]
    shown = json.dumps(ask_rm.args["blocks"])
    assert "<@U0RM>" in shown and "Sign off as release_manager" in shown
    click_in_thread(bot, "signoff", "1:release_manager", "U0RM")
    assert release(db).state == "closed"
    with Session(db) as s:
        assert {(x.role, x.user_id) for x in s.exec(select(SignOff))} == {
            ("qa_lead", "U0QA"), ("operations", "U0OPS"), ("release_manager", "U0RM")}
    assert actions(db)[-2:] == ["signed_off", "closed"]
    assert "is closed" in thread_posts(bot)[-1].args["text"]
    bot.deliver()
    assert len([c for c in thread_posts(bot) if "release manager's sign-off closes" in c.args["text"]]) == 1


def signed_and_followed_up(bot, db, clock):
    approved(bot, db)
    start(bot, clock)
    bot.command("done REL-1 outcome=success", user="U0PL")
    clock.advance(hours=2)
    bot.command("signoff REL-1", user="U0QA")
    bot.command("signoff REL-1", user="U0OPS")


def test_release_manager_signs_off_with_the_command_and_only_last(bot, db, clock):
    signed_and_followed_up(bot, db, clock)
    bot.command("signoff REL-1 role=release_manager", user="U0RM")
    said = bot.emulator.calls_to("response_url")[-1].args["text"]
    assert "The release manager signs off REL-1 last; still open: the 24-hour follow-up." in said
    assert release(db).state == "stabilising"
    bot.command('followup REL-1 evidence="p95 unchanged"', user="U0DEV")
    bot.command("signoff REL-1 role=release_manager", user="U0RM")
    assert "as release_manager is recorded. REL-1 is closed." in bot.emulator.calls_to("response_url")[-1].args["text"]
    assert release(db).state == "closed"


def test_a_failed_group_lookup_is_could_not_check_not_a_refusal(bot, db, clock):
    # Slack cannot list S0QALEADS from the start, so the bot has no earlier (stale) answer to fall back on.
    bot.emulator.fail_next("usergroups.users.list", 100, status=503)
    approved(bot, db)
    start(bot, clock)
    bot.command("done REL-1 outcome=success", user="U0PL")
    clock.advance(hours=2)
    click_in_thread(bot, "signoff", "1:qa_lead", "U0QAGROUP")
    assert "could not confirm whether you hold qa_lead" in said_to(bot, "U0QAGROUP")
    with Session(db) as s:
        assert list(s.exec(select(SignOff))) == []
    assert "signoff_refused" not in actions(db)
    bot.emulator.heal()
    click_in_thread(bot, "signoff", "1:qa_lead", "U0QAGROUP")
    assert "as qa_lead is recorded" in said_to(bot, "U0QAGROUP")


def test_gate_names_every_failed_condition(bot, db, clock):
    approved(bot, db)
    post = bot.emulator.calls_to("chat.postMessage")[0]
    clock.set(IN_WINDOW)
    bot.click("deploy_start", "1", user="U0PL", channel=post.response["channel"], message_ts=post.response["ts"])
    view = bot.emulator.calls_to("views.open")[-1].args["view"]
    clock.set(datetime(2026, 12, 15, 12, 0, tzinfo=UTC))  # after the window closed
    # the form as a release manager who voted would submit it (the button refuses to open it for them)
    bot.submit("deploy_checklist", {"checklist": {"checklist": {"selected_options": [{"value": "monitoring"}]}}},
               user="U0RM", private_metadata=view["private_metadata"])
    text = said_to(bot, "U0RM")
    assert "outside the planned window" in text and "/release reschedule REL-1" in text
    assert "voted Go as release_manager" in text and "QMS 3.4" in text
    assert "U0RM holds no deploying role (operations or platform_lead)" in text
    assert "not confirmed: the rollback plan is ready and tested" in text
    assert "not confirmed: on-call is confirmed" in text
    assert "not confirmed: monitoring" not in text
    # the form's artefact, commit and justification were left empty (QMS 4.4)
    assert "an artefact is required to start a production deployment" in text
    assert "the commit the artefact was built from is required" in text
    assert "needs a written justification" in text
    assert release(db).state == "approved"
    with Session(db) as s:
        assert list(s.exec(select(Deployment))) == []
        [refusal] = s.exec(select(AuditEvent).where(AuditEvent.action == "deploy_refused")).all()
    assert len(refusal.after["reasons"]) == 8


def test_gate_refuses_a_release_that_is_not_approved(bot, db, clock):
    bot.command(LINE.format(type="minor", flags="feature"), user="U0DEV")
    clock.set(IN_WINDOW)
    bot.command("deploy REL-1", user="U0PL")  # refused before the checklist opens (the precheck)
    assert "REL-1 is pending, not approved" in bot.emulator.calls_to("response_url")[-1].args["text"]
    assert bot.emulator.calls_to("views.open") == []
    # and the gate itself still refuses a checklist submitted anyway
    bot.submit("deploy_checklist", ALL_CHECKED, user="U0PL",
               private_metadata=json.dumps({"release": 1, "channel": "C0RELEASES"}))
    assert "REL-1 is pending, not approved" in said_to(bot, "U0PL")
    assert release(db).state == "pending"


def test_reschedule_resets_votes_and_moves_the_window(bot, db, clock):
    approved(bot, db)
    bot.command('reschedule REL-1 start="2026-12-16 10:00"', user="U0DEV")
    assert release(db).state == "approved"  # after approval a change needs a written reason
    bot.command('reschedule REL-1 start="2026-12-16 10:00" reason="ops window moved"', user="U0DEV")
    r = release(db)
    assert (r.state, r.round) == ("pending", 2)
    assert r.start_at == datetime(2026, 12, 16, 10, 0, tzinfo=UTC)


def test_followup_reminder_fires_after_24_hours_and_escalates_once_if_open(bot, db, clock):
    approved(bot, db)
    start(bot, clock)
    bot.command("done REL-1 outcome=success note=\"smoke tests green\"", user="U0PL")
    finished = deployment(db).finished_at
    before = len(thread_posts(bot))
    clock.set(finished + timedelta(hours=23, minutes=59))
    bot.deliver()
    assert not any("24 hours since" in c.args["text"] for c in thread_posts(bot)[before:])
    clock.set(finished + timedelta(hours=24))
    bot.deliver()
    [followup] = [c for c in thread_posts(bot) if "24 hours since" in c.args["text"]]
    assert "<@U0PL>" in json.dumps(followup.args["blocks"]) and "<@U0RM>" in json.dumps(followup.args["blocks"])
    clock.set(finished + timedelta(hours=48))
    bot.deliver()
    bot.deliver()
    escalations = [c for c in thread_posts(bot) if "Escalated" in c.args["text"]]
    assert len(escalations) == 1 and "<@U0RM>" in json.dumps(escalations[0].args["blocks"])
    clock.advance(days=3)
    bot.deliver()
    assert len([c for c in thread_posts(bot) if "Escalated" in c.args["text"]]) == 1


def test_recorded_followup_stops_the_escalation(bot, db, clock):
    approved(bot, db)
    start(bot, clock)
    click_in_thread(bot, "deploy_outcome", "1:success", "U0PL")
    finished = deployment(db).finished_at
    clock.set(finished + timedelta(hours=24))
    bot.deliver()
    click_in_thread(bot, "record_followup", "1", "U0PL")
    view = bot.emulator.calls_to("views.open")[-1].args["view"]
    assert view["callback_id"] == "followup_form"
    bot.submit("followup_form", {"evidence": {"evidence": {"value": "error rate flat, p99 unchanged"}},
                                 "actions": {"actions": {"value": "tune alert"}}},
               user="U0PL", private_metadata=view["private_metadata"])
    with Session(db) as s:
        task = s.exec(select(Task).where(Task.kind == "followup")).one()
    assert task.done_by == "U0PL" and task.details["evidence"] == "error rate flat, p99 unchanged"
    clock.set(finished + timedelta(hours=48))
    bot.deliver()
    assert not [c for c in thread_posts(bot) if "Escalated" in c.args["text"]]
    with Session(db) as s:
        esc = s.exec(select(Outbox).where(Outbox.key.like("%followup_escalation%"))).one()
    assert esc.result.startswith("skipped")


def test_rollback_records_decision_and_restoration_and_owes_a_retrospective(bot, db, clock):
    approved(bot, db)
    start(bot, clock)
    bot.command('rollback REL-1 reason="error rate +12% for 5 min"', user="U0PL")
    decided = clock.now()
    assert release(db).state == "rolling_back"
    clock.advance(minutes=9)
    bot.command("done REL-1 outcome=rolled_back link=https://ci/run/7", user="U0PL")
    dep = deployment(db)
    assert (dep.rollback_decided_at, dep.restored_at, dep.outcome) == (decided, clock.now(), "rolled_back")
    assert release(db).state == "rolled_back"
    with Session(db) as s:
        retro = s.exec(select(Task).where(Task.kind == "retrospective")).one()
    # 5 business days from Tuesday 10:14 is the next Tuesday 10:14
    assert retro.due_at == datetime(2026, 12, 22, 10, 14, tzinfo=UTC)
    clock.set(retro.due_at - timedelta(hours=24))
    bot.deliver()
    assert [c for c in thread_posts(bot) if "retrospective of REL-1 is due" in c.args["text"]]
    clock.set(retro.due_at)
    bot.deliver()
    due_now = [c for c in thread_posts(bot) if "retrospective of REL-1 is due now" in c.args["text"]]
    assert len(due_now) == 1 and "Record retrospective" in json.dumps(due_now[0].args["blocks"])
    # the start by hand from Slack is NC-1 (QMS 4.4 step 4), due the same day: its register reminder is its own
    assert [c for c in thread_posts(bot) if "corrective action of NC-1" in c.args["text"]
            and "is due now" in c.args["text"]]


def test_approval_nudge_after_sla_then_once_per_period_until_approved(bot, db, clock):
    bot.command('request service=payments version=2.3.1 type=minor flags=feature start="2026-11-30 10:00" tz=UTC '
                'duration=60m '
                'summary="Add refunds"', user="U0DEV")
    bot.command("go REL-1", user="U0RM")
    clock.advance(hours=3, minutes=59)
    bot.deliver()
    assert not [c for c in thread_posts(bot) if "waiting for approval" in c.args["text"]]
    clock.advance(minutes=1)
    bot.deliver()
    [nudge] = [c for c in thread_posts(bot) if "waiting for approval" in c.args["text"]]
    assert "qa_lead ×1" in nudge.args["text"] and "release_manager" not in nudge.args["text"].split("needed:")[1]
    assert "<@U0QA>" in json.dumps(nudge.args["blocks"])
    bot.deliver()
    assert len([c for c in thread_posts(bot) if "waiting for approval" in c.args["text"]]) == 1
    clock.advance(hours=4)
    bot.deliver()
    assert len([c for c in thread_posts(bot) if "waiting for approval" in c.args["text"]]) == 2
    bot.command("go REL-1", user="U0QA")
    clock.advance(hours=4)
    bot.deliver()
    assert len([c for c in thread_posts(bot) if "waiting for approval" in c.args["text"]]) == 2


def test_emergency_nudge_after_30_minutes(bot, db, clock):
    bot.command('request service=payments version=2.3.2 type=emergency flags=incident incident=INC-1 '
                'start="2026-11-23 09:30" tz=UTC duration=30m '
                'summary="Fix outage"', user="U0DEV")
    clock.advance(minutes=30)
    bot.deliver()
    assert [c for c in thread_posts(bot) if "waiting for approval" in c.args["text"]]


def test_reminder_429_then_500_then_ok_gives_exactly_one_post(bot, db, clock):
    bot.command(LINE.format(type="minor", flags="feature"), user="U0DEV")
    clock.advance(hours=4)
    bot.emulator.fail_next("chat.postMessage", status=429, retry_after=30)
    assert bot.deliver() == 0
    clock.advance(seconds=30)
    bot.emulator.fail_next("chat.postMessage", status=500)
    assert bot.deliver() == 0
    clock.advance(minutes=5)
    assert bot.deliver() == 1
    ok = [c for c in thread_posts(bot) if c.ok and "waiting for approval" in c.args["text"]]
    assert len(ok) == 1


def stuck(bot, *what) -> list:
    markers = {"remind": "is still", "escalate": "Escalated to the release managers"}
    return [c for c in thread_posts(bot) if c.ok and "past its window" in c.args["text"]
            and all(markers[w] in c.args["text"] for w in what)]


def test_a_deployment_left_running_reminds_the_deployer_then_escalates_once(bot, db, clock):
    approved(bot, db)
    start(bot, clock)
    window_end = release(db).end_at
    clock.set(window_end + timedelta(minutes=29))
    bot.deliver()
    assert stuck(bot) == []
    clock.set(window_end + timedelta(minutes=30))
    bot.emulator.fail_next("chat.postMessage", status=500)  # Slack is down when it comes due
    assert bot.deliver() == 0
    clock.advance(minutes=5)
    bot.deliver()
    [first] = stuck(bot)
    assert "REL-1 is still deploying" in first.args["text"]
    blocks = json.dumps(first.args["blocks"])
    assert "<@U0PL>" in blocks and "<@U0RM>" not in blocks and "Succeeded" in blocks
    clock.set(window_end + timedelta(minutes=60))
    bot.deliver()
    bot.deliver()
    escalations = stuck(bot, "escalate")
    assert len(escalations) == 1 and "<@U0RM>" in json.dumps(escalations[0].args["blocks"])
    clock.advance(days=1)
    bot.deliver()
    assert len(stuck(bot)) == 2


def test_a_finished_deployment_is_never_chased(bot, db, clock):
    approved(bot, db)
    start(bot, clock)
    bot.command("done REL-1 outcome=success", user="U0PL")
    clock.set(release(db).end_at + timedelta(hours=2))
    bot.deliver()
    assert stuck(bot) == []
    with Session(db) as s:
        rows = s.exec(select(Outbox).where(Outbox.key.like("%stuck%"))).all()
    assert len(rows) == 2 and all(r.result == "skipped: deployment finished (stabilising)" for r in rows)
