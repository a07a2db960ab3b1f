"""When Slack cannot list a user group, a person who might hold a role through it is asked to try
again (nothing written, nothing audited); once Slack answers, a non-member is refused and audited."""
from __future__ import annotations

import pytest
from sqlmodel import Session, select

from commands.policy import Policy
from conftest import ROLES, start_bot, serving
from storage.models import AuditEvent, ReleaseFlag, Vote

LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-01 14:00" tz=Europe/London '
        'duration=60m summary="Add refunds"')
SOON = ('request service=payments version=1.0.0 type=minor flags=feature start="2026-11-25 14:00" tz=UTC duration=60m '
        'summary="Change payments"')  # 2 days out: a lead_time flag
OVERRIDE = 'override REL-1 kind=lead_time reason="customer commitment"'


def reply(bot) -> str:
    return bot.emulator.calls_to("response_url")[-1].args.get("text") or ""


def audited(db, action: str) -> list[AuditEvent]:
    with Session(db) as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.action == action)))


def slack_cannot_list_groups(bot) -> None:
    bot.emulator.fail_next("usergroups.users.list", n=1000, status=503)


@pytest.fixture
def group_manager_bot(db, clock, emulator):
    """Release managers are also whoever is in S0QALEADS, so an override turns on a group lookup."""
    roles = {**ROLES, "release_manager": ["U0RM", "S0QALEADS"]}
    yield from serving(start_bot(db, clock, Policy.from_mapping({"roles": roles}, source="test policy"), emulator))


def test_override_while_slack_cannot_list_the_group_asks_to_try_again(group_manager_bot, db):
    bot = group_manager_bot
    bot.command(SOON, user="U0DEV")
    slack_cannot_list_groups(bot)
    for user in ("U0QAGROUP", "U0OPS"):  # a member and a non-member: neither can be told apart just now
        bot.command(OVERRIDE, user=user)
        assert "try again" in reply(bot) and "release_manager" in reply(bot)
    assert audited(db, "override_refused") == []
    bot.emulator.heal()
    bot.command(OVERRIDE, user="U0OPS")
    assert "needs the release_manager role" in reply(bot)
    [refused] = audited(db, "override_refused")
    assert (refused.actor, refused.after["code"]) == ("U0OPS", "wrong_role")
    bot.command(OVERRIDE, user="U0QAGROUP")
    with Session(db) as s:
        [flag] = s.exec(select(ReleaseFlag)).all()
    assert flag.overridden_by == "U0QAGROUP"


def test_vote_while_slack_cannot_list_the_group_asks_to_try_again(bot, db):
    bot.command(LINE, user="U0DEV")
    post = bot.emulator.calls_to("chat.postMessage")[0]
    slack_cannot_list_groups(bot)
    bot.click("vote_go", "1", user="U0QAGROUP", channel=post.response["channel"], message_ts=post.response["ts"])
    [told] = bot.emulator.said_to("U0QAGROUP")
    assert "try again" in told and "qa_lead" in told
    bot.command("go REL-1", user="U0QAGROUP")
    assert "try again" in reply(bot)
    assert audited(db, "vote_refused") == []
    bot.emulator.heal()
    bot.command("go REL-1", user="U0OPS")
    assert "you hold none of those roles" in reply(bot)
    [refused] = audited(db, "vote_refused")
    assert (refused.actor, refused.after["code"]) == ("U0OPS", "no_required_role")
    bot.command("go REL-1", user="U0QAGROUP")
    with Session(db) as s:
        assert [(v.voter_id, v.role) for v in s.exec(select(Vote))] == [("U0QAGROUP", "qa_lead")]
