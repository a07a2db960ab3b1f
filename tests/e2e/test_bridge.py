"""The emergency bridge over signed HTTP: channel, invites, pinned card, fallback thread, pins, close."""
from __future__ import annotations

import json

from sqlmodel import Session, select

from storage.models import AuditEvent, DecisionLogEntry, Emergency, Outbox

from package_steps import form_values, ready

# The on-call engineer's own line (issue 10 item 1): its window opens now, so the clock's time is in it.
EMERGENCY = 'emergency service=payments incident=INC-4211 summary="Stop double charges"'
ASSESSED = 'assess REL-1 blast_radius="payments only" rollback="flag off" scope=confirmed ci=passed'
ALL_CHECKED = {"checklist": {"checklist": {"selected_options": [{"value": "monitoring"}, {"value": "rollback"},
                                                                 {"value": "oncall"}]}}, **form_values()}


def reply(bot) -> str:
    return bot.emulator.calls_to("response_url")[-1].args.get("text", "")


def emergency(db, rid=1) -> Emergency:
    with Session(db) as s:
        return s.exec(select(Emergency).where(Emergency.release_id == rid)).one()


def opened(bot, user="U0DEV"):
    bot.command(EMERGENCY, user=user)
    bot.deliver()
    return emergency(bot.svc.db)


def test_an_emergency_gets_a_channel_with_the_right_people_and_a_pinned_card(bot, db):
    e = opened(bot)
    [create] = bot.emulator.calls_to("conversations.create")
    assert create.args["name"] == "rel-1-payments-emergency" and create.ok
    assert e.bridge_kind == "channel" and e.bridge_channel == create.response["channel"]["id"]
    members = bot.emulator.channels[e.bridge_channel]["members"]
    assert {"U0DEV", "U0OPS", "U0EL", "U0RM"} <= members and "U0SEC" not in members and "U0QA" not in members
    card = bot.emulator.messages[(e.bridge_channel, e.card_ts)]
    text = json.dumps(card["blocks"])
    assert "INC-4211" in text and "payments" in text and "Stop double charges" in text and "<!date^" in text
    assert (e.bridge_channel, e.card_ts) in bot.emulator.pins
    [link] = [c for c in bot.emulator.calls_to("chat.postMessage") if f"<#{e.bridge_channel}>" in c.args["text"]]
    assert link.args["channel"] == "C0RELEASES"


def outbox_row(db, key) -> Outbox:
    with Session(db) as s:
        return s.exec(select(Outbox).where(Outbox.key == key)).one()


def test_a_channel_failure_falls_back_to_a_thread_that_says_why(bot, db):
    bot.emulator.fail_next("conversations.create", error="restricted_action")
    e = opened(bot)
    assert e.bridge_kind == "thread" and e.bridge_channel == "C0RELEASES" and "restricted_action" in \
        e.bridge_fallback_reason
    root = bot.emulator.messages[("C0RELEASES", e.bridge_thread_ts)]
    assert "this thread" in root["text"] and "restricted_action" in root["text"] and "<@U0OPS>" in root["text"]
    card = bot.emulator.messages[("C0RELEASES", e.card_ts)]
    assert card["thread_ts"] == e.bridge_thread_ts and ("C0RELEASES", e.card_ts) in bot.emulator.pins
    assert "could not be made" in json.dumps(card["blocks"])
    assert bot.emulator.calls_to("conversations.invite") == [] and bot.emulator.channels == {}
    assert outbox_row(db, "bridge-open:1").sent_at is not None


def test_a_name_someone_else_took_falls_back_to_a_thread(bot, db):
    bot.emulator.make_channel("rel-1-payments-emergency", creator="U0DEV")
    e = opened(bot)
    assert e.bridge_kind == "thread" and "name_taken" in e.bridge_fallback_reason
    assert len(bot.emulator.channels) == 1


def test_policy_can_ask_for_a_thread(db, clock, policy, emulator):
    from dataclasses import replace

    from commands.policy import EmergencyPolicy
    from conftest import serving, start_bot
    for running in serving(start_bot(db, clock, replace(policy, emergency=EmergencyPolicy(bridge="thread")),
                                     emulator)):
        e = opened(running)
        assert e.bridge_kind == "thread" and e.bridge_fallback_reason is None
        assert emulator.calls_to("conversations.create") == [] and e.card_ts


