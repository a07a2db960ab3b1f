"""Issue 9, items 7, 8 and 11 through Slack: help by topic, the bare /release menu, who holds which role,
refusals that name the holders, "Reschedule to <slot>" buttons, the deploy precheck, the global shortcut
and the welcome when the bot joins a channel."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, select

from commands.policy import Policy
from conftest import ROLES, start_bot, serving
from package_steps import ready
from test_commands import audit, release
from storage.models import AuditEvent, ReleaseFlag

UTC = timezone.utc
LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="{start}" tz=UTC duration=60m '
        'summary="Add refunds"')
IN_WINDOW = datetime(2026, 12, 15, 10, 5, tzinfo=UTC)


def responses(bot) -> list:
    return bot.emulator.calls_to("response_url")


def said(bot) -> str:
    return json.dumps(responses(bot)[-1].args)


def ephemerals_to(bot, user) -> list[str]:
    return bot.emulator.said_to(user)  # whichever way the answer reached them (response_url, ephemeral, DM)




def buttons(blocks: list[dict]) -> list[dict]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


# ---- help ----

def test_help_is_grouped_by_what_you_want_to_do(bot):
    r = bot.command("help", user="U0DEV").json()
    shown = json.dumps(r["blocks"])
    for title, topic in (("Request a release", "request"), ("Approve", "approve"), ("Deploy", "deploy"),
                         ("After deployment", "after"), ("Calendar", "calendar"), ("Admin", "admin")):
        assert f"*{title}* (`/release help {topic}`)" in shown
    assert "/release roles" in shown and r["response_type"] == "ephemeral"
    assert "2026-12-01" not in shown  # no sample date that will soon be in the past


def test_help_topic_examples_are_dated_from_today(bot, clock):
    first = json.dumps(bot.command("help request", user="U0DEV").json()["blocks"])
    assert "*Examples*" in first and 'start=\\"2026-12-03 14:00\\"' in first  # today (Nov 23) + 10 days
    clock.set(datetime(2027, 3, 1, 9, 0, tzinfo=UTC))
    later = json.dumps(bot.command("help request", user="U0DEV").json()["blocks"])
    assert 'start=\\"2027-03-11 14:00\\"' in later and "2026-12-03" not in later
    calendar = json.dumps(bot.command("help calendar", user="U0DEV").json()["blocks"])
    assert 'blackout add name=\\"Year-end freeze\\" start=\\"2027-03-21 00:00\\"' in calendar


def test_an_unknown_help_topic_names_the_topics(bot):
    text = bot.command("help deploying", user="U0DEV").json()["text"]
    assert "help topics are request, approve, deploy, after, calendar, admin" in text


# ---- the bare /release menu ----

def test_bare_release_shows_buttons_and_each_does_what_it_says(bot, db):
    bot.command(LINE.format(start="2026-12-01 10:00"), user="U0DEV")
    r = bot.command("", user="U0DEV").json()
    found = {b["action_id"]: b["text"]["text"] for b in buttons(r["blocks"])}
    assert found == {"menu_request": "Request a release", "menu_mine": "My releases", "menu_calendar": "Calendar",
                     "menu_help": "Help"}

    bot.click("menu_request", "menu_request", user="U0DEV")
    assert bot.emulator.calls_to("views.open")[-1].args["view"]["callback_id"] == "release_request"
    bot.click("menu_mine", "menu_mine", user="U0DEV")
    assert "Releases (mine)" in said(bot) and "REL-1" in said(bot)
    bot.click("menu_calendar", "menu_calendar", user="U0DEV")
    assert "Release calendar: next 14 days" in said(bot) and "REL-1" in said(bot)
    bot.click("menu_help", "menu_help", user="U0DEV")
    assert "/release help request" in said(bot)


# ---- roles ----

@pytest.fixture
def thin_bot(db, clock, emulator):
    """A policy file where nobody is executive or cab yet."""
    roles = {k: v for k, v in ROLES.items() if k not in ("executive", "cab")}
    yield from serving(start_bot(db, clock, Policy.from_mapping({"roles": roles}, source="/etc/releasebot/policy.toml"),
                                 emulator))


def test_roles_shows_holders_resolved_groups_empty_roles_and_the_policy_file(thin_bot):
    bot = thin_bot
    bot.command("roles", user="U0DEV")
    shown = said(bot)
    assert "*release_manager*: <@U0RM>" in shown
    assert "*qa_lead*: <@U0QA> and group <!subteam^S0QALEADS> (<@U0QAGROUP>)" in shown
    assert ":warning: *executive*: nobody holds it" in shown and ":warning: *cab*: nobody holds it" in shown
    assert "Empty roles: cab, executive." in shown
    assert "/etc/releasebot/policy.toml" in shown


def test_roles_says_when_a_group_could_not_be_listed(bot):
    bot.emulator.fail_next("usergroups.users.list", error="ratelimited", status=429, retry_after=1)
    bot.command("roles", user="U0DEV")
    shown = said(bot)
    assert "group <!subteam^S0QALEADS> (Slack could not list its members just now)" in shown
    assert "Every role has someone." in shown  # a group it could not list is not counted as empty


def test_a_refusal_for_a_missing_role_names_who_holds_it(bot, db):
    bot.command(LINE.format(start="2026-12-15 10:00"), user="U0DEV")
    post = bot.emulator.calls_to("chat.postMessage")[0]
    bot.click("vote_go", "1", user="U0OPS", channel=post.response["channel"], message_ts=post.response["ts"])
    [text] = ephemerals_to(bot, "U0OPS")
    assert "you hold none of those roles" in text
    assert ("This needs release_manager: held by <@U0RM>; qa_lead: held by <@U0QA> and group "
            "<!subteam^S0QALEADS>.") in text
    bot.command('override REL-1 kind=lead_time reason="contract"', user="U0DEV")
    assert "no open lead_time flag" in said(bot)  # a refusal about no role names nobody
    assert "held by" not in said(bot)


def test_a_refusal_for_an_empty_role_says_where_to_set_it(thin_bot, db):
    bot = thin_bot
    bot.command(LINE.format(start="2026-11-25 10:00"), user="U0DEV")  # flagged: lead time
    bot.command('blackout add name="Freeze" start="2026-11-25 00:00" end="2026-11-26 00:00" tz=UTC', user="U0RM")
    bot.command('override REL-1 kind=blackout reason="contract"', user="U0RM")
    assert "executive: nobody holds it yet (set roles.executive in /etc/releasebot/policy.toml)" in said(bot)


# ---- reschedule buttons ----

def test_a_flagged_request_offers_its_free_slots_and_a_click_reschedules_once(bot, db):
    bot.command(LINE.format(start="2026-11-25 14:00"), user="U0DEV")  # two days out; minor needs seven
    post = bot.emulator.calls_to("chat.postMessage")[0]
    offered = [b for b in buttons(post.args["blocks"]) if b["action_id"] == "reschedule_slot"]
    assert offered and all(b["text"]["text"].startswith("Reschedule to ") for b in offered)
    rid, slot = offered[0]["value"].split(":")
    target = datetime.fromtimestamp(int(slot), tz=UTC)
    assert target >= datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # past the lead time

    where = {"channel": post.response["channel"], "message_ts": post.response["ts"]}
    bot.click("reschedule_slot", offered[0]["value"], user="U0OPS", **where)  # neither requester nor manager
    assert "Only the requester or a release manager" in ephemerals_to(bot, "U0OPS")[-1]
    assert [e.after["code"] for e in audit(db) if e.action == "edit_refused"] == ["not_owner"]

    bot.click("reschedule_slot", offered[0]["value"], user="U0DEV", **where)
    bot.click("reschedule_slot", offered[0]["value"], user="U0DEV", **where)  # a double click
    r = release(db)
    assert r.start_at == target and r.end_at == target + timedelta(minutes=60) and r.tz == "UTC"
    assert [e.action for e in audit(db)].count("edited") == 1
    first, second = ephemerals_to(bot, "U0DEV")[-2:]
    assert first.startswith("REL-1 updated") and "already has those values; nothing changed" in second
    with Session(db) as s:
        open_flags = list(s.exec(select(ReleaseFlag).where(ReleaseFlag.release_id == 1,
                                                          ReleaseFlag.cleared_at.is_(None))))
    assert open_flags == []
    bot.deliver()
    shown = json.dumps(bot.emulator.calls_to("chat.update")[-1].args["blocks"])
    assert "reschedule_slot" not in shown  # clean now: no more slots offered


def test_a_slot_keeps_the_release_zone(bot, db):
    bot.command(LINE.format(start="2026-11-25 14:00").replace("tz=UTC", "tz=America/New_York"), user="U0DEV")
    post = bot.emulator.calls_to("chat.postMessage")[0]
    [first, *_] = [b for b in buttons(post.args["blocks"]) if b["action_id"] == "reschedule_slot"]
    assert first["text"]["text"].endswith(" EST")
    bot.click("reschedule_slot", first["value"], user="U0DEV", channel=post.response["channel"],
              message_ts=post.response["ts"])
    r = release(db)
    assert r.tz == "America/New_York" and int(r.start_at.timestamp()) == int(first["value"].split(":")[1])


def test_the_slots_offered_are_the_nearest_at_or_after_the_requested_start_in_working_hours(bot, db):
    # Asked for Thursday 10 December 14:00 in New York, in a freeze until Friday 12:00 UTC: the slots are
    # not a week early (when the lead time first allows), but from the freeze's end, in New York's 09-17
    bot.command('blackout add name="Freeze" start="2026-12-09 00:00" end="2026-12-11 12:00" tz=UTC', user="U0RM")
    bot.command(LINE.format(start="2026-12-10 14:00").replace("tz=UTC", "tz=America/New_York"), user="U0DEV")
    post = bot.emulator.calls_to("chat.postMessage")[-1]
    offered = [datetime.fromtimestamp(int(b["value"].split(":")[1]), tz=UTC)
               for b in buttons(post.args["blocks"]) if b["action_id"] == "reschedule_slot"]
    # Friday 12:00 UTC is 07:00 in New York: 09:00, 10:00, 11:00 EST
    assert offered == [datetime(2026, 12, 11, h, tzinfo=UTC) for h in (14, 15, 16)]


# ---- the deploy precheck ----

def approve(bot, db):
    bot.command(LINE.format(start="2026-12-15 10:00"), user="U0DEV")
    bot.command("go REL-1", user="U0RM")
    bot.command("go REL-1", user="U0QA")
    assert release(db).state == "approved"
    ready(bot)  # the test phases and documents no form can add (QMS 4.3, 4.4)


def click_deploy(bot, user):
    post = bot.emulator.calls_to("chat.postMessage")[0]
    bot.click("deploy_start", "1", user=user, channel=post.response["channel"], message_ts=post.response["ts"])


def precheck_refusals(db) -> list[AuditEvent]:
    return [e for e in audit(db) if e.action == "deploy_refused" and e.after.get("precheck")]


def test_deploy_refuses_before_the_checklist_when_not_approved(bot, db):
    bot.command(LINE.format(start="2026-12-15 10:00"), user="U0DEV")
    bot.command("deploy REL-1", user="U0PL")
    assert "REL-1 is pending, not approved" in said(bot)
    assert bot.emulator.calls_to("views.open") == []
    [refusal] = precheck_refusals(db)
    assert refusal.actor == "U0PL" and refusal.after["code"] == "gate"


def test_the_start_button_refuses_outside_the_window_and_for_the_wrong_role(bot, db, clock):
    approve(bot, db)
    click_deploy(bot, "U0PL")  # the window opens on Dec 15
    assert "outside the planned window" in ephemerals_to(bot, "U0PL")[-1]
    clock.set(IN_WINDOW)
    click_deploy(bot, "U0DEV")
    text = ephemerals_to(bot, "U0DEV")[-1]
    assert "holds no deploying role" in text
    assert "This needs operations: held by <@U0OPS>; platform_lead: held by <@U0PL>." in text
    assert bot.emulator.calls_to("views.open") == []
    assert len(precheck_refusals(db)) == 2
    click_deploy(bot, "U0PL")
    [opened] = bot.emulator.calls_to("views.open")
    assert opened.args["view"]["callback_id"] == "deploy_checklist"


def test_deploy_refuses_in_a_blackout_before_the_checklist(bot, db, clock):
    approve(bot, db)
    bot.command('blackout add name="Freeze" start="2026-12-15 00:00" end="2026-12-16 00:00" tz=UTC', user="U0RM")
    clock.set(IN_WINDOW)
    bot.command("deploy REL-1", user="U0PL")
    assert "falls in blackout 'Freeze'" in said(bot) and "needs an executive override" in said(bot)
    assert bot.emulator.calls_to("views.open") == []


# ---- the global shortcut ----

def test_the_request_shortcut_opens_the_form(bot):
    r = bot.slack.shortcut("request_release", user="U0DEV")
    bot.idle()
    assert r.status_code == 200
    [opened] = bot.emulator.calls_to("views.open")
    assert opened.args["view"]["callback_id"] == "release_request"


# ---- the welcome ----

def welcomes(bot, channel) -> list:
    return [c for c in bot.emulator.calls_to("chat.postMessage") if c.args["channel"] == channel]


def test_joining_a_channel_posts_one_welcome_naming_the_empty_roles(thin_bot):
    bot = thin_bot
    joined = {"type": "member_joined_channel", "user": "UBOT", "channel": "C0TEAM", "channel_type": "C",
              "team": "T0001"}
    assert bot.slack.event(joined, event_id="Ev0JOIN1").status_code == 200
    bot.idle()
    bot.slack.event(joined, event_id="Ev0JOIN1", retry_num=1)  # Slack's retry of the same event
    bot.slack.event(joined, event_id="Ev0JOIN1")  # and a replay of it
    bot.idle()
    [welcome] = welcomes(bot, "C0TEAM")
    shown = json.dumps(welcome.args["blocks"])
    assert "/release help" in shown and "releasebot" in shown
    assert "These roles have nobody yet: cab, executive" in shown
    assert "/etc/releasebot/policy.toml" in shown


def test_someone_else_joining_is_not_greeted(bot):
    bot.slack.event({"type": "member_joined_channel", "user": "U0DEV", "channel": "C0TEAM", "channel_type": "C"})
    bot.idle()
    assert welcomes(bot, "C0TEAM") == []


def test_a_welcome_slack_fails_to_take_is_sent_later_not_lost(bot, clock):
    # The welcome is an outbox row: Slack down when the bot joins delays it (and it is sent once).
    bot.emulator.fail_next("chat.postMessage", n=1, status=500)
    bot.slack.event({"type": "member_joined_channel", "user": "UBOT", "channel": "C0TEAM", "channel_type": "C"},
                    event_id="Ev0JOIN2")
    bot.idle()
    assert [c for c in welcomes(bot, "C0TEAM") if c.ok] == []
    clock.advance(minutes=5)  # past the retry's backoff
    bot.deliver()
    bot.deliver()
    assert len([c for c in welcomes(bot, "C0TEAM") if c.ok]) == 1
