"""A message Slack will never accept is dead-lettered and releases its stream; a bot-wide fault never is."""
from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from conftest import CHANNEL
from storage.models import Outbox, Release

LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-01 14:00" tz=Europe/London '
        'duration=60m summary="Add refunds"')


def release(db) -> Release:
    with Session(db) as s:
        return s.exec(select(Release)).one()


def announcements(db) -> list[Outbox]:
    with Session(db) as s:
        return list(s.exec(select(Outbox).where(Outbox.kind != "reminder").order_by(Outbox.id)))


def in_channel(bot) -> list:
    return [c for c in bot.emulator.calls_to("chat.postMessage") if c.args.get("channel") == CHANNEL]


def waiting(db) -> list[Outbox]:
    """Announcements neither sent nor dead-lettered."""
    return [r for r in announcements(db) if r.sent_at is None and r.dead_at is None]


def row(db, key: str) -> Outbox:
    with Session(db) as s:
        return s.exec(select(Outbox).where(Outbox.key == key)).one()


def _has_buttons(call) -> bool:
    return any(str(b.get("block_id", "")).startswith("vote:") for b in call.args.get("blocks") or [])


def vote(bot, user: str, ts: str = "1700000000.000100") -> None:
    bot.click("vote_go", "1", user=user, channel=CHANNEL, message_ts=ts)


def test_invalid_blocks_on_the_approval_post_is_dead_at_once_and_the_release_goes_on(bot, db, clock, caplog):
    bot.emulator.fail_next("chat.postMessage", error="invalid_blocks")
    with caplog.at_level(logging.WARNING, logger="bot.delivery"):
        bot.command(LINE, user="U0DEV")
    post = row(db, "approval:1:post")
    assert post.dead_at == clock.now() and post.dead_reason.startswith("invalid_blocks")
    assert post.sent_at is None and post.attempts == 1
    assert any("dead letter" in r.message and r.levelno >= logging.WARNING for r in caplog.records)
    # Retried once as plain text, which anchors the release's thread.
    failed, fallback = bot.emulator.calls_to("chat.postMessage")
    assert not failed.ok and fallback.ok and "blocks" not in fallback.args
    assert "REL-1" in fallback.args["text"] and "/release show REL-1" in fallback.args["text"]
    assert release(db).message_ts == fallback.response["ts"]
    # The vote updates and the approval note behind it still go out.
    vote(bot, "U0RM", fallback.response["ts"])
    vote(bot, "U0QA", fallback.response["ts"])
    assert release(db).state == "approved" and waiting(db) == []
    assert [c.ok for c in bot.emulator.calls_to("chat.update")] == [True, True]
    note = bot.emulator.calls_to("chat.postMessage")[-1]
    assert note.ok and note.args["thread_ts"] == fallback.response["ts"] and "approved" in note.args["text"]


def test_not_in_channel_dead_letters_without_fallback_and_blocks_nothing(bot, db, clock):
    bot.emulator.not_member.add(CHANNEL)
    bot.command(LINE, user="U0DEV")
    post = row(db, "approval:1:post")
    assert post.dead_at == clock.now() and post.dead_reason.startswith("not_in_channel")
    assert len(in_channel(bot)) == 1  # no fallback into that channel
    # The approval message was never posted: the updates have nothing to update. They
    # post it afresh, fail the same way and are dead-lettered too; nothing waits or crashes.
    vote(bot, "U0RM")
    vote(bot, "U0QA")
    assert release(db).state == "approved"
    rows = [r for r in announcements(db) if r.kind != "setup_notice"]  # the requester's DM went out
    assert len(rows) == 4 and waiting(db) == []
    assert all(r.dead_reason.startswith("not_in_channel") for r in rows)
    assert len(in_channel(bot)) == 4 and not bot.emulator.calls_to("chat.update")


def test_a_thread_note_too_long_goes_out_as_plain_text_with_a_pointer(bot, db, clock):
    bot.command(LINE, user="U0DEV")
    post = bot.emulator.calls_to("chat.postMessage")[0]
    vote(bot, "U0RM", post.response["ts"])
    bot.emulator.fail_next("chat.postMessage", error="msg_too_long")
    vote(bot, "U0QA", post.response["ts"])
    note = row(db, "note:1:approved:1")
    assert note.dead_reason.startswith("msg_too_long") and note.result == "plain-text fallback sent"
    fallback = bot.emulator.calls_to("chat.postMessage")[-1]
    assert fallback.ok and fallback.args["thread_ts"] == post.response["ts"] and "blocks" not in fallback.args
    assert "approved" in fallback.args["text"] and "/release show REL-1" in fallback.args["text"]
    assert len(fallback.args["text"]) <= 3000 and waiting(db) == []


def test_invalid_blocks_on_an_update_dead_letters_it_and_later_rows_still_go(bot, db):
    bot.command(LINE, user="U0DEV")
    post = bot.emulator.calls_to("chat.postMessage")[0]
    bot.emulator.fail_next("chat.update", error="invalid_blocks")
    vote(bot, "U0RM", post.response["ts"])
    vote(bot, "U0QA", post.response["ts"])
    dead = [r for r in announcements(db) if r.dead_at is not None]
    assert [r.kind for r in dead] == ["approval_message"] and waiting(db) == []
    assert [c.ok for c in bot.emulator.calls_to("chat.update")] == [False, True]
    assert "approved" in bot.emulator.calls_to("chat.postMessage")[-1].args["text"]


