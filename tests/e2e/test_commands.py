"""The command-line side of /release, and separation of duties as users meet it in Slack."""
from __future__ import annotations

import json

from sqlmodel import Session, select

from storage.models import AuditEvent, Release, Vote

LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-01 14:00" tz=Europe/London '
        'duration=60m summary="Add refunds"')


def reply(bot) -> str:
    return bot.emulator.calls_to("response_url")[-1].args["text"]


def blocks_text(bot) -> str:
    return json.dumps(bot.emulator.calls_to("response_url")[-1].args.get("blocks"))


def release(db, rid=1) -> Release:
    with Session(db) as s:
        return s.get(Release, rid)


def audit(db, rid=1) -> list[AuditEvent]:
    with Session(db) as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.release_id == rid).order_by(AuditEvent.id)))


def test_go_and_nogo_from_the_command_line(bot, db):
    bot.command(LINE, user="U0DEV")
    bot.command("go REL-1 note=\"looks good\"", user="U0RM")
    assert "recorded as release_manager" in reply(bot)
    bot.command('nogo REL-1 reason="load test failed"', user="U0QA")
    assert "blocked until you withdraw" in reply(bot)
    msg = bot.emulator.calls_to("chat.update")[-1]
    assert "No-go" in json.dumps(msg.args["blocks"]) and "load test failed" in json.dumps(msg.args["blocks"])
    bot.command("withdraw REL-1", user="U0QA")
    bot.command("go REL-1", user="U0QA")
    assert release(db).state == "approved"
    assert [e.action for e in audit(db)] == ["requested", "vote_go", "vote_nogo", "vote_withdrawn", "vote_go",
                                             "approved"]


def test_requester_cannot_vote_and_the_refusal_is_audited(bot, db):
    bot.command('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-01 14:00" tz=UTC '
                'duration=1h '
                'summary=x', user="U0RM")
    bot.command("go REL-1", user="U0RM")
    assert "requester never approves" in reply(bot)
    [refusal] = [e for e in audit(db) if e.action == "vote_refused"]
    assert refusal.actor == "U0RM" and refusal.after["code"] == "requester"
    with Session(db) as s:
        assert list(s.exec(select(Vote))) == []


def test_button_refusals_are_ephemeral_and_audited(bot, db):
    bot.command(LINE, user="U0DEV")
    post = bot.emulator.calls_to("chat.postMessage")[0]
    for user in ("U0DEV", "U0OPS"):
        bot.click("vote_go", "1", user=user, channel=post.response["channel"], message_ts=post.response["ts"])
    said = {user: bot.emulator.said_to(user)[-1] for user in ("U0DEV", "U0OPS")}
    assert "requester never approves" in said["U0DEV"]
    assert "you hold none of those roles" in said["U0OPS"]
    assert [e.after["code"] for e in audit(db) if e.action == "vote_refused"] == ["requester", "no_required_role"]
    assert bot.emulator.calls_to("chat.update") == []  # nothing changed, nothing re-rendered


def test_role_through_a_user_group(bot, db):
    bot.command(LINE, user="U0DEV")
    bot.command("go REL-1", user="U0QAGROUP")
    assert "recorded as qa_lead" in reply(bot)
    calls = bot.emulator.calls_to("usergroups.users.list")
    assert calls and calls[0].args["usergroup"] == "S0QALEADS"


def test_nogo_button_opens_a_reason_form_and_the_reason_is_recorded(bot, db):
    bot.command(LINE, user="U0DEV")
    post = bot.emulator.calls_to("chat.postMessage")[0]
    bot.click("vote_nogo", "1", user="U0QA", channel=post.response["channel"], message_ts=post.response["ts"])
    [opened] = bot.emulator.calls_to("views.open")
    view = opened.args["view"]
    r = bot.submit("nogo_reason", {"reason": {"reason": {"value": " "}}}, user="U0QA",
                   private_metadata=view["private_metadata"])
    assert r.json() == {"response_action": "errors", "errors": {"reason": "A No-go needs a reason."}}
    bot.submit("nogo_reason", {"reason": {"reason": {"value": "error budget spent"}}}, user="U0QA",
               private_metadata=view["private_metadata"])
    with Session(db) as s:
        [vote] = list(s.exec(select(Vote)))
    assert (vote.voter_id, vote.decision, vote.note, vote.role) == ("U0QA", "nogo", "error budget spent", "qa_lead")