def test_a_retry_after_the_invite_failed_finds_the_channel_it_made(bot, db, clock):
    bot.emulator.fail_next("conversations.invite", status=500)
    bot.command(EMERGENCY, user="U0DEV")
    e = emergency(db)
    assert e.bridge_channel and e.card_ts is None  # made and stored before the invite failed
    assert outbox_row(db, "bridge-open:1").sent_at is None
    clock.advance(minutes=1)
    bot.deliver()
    e = emergency(db)
    assert len(bot.emulator.calls_to("conversations.create")) == 1 and len(bot.emulator.channels) == 1
    assert {"U0OPS", "U0EL", "U0RM", "U0DEV"} <= bot.emulator.channels[e.bridge_channel]["members"]
    assert e.card_ts and outbox_row(db, "bridge-open:1").sent_at is not None


def test_a_retry_after_dying_before_the_id_was_stored_uses_the_channel_and_never_makes_a_second(bot, db):
    # The earlier try made the channel and died before writing its id: Slack says name_taken to the next.
    made = bot.emulator.make_channel("rel-1-payments-emergency", creator="UBOT")
    e = opened(bot)
    assert e.bridge_kind == "channel" and e.bridge_channel == made and len(bot.emulator.channels) == 1
    assert bot.emulator.messages[(made, e.card_ts)] and (made, e.card_ts) in bot.emulator.pins


def test_a_retry_after_the_card_was_posted_only_pins_it(bot, db, clock):
    bot.emulator.fail_next("pins.add", status=503)
    bot.command(EMERGENCY, user="U0DEV")
    first = emergency(db)
    assert first.card_ts and not bot.emulator.pins
    clock.advance(minutes=1)
    bot.deliver()
    cards = [c for c in bot.emulator.calls_to("chat.postMessage") if c.args.get("channel") == first.bridge_channel]
    assert len(cards) == 1 and (first.bridge_channel, first.card_ts) in bot.emulator.pins


def test_the_card_is_updated_in_place_when_a_decision_is_recorded(bot, db):
    e = opened(bot)
    # the assessment first: an emergency's Go is refused until it is complete (QMS 4.6)
    bot.command('assess REL-1 blast_radius="payments only" rollback="flag off" scope=confirmed ci=passed',
                user="U0OPS")
    bot.command("go REL-1", user="U0RM")
    bot.deliver()
    updates = [c for c in bot.emulator.calls_to("chat.update") if c.args["ts"] == e.card_ts]
    assert updates and updates[-1].args["channel"] == e.bridge_channel
    assert "<@U0RM>" in json.dumps(updates[-1].args["blocks"])


def pin(bot, channel, ts, user="U0RM", **kw):
    bot.slack.reaction_added(channel, ts, user=user, **kw)
    bot.idle()


def entries(db) -> list[DecisionLogEntry]:
    with Session(db) as s:
        return list(s.exec(select(DecisionLogEntry).order_by(DecisionLogEntry.id)))


def test_a_pushpin_logs_the_message_with_its_own_author_text_and_time_once_even_when_retried(bot, db, clock):
    e = opened(bot)
    ts = bot.emulator.post_as(e.bridge_channel, "U0EL", "Rolling back the flag &lt;!channel&gt; first")
    clock.advance(minutes=10)  # pinned later than it was said
    pin(bot, e.bridge_channel, ts, event_id="EvPIN1")
    pin(bot, e.bridge_channel, ts, event_id="EvPIN1", retry_num=1)  # Slack's retry of the same event
    pin(bot, e.bridge_channel, ts, user="U0OPS")  # someone else pins it too
    [entry] = entries(db)
    assert entry.author == "U0EL" and entry.recorded_by == "U0RM" and entry.source == "pin"
    assert entry.text == "Rolling back the flag <!channel> first"
    assert int(entry.at.timestamp()) == int(float(ts)) and entry.at < clock.now()
    bot.command("show REL-1", user="U0DEV")
    shown = json.dumps(bot.emulator.calls_to("response_url")[-1].args["blocks"])
    assert "&lt;!channel&gt;" in shown and "<!channel>" not in shown and "Decision log" in shown