def test_a_5xx_is_retried_until_dead_letter_after_then_dead_lettered(bot, db, clock):
    assert bot.svc.policy.delivery.dead_letter_after == timedelta(hours=24)
    bot.emulator.fail_next("chat.postMessage", n=1000, status=500)
    first = clock.now()
    bot.command(LINE, user="U0DEV")
    clock.advance(hours=23, minutes=59)
    bot.deliver()
    post = row(db, "approval:1:post")
    assert post.dead_at is None and post.attempts == 2 and "500" in post.last_error  # still retried
    clock.advance(minutes=1)
    bot.deliver()
    post = row(db, "approval:1:post")
    assert post.dead_at == first + timedelta(hours=24) and "500" in post.dead_reason
    assert post.attempts == 3  # no fallback: Slack was down, not the message wrong
    # Slack is back. The next update finds no message to update and posts it.
    bot.emulator.heal()
    vote(bot, "U0RM")
    ok = [c for c in bot.emulator.calls_to("chat.postMessage") if c.ok and _has_buttons(c)]
    assert len(ok) == 1 and release(db).message_ts == ok[0].response["ts"] and waiting(db) == []


@pytest.mark.parametrize("error", ["invalid_auth", "token_revoked", "account_inactive"])
def test_a_rejected_token_is_never_dead_lettered(bot, db, clock, caplog, error):
    bot.emulator.fail_next("chat.postMessage", n=1000, error=error)
    with caplog.at_level(logging.ERROR, logger="bot.delivery"):
        bot.command(LINE, user="U0DEV")
        for _ in range(4):
            clock.advance(hours=20)
            bot.deliver()
    post = row(db, "approval:1:post")
    assert post.dead_at is None and post.sent_at is None and error in post.last_error and post.attempts == 5
    assert any(error in r.message and r.levelno == logging.ERROR for r in caplog.records)
    bot.emulator.heal()
    clock.advance(minutes=15)
    bot.deliver()
    assert row(db, "approval:1:post").sent_at is not None and release(db).message_ts is not None


def test_unknown_error_code_is_retried_then_dead_lettered(bot, db, clock):
    bot.emulator.fail_next("chat.postMessage", n=1000, error="something_new")
    bot.command(LINE, user="U0DEV")
    clock.advance(hours=1)
    bot.deliver()
    assert row(db, "approval:1:post").dead_at is None
    clock.advance(hours=23)
    bot.deliver()
    assert row(db, "approval:1:post").dead_reason.startswith("something_new")


def test_outbox_command_lists_dead_letters_and_retry_sends_one_once(bot, db, db_url, clock, monkeypatch, capsys):
    from bot import cli
    monkeypatch.setenv("DATABASE_URL", db_url)
    bot.emulator.fail_next("chat.postMessage", error="channel_not_found")
    bot.command(LINE, user="U0DEV")
    post = row(db, "approval:1:post")
    capsys.readouterr()
    assert cli.main(["outbox", "--dead"]) == 0
    listed = capsys.readouterr().out
    assert "approval:1:post" in listed and "channel_not_found" in listed
    assert cli.main(["outbox", "--retry", str(post.id)]) == 0
    assert row(db, "approval:1:post").dead_at is None
    assert bot.deliver() == 1 and bot.deliver() == 0
    ok = [c for c in in_channel(bot) if c.ok]  # (the requester was told by DM when it failed)
    assert len(ok) == 1 and release(db).message_ts == ok[0].response["ts"]
    assert cli.main(["outbox", "--dead"]) == 0 and "approval:1:post" not in capsys.readouterr().out


def test_a_retried_dead_letter_gets_one_more_try_only(bot, db, clock, monkeypatch, db_url):
    from bot import cli
    monkeypatch.setenv("DATABASE_URL", db_url)
    bot.emulator.fail_next("chat.postMessage", error="is_archived")
    bot.command(LINE, user="U0DEV")
    assert cli.main(["outbox", "--retry", str(row(db, "approval:1:post").id)]) == 0
    bot.emulator.fail_next("chat.postMessage", status=503)
    assert bot.deliver() == 0
    post = row(db, "approval:1:post")
    assert post.dead_at == clock.now() and "503" in post.dead_reason  # not another 24 hours of retries


def test_a_dead_lettered_approval_nudge_still_schedules_the_next_one(bot, db, clock):
    bot.command(LINE, user="U0DEV")
    bot.emulator.fail_next("chat.postMessage", error="is_archived")
    clock.advance(hours=4)
    bot.deliver()
    with Session(db) as s:
        nudges = list(s.exec(select(Outbox).where(Outbox.kind == "reminder").order_by(Outbox.id)))
    nudges = [r for r in nudges if r.payload.get("reminder") == "approval_nudge"]
    assert nudges[0].dead_reason.startswith("is_archived") and nudges[0].payload.get("n", 1) == 1
    assert nudges[-1].payload["n"] == 2 and nudges[-1].sent_at is None and nudges[-1].dead_at is None
