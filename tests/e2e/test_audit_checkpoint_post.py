"""The scheduler's checkpoint reaches AUDIT_CHANNEL through the outbox (the real app, the Slack emulator),
once per period, and what Slack shows, pasted back, proves the log written through Slack's requests."""
from __future__ import annotations

import pytest

from commands import audit_checkpoint as ac
from storage import audit_chain

from conftest import serving, start_bot

LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-01 14:00" tz=Europe/London '
        'duration=60m summary="Add refunds"')
PEM = ac.keygen().decode()


@pytest.fixture
def audited_bot(db, clock, policy, emulator):
    yield from serving(start_bot(db, clock, policy, emulator,
                                 {"AUDIT_CHANNEL": "C0AUDIT", "RELEASEBOT_AUDIT_KEY": PEM}))


def tick(bot) -> None:
    """What the scheduler's audit_checkpoint job does at its interval."""
    from bot.scheduler import build_scheduler
    build_scheduler(bot.svc).get_job("audit_checkpoint").func()


def test_the_days_checkpoint_is_posted_once_and_what_slack_shows_verifies(audited_bot, db, clock):
    bot = audited_bot
    bot.command(LINE, user="U0DEV")
    bot.command('go REL-1 note="fine"', user="U0RM")
    tick(bot)
    tick(bot)  # the same period: nothing new
    bot.deliver()
    [post] = [c for c in bot.emulator.calls_to("chat.postMessage") if c.args.get("channel") == "C0AUDIT"]
    shown = post.args["blocks"][0]["text"]["text"]
    assert f"key: {ac.fingerprint(ac.load_key(PEM))}" in shown and len(post.args["blocks"]) == 1
    with audit_chain.snapshot(db) as conn:
        result = ac.check(ac.parse(shown), conn, ac.fingerprint(ac.load_key(PEM)))
    assert result.ok, result.lines
    verified = audit_chain.verify(db)
    assert verified.ok and verified.count >= 3  # requested, vote_go, audit_checkpoint at least
    clock.advance(hours=24)
    tick(bot)
    bot.deliver()
    assert len([c for c in bot.emulator.calls_to("chat.postMessage") if c.args.get("channel") == "C0AUDIT"]) == 2


def test_without_a_key_there_is_no_checkpoint_job(bot):
    from bot.scheduler import build_scheduler
    assert build_scheduler(bot.svc).get_job("audit_checkpoint") is None


def test_checkpoint_posts_survive_slack_failing(audited_bot, db, clock):
    bot = audited_bot
    bot.emulator.fail_next("chat.postMessage", 1, status=500)
    tick(bot)
    bot.deliver()  # refused: stays in the outbox
    assert not [c for c in bot.emulator.calls_to("chat.postMessage") if c.ok and c.args.get("channel") == "C0AUDIT"]
    clock.advance(minutes=20)
    bot.deliver()
    assert len([c for c in bot.emulator.calls_to("chat.postMessage") if c.ok and c.args.get("channel") == "C0AUDIT"]) == 1