def test_edit_resets_votes_and_says_so_in_the_thread(bot, db):
    bot.command(LINE, user="U0DEV")
    bot.command("go REL-1", user="U0RM")
    bot.command("go REL-1", user="U0QA")
    assert release(db).state == "approved"
    bot.command("edit REL-1 version=2.3.2", user="U0DEV")
    said = reply(bot)
    assert "needs a written reason" in said and 'reason="' in said
    assert release(db).version == "2.3.1" and not [e for e in audit(db) if e.action.startswith("edit")]
    bot.command('edit REL-1 version=2.3.2 reason="the build was rebuilt"', user="U0DEV")
    rel = release(db)
    assert (rel.state, rel.round, rel.version) == ("pending", 2, "2.3.2")
    assert "no longer count" in reply(bot)
    notes = [c.args["text"] for c in bot.emulator.calls_to("chat.postMessage") if c.args.get("thread_ts")]
    assert notes[-1].startswith("REL-1 changed")
    bot.command("go REL-1", user="U0RM")
    assert release(db).state == "pending"  # the old QA Go no longer counts
    edited = [e for e in audit(db) if e.action == "edited"][0]
    assert (edited.before["version"], edited.after["version"]) == ("2.3.1", "2.3.2")
    assert edited.reason.startswith("the build was rebuilt")


def test_cancel_and_votes_after_it(bot, db):
    bot.command(LINE, user="U0DEV")
    bot.command("cancel REL-1 reason=\"superseded by REL-2\"", user="U0QA")
    assert "Only the requester or a release manager" in reply(bot)
    bot.command("cancel REL-1 reason=\"superseded by REL-2\"", user="U0DEV")
    assert release(db).state == "cancelled"
    last = bot.emulator.calls_to("chat.update")[-1]
    assert "vote_go" not in json.dumps(last.args["blocks"])  # no buttons on a cancelled release
    bot.command("go REL-1", user="U0RM")
    assert "cancelled" in reply(bot)


def test_misclassification_accepted_by_a_release_manager(bot, db):
    bot.command('request service=edge version=4.0 type=patch flags=breaking start="2026-12-01 14:00" tz=UTC '
                'duration=1h summary=x', user="U0DEV")
    rel = release(db)
    assert (rel.effective_type, rel.misclassified) == ("major", True)
    bot.command('accept REL-1 reason="x"', user="U0QA")
    assert "Only a release manager" in reply(bot)
    bot.command('accept REL-1 reason="flag-gated, dark launch"', user="U0RM")
    rel = release(db)
    assert rel.effective_type == "patch" and rel.required_roles == {"engineering_lead": 1, "qa_lead": 1}
    assert rel.misclassification_accepted_by == "U0RM"
    # as a major release its 8-day window was flagged (14 days' lead); as a patch it passes, so the flag clears
    assert [e.action for e in audit(db)][-2:] == ["misclassification_accepted", "planning_checked"]


def test_show_gives_record_votes_and_trail(bot, db):
    bot.command(LINE, user="U0DEV")
    bot.command("go REL-1 note=\"ok\"", user="U0RM")
    bot.command("show REL-1", user="U0OPS")
    shown = blocks_text(bot)
    for part in ("REL-1", "payments", "Audit trail", "requested", "vote_go", "release_manager", "Votes"):
        assert part in shown


def test_list_filters(bot, db):
    bot.command(LINE, user="U0DEV")
    bot.command(LINE.replace("payments", "ledger"), user="U0OPS")
    bot.command("list mine", user="U0DEV")
    assert "payments" in blocks_text(bot) and "ledger" not in blocks_text(bot)
    bot.command("list pending", user="U0DEV")
    assert "payments" in blocks_text(bot) and "ledger" in blocks_text(bot)