def test_pins_elsewhere_and_on_unreadable_messages_are_ignored_quietly(bot, db):
    e = opened(bot)
    other = bot.emulator.post_as("C0OTHER", "U0EL", "not a bridge")
    pin(bot, "C0OTHER", other)
    pin(bot, e.bridge_channel, "1700000999.000100")  # no such message
    ts = bot.emulator.post_as(e.bridge_channel, "U0EL", "hidden")
    bot.emulator.unreadable.add(e.bridge_channel)
    pin(bot, e.bridge_channel, ts)
    pin(bot, e.bridge_channel, ts, reaction="eyes")
    assert entries(db) == []
    assert not [c for c in bot.emulator.calls_to("chat.postEphemeral")]


def test_in_a_thread_bridge_only_messages_of_the_thread_are_logged(bot, db):
    bot.emulator.fail_next("conversations.create", error="missing_scope")
    e = opened(bot)
    inside = bot.emulator.post_as("C0RELEASES", "U0OPS", "error rate back to normal", thread_ts=e.bridge_thread_ts)
    outside = bot.emulator.post_as("C0RELEASES", "U0OPS", "lunch?")
    pin(bot, "C0RELEASES", outside)
    pin(bot, "C0RELEASES", inside)
    [entry] = entries(db)
    assert entry.text == "error rate back to normal" and entry.author == "U0OPS"


def test_log_entries_and_corrections_from_the_command_line(bot, db):
    opened(bot)
    bot.command("log REL-1 decided to roll forward, don't page <!here>", user="U0EL")
    assert "Logged an entry" in reply(bot)
    [entry] = entries(db)
    bot.command(f"log REL-1 correct={entry.id} decided to roll back", user="U0EL")
    assert f"correction of entry {entry.id}" in reply(bot)
    assert [(x.text, x.corrects_id) for x in entries(db)] == [
        ("decided to roll forward, don't page <!here>", None), ("decided to roll back", entry.id)]
    bot.command("log REL-1 correct=99 nonsense", user="U0EL")
    assert "no log entry 99" in reply(bot)
    bot.command("log REL-7 hello", user="U0EL")
    assert "REL-7 does not exist" in reply(bot)
    bot.command('request service=web version=2 type=minor flags=feature start="2026-12-01 14:00" tz=UTC '
                'duration=60m summary=x', user="U0DEV")
    bot.command("log REL-2 hello", user="U0EL")
    assert "not an emergency" in reply(bot)
    assert len(entries(db)) == 2


def test_the_decision_log_button_shows_the_log(bot, db):
    e = opened(bot)
    bot.command("log REL-1 first entry", user="U0EL")
    bot.click("bridge_log", "1", user="U0OPS", channel=e.bridge_channel, message_ts=e.card_ts)
    shown = json.dumps(bot.emulator.calls_to("response_url")[-1].args["blocks"])
    assert "first entry" in shown and "Emergency opened for incident INC-4211" in shown and "<!date^" in shown


def deployed(bot, outcome="success"):
    """Opened, assessed, co-approved (release manager + engineering lead) and deployed through the checklist."""
    e = opened(bot)
    bot.command(ASSESSED, user="U0OPS")
    bot.command("go REL-1", user="U0RM")
    bot.command("go REL-1", user="U0EL")
    ready(bot, 1, "emergency")  # QMS 4.6: the CI checks and targeted regression
    bot.command("deploy REL-1", user="U0PL")
    view = bot.emulator.calls_to("views.open")[-1].args["view"]
    bot.submit("deploy_checklist", ALL_CHECKED, user="U0PL", private_metadata=view["private_metadata"])
    bot.command(f"done REL-1 outcome={outcome}", user="U0PL")
    bot.deliver()
    return e


def test_the_bridge_closes_only_once_validated_and_then_sums_up_and_archives(bot, db, clock):
    e = deployed(bot)
    bot.command('bridge close REL-1 summary="fixed"', user="U0RM")
    assert "until validation is recorded" in reply(bot)
    assert emergency(db).closed_at is None
    clock.advance(minutes=45)  # past [emergency] min_monitoring (30 min) of the successful deployment
    bot.command('validate REL-1 note="incident resolved, no new error patterns"', user="U0OPS")
    assert emergency(db).validated_by == "U0OPS"
    bot.command('bridge close REL-1 summary="double charges stopped"', user="U0RM")
    assert "Closed the bridge" in reply(bot)
    bot.deliver()
    assert bot.emulator.channels[e.bridge_channel]["is_archived"]
    [summary] = [c for c in bot.emulator.calls_to("chat.postMessage") if "bridge closed" in c.args["text"]]
    text = json.dumps(summary.args["blocks"])
    assert summary.args["channel"] == e.bridge_channel and "double charges stopped" in text
    assert "validated" in text and "+45m" in text and "assessed" in text and "assessed: not recorded" not in text
    bot.command('bridge close REL-1 summary="again"', user="U0RM")
    assert "already closed" in reply(bot)


