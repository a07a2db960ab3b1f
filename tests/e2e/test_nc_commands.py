"""The non-conformance register through Slack (issue 11, QMS 6.2): signed /release nc commands against the
real app and the Slack emulator, on SQLite and PostgreSQL. A new NC's announcement; the whole life cycle; the
owner never verifying; a repeat refused closure until its root cause is written; no role and bad input
answered, nothing written; reminders before, at and after the due date, each exactly once."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from commands import nonconformance
from commands.policy import Policy
from storage.db import transaction
from storage.models import AuditEvent, NonConformance, Release

from conftest import CHANNEL, ROLES, serving, start_bot

LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-01 14:00" tz=UTC '
        'duration=60m summary="Add refunds"')


def detect(bot, *, release_id: int | None = None, subject: str = "report-1", service: str = "payments") -> int:
    """A non-conformance as the detectors record it (commands.nonconformance.record, the one recorder)."""
    with transaction(bot.svc.db) as s:
        release = s.get(Release, release_id) if release_id else None
        nc, _ = nonconformance.record(s, release, kind=nonconformance.DEPLOYMENT_WITHOUT_APPROVAL, subject=subject,
                                      detail="pipeline:ci reported a production deployment nobody approved",
                                      actor="pipeline:ci", now=bot.svc.clock.now(), service=service,
                                      policy=bot.svc.policy)
        return nc.id


def answered(bot, user: str) -> str:
    return bot.emulator.said_to(user)[-1]


def reply(bot, line: str, user: str) -> str:
    """What the person sees: a malformed line is answered in the ack itself, the rest after it."""
    before = len(bot.emulator.said_to(user))
    response = bot.command(line, user=user)
    if response.content and response.headers.get("content-type", "").startswith("application/json"):
        return response.json()["text"]
    said = bot.emulator.said_to(user)
    assert len(said) == before + 1, line  # exactly one answer
    return said[-1]


def blocks_text(bot) -> str:
    return json.dumps(bot.emulator.calls_to("response_url")[-1].args.get("blocks"))


def posts(bot, needle: str) -> list:
    return [c for c in bot.emulator.calls_to("chat.postMessage") if needle in c.args["text"]]


def nc_of(db, nc_id: int) -> NonConformance:
    with Session(db) as s:
        return s.get(NonConformance, nc_id)


def nc_events(db) -> list[str]:
    with Session(db) as s:
        return [e.action for e in s.exec(select(AuditEvent).order_by(AuditEvent.id))
                if e.action.startswith("nonconformance_")]


def test_a_new_nc_is_announced_with_its_register_entry(bot, db, clock):
    bot.command(LINE, user="U0DEV")
    nc_id = detect(bot, release_id=1)
    bot.deliver()
    nc = nc_of(db, nc_id)
    [channel] = [c for c in posts(bot, "Non-conformance") if not c.args.get("thread_ts")]
    [thread] = [c for c in posts(bot, "Non-conformance") if c.args.get("thread_ts")]
    for c in (channel, thread):
        text = c.args["text"]
        assert f"*NC-{nc_id}* · deployment without approval · corrective action due" in text
        assert f"<!date^{int(nc.due_at.timestamp())}^" in text and "repeat" not in text
    assert channel.args["text"].startswith("<@U0RM>") and channel.args["channel"] == CHANNEL
    # with no release (a deployment that names none): the release channel only
    other = detect(bot, subject="unmatched-1", service="ledger")
    bot.deliver()
    [alone] = posts(bot, f"*NC-{other}*")
    assert not alone.args.get("thread_ts") and alone.args["channel"] == CHANNEL


def test_the_whole_life_cycle_through_slack(bot, db, clock):
    nc = detect(bot)
    bot.command(f'nc plan NC-{nc} owner=<@U0DEV|dev> action="Make the pipeline refuse unapproved releases"',
                user="U0RM")
    assert f"NC-{nc}'s corrective action is planned: owner U0DEV, due <!date^" in answered(bot, "U0RM")
    bot.deliver()
    [told] = posts(bot, "you own the corrective action")
    assert told.args["text"].startswith("<@U0DEV>: you own the corrective action of NC-")

    bot.command("nc list mine", user="U0DEV")
    assert f"*NC-{nc}*" in blocks_text(bot) and "action planned" in blocks_text(bot)

    bot.command(f'nc done NC-{nc} evidence="https://ci.example/runs/7 gate added"', user="U0DEV")
    assert "recorded as done" in answered(bot, "U0DEV")
    bot.command(f"nc verify NC-{nc}", user="U0DEV")  # the owner holds no role, and owns it
    assert "Only a release manager can verify" in answered(bot, "U0DEV")
    assert nc_of(db, nc).state == "actioned"
    bot.command(f"nc verify NC-{nc}", user="U0RM")
    assert "is verified" in answered(bot, "U0RM")
    bot.command(f"nc close NC-{nc}", user="U0RM")
    assert answered(bot, "U0RM") == f"NC-{nc} is closed."
    assert nc_events(db) == ["nonconformance_planned", "nonconformance_actioned", "nonconformance_verify_refused",
                             "nonconformance_verified", "nonconformance_closed"]

    bot.command(f"nc show NC-{nc}", user="U0AUD")  # anyone may read the register
    shown = blocks_text(bot)
    assert ":white_check_mark: closed" in shown and "gate added" in shown and "closed by <@U0RM>" in shown
    bot.command("nc list", user="U0RM")
    assert "None." in blocks_text(bot)  # closed: no longer open


@pytest.fixture
def two_rms(db, clock, emulator):
    """The bot with a policy that names two release managers: one may verify what the other owns."""
    roles = {**ROLES, "release_manager": ["U0RM", "U0RM2"]}
    yield from serving(start_bot(db, clock, Policy.from_mapping({"roles": roles}, source="test policy"), emulator))


def test_the_owner_never_verifies_or_closes_and_a_repeat_needs_its_root_cause(two_rms, db, clock):
    bot = two_rms
    detect(bot, subject="first")
    clock.advance(days=30)
    nc = detect(bot, subject="second")
    assert nc_of(db, nc).repeat_of == nc - 1
    bot.command(f'nc plan NC-{nc} owner=U0RM action="Add the gate"', user="U0RM2")  # a release manager owns it
    assert "It is a repeat" in answered(bot, "U0RM2")
    bot.command(f"nc done NC-{nc} evidence=https://ci.example/7", user="U0RM")
    bot.command(f"nc verify NC-{nc}", user="U0RM")
    assert "another release manager must verify it (separation of duties)" in answered(bot, "U0RM")
    assert nc_of(db, nc).state == "actioned" and nc_events(db)[-1] == "nonconformance_verify_refused"
    bot.command(f'nc plan NC-{nc} owner=<@U0OPS|ops> action="Add the gate"', user="U0RM2")
    assert "cannot be planned" in answered(bot, "U0RM2")  # actioned: the plan stands
    bot.command(f"nc verify NC-{nc}", user="U0RM2")
    assert "It is a repeat without a root cause yet" in answered(bot, "U0RM2")
    bot.command(f'nc close NC-{nc} root_cause="x"', user="U0RM")
    assert "another release manager must close it" in answered(bot, "U0RM")
    bot.command(f"nc close NC-{nc}", user="U0RM2")
    assert f"is a repeat of NC-{nc - 1}" in answered(bot, "U0RM2") and "root_cause=" in answered(bot, "U0RM2")
    assert nc_of(db, nc).state == "verified" and nc_events(db)[-2:] == ["nonconformance_close_refused"] * 2
    bot.command(f'nc close NC-{nc} root_cause="Hotfix branches skipped the gate step"', user="U0RM2")
    assert answered(bot, "U0RM2") == f"NC-{nc} is closed."
    assert nc_of(db, nc).root_cause == "Hotfix branches skipped the gate step"


def test_no_role_and_bad_input_write_nothing(bot, db, clock):
    nc = detect(bot)
    bot.command(f'nc plan NC-{nc} owner=U0DEV action="x"', user="U0DEV")
    said = answered(bot, "U0DEV")
    assert "Only a release manager can plan" in said and "<@U0RM>" in said  # and who does hold the role
    assert nc_events(db) == ["nonconformance_plan_refused"]
    for line, says in ((f'nc plan NC-{nc} owner=@alice action="x"', "owner is a person"),
                       (f"nc plan NC-{nc} action=x", "plan needs owner="),
                       ("nc plan REL-1 owner=U0DEV action=x", "is not a non-conformance id"),
                       ("nc show NC-99", "NC-99 does not exist"),
                       ("nc frobnicate NC-1", "is not an nc action"),
                       (f"nc verify NC-{nc} owner=U0DEV", "is not a field of /release nc verify"),
                       ("nc list later", "nc list takes open, overdue or mine"),
                       (f"nc done NC-{nc}", "done needs evidence=")):
        assert says in reply(bot, line, "U0RM"), line
    assert nc_events(db) == ["nonconformance_plan_refused"] and nc_of(db, nc).state == "open"
    bot.command(f'nc plan NC-{nc} owner=U0DEV action="<!channel> fix"', user="U0RM")
    bot.deliver()
    [told] = posts(bot, "you own the corrective action")
    assert "<!channel>" not in told.args["text"] and "&lt;!channel&gt;" in told.args["text"]


def test_reminders_before_at_and_after_the_due_date_each_once(bot, db, clock):
    bot.command(LINE, user="U0DEV")
    nc = detect(bot, release_id=1)
    bot.command(f'nc plan NC-{nc} owner=<@U0DEV|dev> action="Gate it"', user="U0RM")
    bot.deliver()
    due = nc_of(db, nc).due_at

    def reminders() -> list:
        return [c for c in bot.emulator.calls_to("chat.postMessage") if c.args["text"].startswith(f"NC-{nc}: ")]

    clock.set(due - timedelta(days=1, seconds=1))
    bot.deliver()
    assert reminders() == []
    clock.set(due - timedelta(days=1))
    bot.deliver()
    bot.deliver()
    [soon] = reminders()
    assert "is due <!date^" in soon.args["text"] and "<@U0DEV>" in json.dumps(soon.args["blocks"])
    assert soon.args.get("thread_ts")  # in the release's thread

    clock.set(due)
    bot.deliver()
    assert len(reminders()) == 2 and "is due now" in reminders()[-1].args["text"]

    clock.set(due + timedelta(days=1))
    bot.deliver()
    clock.advance(hours=5)
    bot.deliver()
    assert len(reminders()) == 3
    escalation = reminders()[-1]
    assert "overdue" in escalation.args["text"] and "Escalated" in escalation.args["text"]
    shown = json.dumps(escalation.args["blocks"])
    assert "<@U0RM>" in shown and "<@U0DEV>" not in shown
    assert nc_of(db, nc).escalated_at == due + timedelta(days=1)
    with Session(db) as s:
        assert [e.action for e in s.exec(select(AuditEvent).where(AuditEvent.action == "nonconformance_escalated"))] \
            == ["nonconformance_escalated"]

    bot.command("nc list overdue", user="U0RM")
    assert f"*NC-{nc}*" in blocks_text(bot) and "overdue" in blocks_text(bot)
    bot.command(f"nc done NC-{nc} evidence=https://ci.example/9", user="U0DEV")
    assert "after its due date" in answered(bot, "U0DEV")
    bot.command("nc list overdue", user="U0RM")
    assert "None." in blocks_text(bot)  # actioned: documented, no longer overdue


def test_an_nc_actioned_in_time_is_not_chased_and_one_without_owner_reminds_the_rms(bot, db, clock):
    done = detect(bot, subject="a")
    unowned = detect(bot, subject="b", service="ledger")
    bot.command(f'nc plan NC-{done} owner=U0DEV action="Gate it"', user="U0RM")
    bot.command(f"nc done NC-{done} evidence=fixed", user="U0DEV")
    due = nc_of(db, done).due_at
    for at in (due - timedelta(days=1), due, due + timedelta(days=1)):
        clock.set(at)
        bot.deliver()
    assert [c for c in bot.emulator.calls_to("chat.postMessage") if c.args["text"].startswith(f"NC-{done}: ")] == []
    about = [c for c in bot.emulator.calls_to("chat.postMessage") if c.args["text"].startswith(f"NC-{unowned}: ")]
    assert len(about) == 3 and all(c.args["channel"] == CHANNEL and not c.args.get("thread_ts") for c in about)
    assert "has no owner yet" in about[0].args["text"] and "<@U0RM>" in json.dumps(about[0].args["blocks"])


def test_the_cli_prints_the_whole_register(bot, db, clock, db_url, monkeypatch, capsys):
    first = detect(bot, subject="a")
    second = detect(bot, subject="b", service="ledger")
    bot.command(f'nc plan NC-{second} owner=U0DEV action="Gate it"', user="U0RM")
    monkeypatch.setenv("DATABASE_URL", db_url)
    from bot import cli
    capsys.readouterr()
    assert cli.main(["nc", "list", "mine", "--owner", "U0DEV"]) == 0
    [mine] = json.loads(capsys.readouterr().out)
    assert (mine["ref"], mine["state"], mine["owner_id"], mine["repeat"]) == (f"NC-{second}", "action_planned",
                                                                            "U0DEV", False)
    assert cli.main(["nc", "list", "--state", "open"]) == 0
    assert [n["ref"] for n in json.loads(capsys.readouterr().out)] == [f"NC-{first}"]
    assert cli.main(["nc", "list", "mine"]) == 2  # mine names nobody without --owner
