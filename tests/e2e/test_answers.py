"""Every listener answers the person, from a DM and from a channel the bot was never invited to.

chat.postEphemeral cannot reach anyone there (the emulator answers channel_not_found for a DM between people
and not_in_channel for a channel the bot is not in, as Slack does), so an answer that relied on it vanished.
Each case below is one listener's answer path; each runs in both places, and with and without a usable
response_url: with one, the answer goes there; without (a form opened by no command, or a response_url Slack
no longer takes), it comes as a DM from the bot.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from bot.messages.help import MENU_MINE
from conftest import CHANNEL
from package_steps import form_values, ready
from test_request_modal import values as request_values

LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-01 14:00" '
        'tz=Europe/London duration=60m summary="Add refunds" rollback="redeploy 2.3.0"')
PLACES = {"dm": "D0PEOPLE", "outside": "C0OUTSIDE"}


def told(emu, user: str) -> tuple[str, str]:
    """(how, text) of the last thing the bot told `user`: "response_url", "ephemeral" or "dm"."""
    last = None
    for c in emu.calls:
        if not c.ok:
            continue
        if c.method == "response_url" and (c.response_url_name or "").endswith(f"-{user}"):
            last = ("response_url", c.args.get("text") or "")
        elif c.method == "chat.postEphemeral" and c.args.get("user") == user:
            last = ("ephemeral", c.args["text"])
        elif c.method == "chat.postMessage" and c.args.get("channel") == user:
            last = ("dm", c.args["text"])
    assert last is not None, f"{user} was told nothing: {[(c.method, c.response) for c in emu.calls]}"
    return last


def opened_view(emu) -> dict:
    return emu.calls_to("views.open")[-1].args["view"]


# Each case: what the person does in `channel` -> (who they are, what the answer must say).

def slash_command(bot, channel):
    bot.command("go REL-1", user="U0QA", channel=channel)
    return "U0QA", "Go on REL-1"


def go_button(bot, channel):
    bot.click("vote_go", "1", user="U0QA", channel=channel)
    return "U0QA", "Go on REL-1"


def nogo_form(bot, channel):
    bot.click("vote_nogo", "1", user="U0QA", channel=channel)
    bot.submit("nogo_reason", {"reason": {"reason": {"value": "error budget spent"}}}, user="U0QA",
               private_metadata=opened_view(bot.emulator)["private_metadata"])
    return "U0QA", "No-go"


def request_form(bot, channel):
    bot.command("request", user="U0DEV", channel=channel)
    bot.submit("release_request", request_values(), user="U0DEV",
               private_metadata=opened_view(bot.emulator)["private_metadata"])
    return "U0DEV", "REL-2 requested"


def checklist_form(bot, channel):
    # approved and inside its window, or the precheck answers before the checklist opens
    bot.command("go REL-1", user="U0RM", channel=CHANNEL)
    bot.command("go REL-1", user="U0QA", channel=CHANNEL)
    ready(bot)
    bot.svc.clock.set(datetime(2026, 12, 1, 14, 5, tzinfo=timezone.utc))
    bot.command("deploy REL-1", user="U0PL", channel=channel)
    bot.submit("deploy_checklist", {"checklist": {"checklist": {"selected_options": []}}}, user="U0PL",
               private_metadata=opened_view(bot.emulator)["private_metadata"])
    return "U0PL", "REL-1"


def followup_form(bot, channel):
    bot.submit("followup_form", {"evidence": {"evidence": {"value": "error rate flat"}},
                                 "actions": {"actions": {"value": ""}}}, user="U0RM",
               private_metadata=json.dumps({"release": 1, "channel": channel}))
    return "U0RM", "REL-1"


def retro_form(bot, channel):
    bot.submit("retro_form", {"notes": {"notes": {"value": "went fine"}}, "actions": {"actions": {"value": ""}}},
               user="U0RM", private_metadata=json.dumps({"release": 1, "channel": channel}))
    return "U0RM", "REL-1"


def reschedule_button(bot, channel):
    # "Reschedule to <slot>" (a flagged request's free slot): the requester clicks it
    slot = int(datetime(2026, 12, 2, 14, 0, tzinfo=timezone.utc).timestamp())
    bot.click("reschedule_slot", f"1:{slot}", user="U0DEV", channel=channel)
    return "U0DEV", "REL-1 updated"


def more_button(bot, channel):
    # the "More" under a paged list: the next page, with the list's blocks, to the clicker only
    bot.click("list_more", "releases:mine:0", user="U0DEV", channel=channel)
    return "U0DEV", "Releases"


def outcome_button(bot, channel):
    bot.command("go REL-1", user="U0RM", channel=CHANNEL)
    bot.command("go REL-1", user="U0QA", channel=CHANNEL)
    ready(bot)
    bot.svc.clock.set(datetime(2026, 12, 1, 14, 5, tzinfo=timezone.utc))
    bot.command("deploy REL-1", user="U0PL", channel=CHANNEL)
    checked = [{"value": v} for v in ("monitoring", "rollback", "oncall")]
    bot.submit("deploy_checklist", {"checklist": {"checklist": {"selected_options": checked}}, **form_values()},
               user="U0PL",
               private_metadata=opened_view(bot.emulator)["private_metadata"])
    bot.click("deploy_outcome", "1:success", user="U0PL", channel=channel)
    return "U0PL", "REL-1 recorded as success. Stabilisation runs until"


EMERGENCY = ('request service=payments version=1.2.4 type=emergency flags=incident start="2026-11-23 10:00" tz=UTC '
             'duration=60m summary="Stop double charges" incident=INC-4211')


def bridge_scope_button(bot, channel):
    # the bridge card's "Scope confirmed", clicked where the person happens to be
    bot.command(EMERGENCY, user="U0DEV", channel=CHANNEL)
    bot.deliver()  # the bridge and its card
    bot.click("bridge_assess_scope", "2", user="U0EL", channel=channel)
    return "U0EL", "REL-2 still needs"


def bridge_assess_form(bot, channel):
    # the card's "Blast radius / rollback…" form: its submission is answered on the click's response_url
    bot.command(EMERGENCY, user="U0DEV", channel=CHANNEL)
    bot.deliver()
    bot.click("bridge_assess_form", "2", user="U0EL", channel=channel)
    bot.submit("bridge_assess", {"blast_radius": {"blast_radius": {"value": "EU only"}},
                                 "rollback": {"rollback": {"value": None}}}, user="U0EL",
               private_metadata=opened_view(bot.emulator)["private_metadata"])
    return "U0EL", "REL-2 still needs"


# The aftercare forms open from buttons in the release's thread; here they are submitted as if opened by no
# command or click of the person's (no response_url to carry), so the answer must come as a DM.
def show_command(bot, channel):
    # a reply with blocks (the record), not just text
    bot.command("show REL-1", user="U0QA", channel=channel)
    return "U0QA", "REL-1"


def menu_button(bot, channel):
    # the bare /release menu's "My releases"
    bot.click(MENU_MINE, "mine", user="U0DEV", channel=channel)
    return "U0DEV", "Releases"


CASES = [slash_command, go_button, nogo_form, request_form, checklist_form, reschedule_button, more_button,
         outcome_button, bridge_scope_button, bridge_assess_form, show_command, menu_button]
WITHOUT_RESPONSE_URL = [followup_form, retro_form]


@pytest.fixture
def requested(bot):
    bot.emulator.not_member.add(PLACES["outside"])
    bot.command(LINE, user="U0DEV")
    bot.deliver()  # the approval message, in the release channel (the bot is in it)
    return bot


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_answered_on_the_response_url_from_a_dm_and_outside_the_bot_channels(requested, place, case):
    user, says = case(requested, PLACES[place])
    how, text = told(requested.emulator, user)
    assert how == "response_url" and says in text


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("case", CASES + WITHOUT_RESPONSE_URL, ids=lambda c: c.__name__)
def test_answered_by_dm_where_no_response_url_works(requested, place, case):
    # Slack refuses a response_url used five times or older than 30 minutes (an inbox row run late).
    requested.emulator.fail_next("response_url", n=10, status=404, error="expired_url")
    user, says = case(requested, PLACES[place])
    how, text = told(requested.emulator, user)
    assert how == "dm" and says in text
    refused = [c for c in requested.emulator.calls_to("chat.postEphemeral") if not c.ok]
    # The bot never tries an ephemeral in a DM between people; outside, it tried and fell back.
    assert [c.response["error"] for c in refused] == ([] if place == "dm" else ["not_in_channel"] * len(refused))


def test_in_the_release_channel_an_ephemeral_still_answers_a_form_without_response_url(requested):
    requested.submit("retro_form", {"notes": {"notes": {"value": "went fine"}}, "actions": {"actions": {"value": ""}}},
                     user="U0RM", private_metadata=json.dumps({"release": 1, "channel": CHANNEL}))
    how, text = told(requested.emulator, "U0RM")
    assert how == "ephemeral" and "REL-1" in text