def test_a_rolled_back_emergency_closes_its_bridge_without_validation(bot, db):
    e = opened(bot)
    bot.command('bridge close REL-1 summary="x"', user="U0RM")
    assert "rolled back, failed or was cancelled" in reply(bot) and emergency(db).closed_at is None
    bot.command('cancel REL-1 reason="duplicate of another fix"', user="U0DEV")
    bot.command('bridge close REL-1 summary="cancelled, fixed elsewhere"', user="U0RM")
    assert "Closed the bridge" in reply(bot) and emergency(db).closed_at is not None
    bot.deliver()
    assert bot.emulator.channels[e.bridge_channel]["is_archived"]


def test_a_failed_emergency_deployment_closes_its_bridge(bot, db):
    deployed(bot, outcome="failed")
    bot.command('bridge close REL-1 summary="failed; next fix on REL-2"', user="U0EL")
    assert "Closed the bridge" in reply(bot) and emergency(db).validated_at is None


def test_after_the_bridge_closes_a_deferred_step_is_reminded_in_the_release_thread(bot, db, clock):
    e = deployed(bot, outcome="rolled_back")
    bot.command('bridge close REL-1 summary="rolled back"', user="U0RM")
    bot.deliver()
    clock.advance(hours=3, minutes=30)  # within the last quarter of the 4-hour change-request deadline
    bot.deliver()
    [soon] = [c for c in bot.emulator.calls_to("chat.postMessage") if "formal change request" in c.args["text"]
              and "is due" in c.args["text"]]
    assert soon.args["channel"] == "C0RELEASES" and soon.args.get("thread_ts")
    assert not [c for c in bot.emulator.calls_to("chat.postMessage") if c.args["channel"] == e.bridge_channel
                and "formal change request" in c.args["text"]]


def test_the_cards_assessment_buttons_record_the_assessment(bot, db):
    e = opened(bot)
    bot.click("bridge_assess_scope", "1", user="U0EL", channel=e.bridge_channel, message_ts=e.card_ts)
    bot.click("bridge_assess_ci", "1", user="U0OPS", channel=e.bridge_channel, message_ts=e.card_ts)
    row = emergency(db)
    assert (row.scope_confirmed_by, row.ci_passed_by, row.blast_radius) == ("U0EL", "U0OPS", None)
    bot.click("bridge_assess_form", "1", user="U0EL", channel=e.bridge_channel, message_ts=e.card_ts)
    [form] = bot.emulator.calls_to("views.open")
    assert form.args["view"]["callback_id"] == "bridge_assess"
    bot.submit("bridge_assess", {"blast_radius": {"blast_radius": {"type": "plain_text_input", "value": "EU only"}},
                                 "rollback": {"rollback": {"type": "plain_text_input", "value": None}}},
               user="U0EL", private_metadata=form.args["view"]["private_metadata"])
    row = emergency(db)
    assert (row.blast_radius, row.blast_radius_by, row.rollback_option, row.assessed_at) == (
        "EU only", "U0EL", None, None)
    with Session(db) as s:
        recorded = [a.after for a in s.exec(select(AuditEvent).where(AuditEvent.action == "assessment_recorded")
                                                 .order_by(AuditEvent.id))]
    assert [a["item"] for a in recorded] == ["scope", "ci", "blast_radius"]


def test_slack_down_while_making_the_channel_is_retried_not_a_fallback(bot, db, clock):
    bot.emulator.fail_next("conversations.create", status=200, error="service_unavailable")
    bot.command(EMERGENCY, user="U0DEV")
    assert emergency(db).bridge_kind is None and outbox_row(db, "bridge-open:1").sent_at is None
    clock.advance(minutes=1)
    bot.deliver()
    e = emergency(db)
    assert e.bridge_kind == "channel" and e.bridge_fallback_reason is None and len(bot.emulator.channels) == 1
