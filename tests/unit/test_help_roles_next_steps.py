"""Issue 9 items 7, 8, 11 below Slack: who holds a role (commands/roles), the deploy precheck
(commands/deploy), and every new renderer held to Slack's limits with slack_sdk's own models."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from slack_sdk.models.blocks import Block

from bot.messages import help as help_msg
from bot.messages.release import reschedule_actions
from bot.messages.roles import held_by, refusal_note, roles_message
from commands.deploy import Deployer, precheck_deployment
from commands.errors import InputError
from commands.policy import ROLES as ALL_ROLES, Policy
from commands.release import load
from commands.roles import all_holders, empty_roles, holders
from commands.text import parse_command
from commands.usage import HELP_TOPICS
from commands.vote import cast_vote
from conftest import ROLES, actor
from storage.db import read
from storage.models import Release
from unit_support import events, new_release, ready_to_deploy

UTC = timezone.utc
POLICY = Policy.from_mapping({"roles": ROLES}, source="policy.toml")


def within_slack_limits(text: str, blocks: list[dict]) -> None:
    assert 0 < len(blocks) <= 50 and len(text) <= 3000
    for b in blocks:
        Block.parse(b).to_dict()  # raises SlackObjectFormationError past any of Slack's limits
    whole = text + "".join(str(b) for b in blocks)
    assert whole.count("<") == whole.count(">")  # no mention or <!date^…> token cut in two


# ---- who holds which role ----

def test_holders_name_users_and_groups_and_resolve_groups_through_the_given_lookup():
    h = holders(POLICY, "qa_lead", {"S0QALEADS": ["U0QAGROUP"]}.get)
    assert h.users == ("U0QA",) and [(g.group_id, g.members) for g in h.groups] == [("S0QALEADS", ("U0QAGROUP",))]
    assert h.people == {"U0QA", "U0QAGROUP"} and not h.empty


def test_a_role_is_empty_only_when_nobody_can_hold_it():
    policy = Policy.from_mapping({"roles": {"qa_lead": ["S0EMPTY"], "cab": ["S0DOWN"]}})
    found = {h.role: h for h in all_holders(policy, {"S0EMPTY": []}.get)}
    assert found["qa_lead"].empty  # a group with no members
    assert not found["cab"].empty and found["cab"].unresolved  # Slack could not say: not called empty
    assert empty_roles(policy, {"S0EMPTY": []}.get) == [r for r in ALL_ROLES if r != "cab"]


def test_refusal_note_names_holders_or_where_to_set_an_empty_role():
    policy = Policy.from_mapping({"roles": {"qa_lead": ["U0QA", "S0QALEADS"]}}, source="/etc/policy.toml")
    note = refusal_note([holders(policy, "qa_lead"), holders(policy, "executive")], policy.source)
    assert note == ("\nThis needs qa_lead: held by <@U0QA> and group <!subteam^S0QALEADS>; executive: nobody "
                    "holds it yet (set roles.executive in /etc/policy.toml).")


# ---- the largest records, against Slack's limits ----

def huge_policy() -> tuple[Policy, dict]:
    roles = {r: [f"U{i:08d}" for i in range(300)] + [f"S{ALL_ROLES.index(r)}G{i:05d}" for i in range(40)]
             for r in ALL_ROLES}
    members = {g: [f"W{i:08d}" for i in range(5000)] for groups in roles.values() for g in groups if g[0] == "S"}
    return Policy.from_mapping({"roles": roles}, source="/" + "p" * 900 + "/policy.toml"), members


def test_roles_message_of_the_largest_policy_stays_within_slack_limits_and_counts_what_it_leaves_out():
    policy, members = huge_policy()
    text, blocks = roles_message(all_holders(policy, members.get), policy.source)
    within_slack_limits(text, blocks)
    assert "and 260 more" in str(blocks)  # 300 users named, 40 shown, the rest counted


def test_roles_message_with_every_role_empty_names_them():
    text, blocks = roles_message(all_holders(Policy.default()), "policy.toml")
    within_slack_limits(text, blocks)
    assert f"Empty roles: {', '.join(ALL_ROLES)}." in str(blocks)


def test_held_by_keeps_whole_mentions_within_its_budget():
    policy, members = huge_policy()
    h = holders(policy, "qa_lead", members.get)
    shown = held_by(h, resolved=True, budget=600)
    assert len(shown) < 700 and shown.count("<") == shown.count(">") and "more" in shown


@pytest.mark.parametrize("today", [datetime(2026, 11, 23, 9, 0, tzinfo=UTC), datetime(2031, 2, 28, 23, 59, tzinfo=UTC)])
def test_help_overview_and_every_topic_stay_within_slack_limits(today):
    within_slack_limits(*help_msg.help_overview())
    for topic in HELP_TOPICS:
        text, blocks = help_msg.help_topic(topic, today)
        within_slack_limits(text, blocks)
        assert f"{today + timedelta(days=10):%Y-%m-%d}" in text or topic != "request"


def test_menu_and_welcome_stay_within_slack_limits():
    within_slack_limits(*help_msg.menu())
    within_slack_limits(*help_msg.welcome(list(ALL_ROLES), "/" + "p" * 2000, "C0RELEASES"))
    text, blocks = help_msg.welcome([], "policy.toml", None)
    within_slack_limits(text, blocks)
    assert "Every role has someone" in str(blocks)


def test_help_topics_are_the_ones_the_parser_accepts():
    assert tuple(help_msg.TOPICS) == HELP_TOPICS
    assert parse_command("help Deploy").positional == ("deploy",)
    assert parse_command("roles").name == "roles"
    with pytest.raises(InputError, match="help topics are"):
        parse_command("help everything")


def test_reschedule_buttons_of_the_longest_zone_stay_within_slack_limits():
    r = Release(id=2**31 - 1, state="pending", tz="America/Argentina/ComodRivadavia")
    slots = [datetime(2026, 12, d, 14, 0, tzinfo=UTC) for d in range(1, 8)]
    [block] = reschedule_actions(r, slots)
    within_slack_limits("x", [block])
    assert len(block["elements"]) == 5 and block["elements"][0]["value"] == f"{2**31 - 1}:{int(slots[0].timestamp())}"
    assert reschedule_actions(Release(id=1, state="cancelled", tz="UTC"), slots) == []


# ---- the deploy precheck ----

WINDOW = dict(start="2026-12-09 10:00", tz="UTC", duration="60m")
IN_WINDOW = datetime(2026, 12, 9, 10, 5, tzinfo=UTC)


def test_precheck_passes_what_only_the_checklist_can_still_fix(db, clock, policy):
    rid = new_release(db, clock, policy, **WINDOW)
    for user in ("U0RM", "U0QA"):
        cast_vote(db, actor(user), rid, "go", clock)
    ready_to_deploy(db, clock, rid, policy)  # the package: no form can add it
    clock.set(IN_WINDOW)
    # the artefact, commit and justification are the form's business, like the checklist
    assert precheck_deployment(db, Deployer.of(actor("U0PL")), rid, clock, policy) is None
    assert events(db, rid, "deploy_refused") == []


def test_precheck_refuses_and_audits_what_the_checklist_cannot_fix(db, clock, policy):
    rid = new_release(db, clock, policy, **WINDOW)
    out = precheck_deployment(db, Deployer.of(actor("U0DEV")), rid, clock, policy)
    assert out.refused and "pending, not approved" in out.message and "outside the planned window" in out.message
    assert "not confirmed" not in out.message  # the checklist's own items are the form's business
    assert out.data["needs_roles"] == ["operations", "platform_lead"]
    [ev] = events(db, rid, "deploy_refused")
    assert ev.after["code"] == "gate" and ev.after["precheck"] is True
    # not approved, outside the window, no deploying role, and the package no form can add (QMS 4.3, 4.4)
    assert len([r for r in ev.after["reasons"] if not r.startswith(("test phase", "the release notes",
                                                                     "the deployment runbook"))]) == 3
    assert "artefact is required" not in out.message and "justification" not in out.message
    with read(db) as s:
        assert load(s, rid).state == "pending"


def test_a_slot_value_that_is_not_a_time_is_bad_input(db, clock, policy):
    from commands.replan import reschedule_to_slot
    rid = new_release(db, clock, policy, **WINDOW)
    for bad in ("", "12a", "9" * 30):
        with pytest.raises(InputError):
            reschedule_to_slot(db, actor("U0DEV"), rid, bad, clock, policy)
    assert events(db, rid, "edited") == []
