"""Nothing lost: decisions commit before they are announced, and failed announcements are retried."""
from __future__ import annotations

import threading
from datetime import timedelta

from sqlmodel import Session, select

from storage.models import Outbox, Release, Vote

LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-01 14:00" tz=Europe/London '
        'duration=60m summary="Add refunds"')


def release(db) -> Release:
    with Session(db) as s:
        return s.exec(select(Release)).one()


def unsent(db) -> list[Outbox]:
    """Announcements not yet sent (reminders wait for their time and are not counted)."""
    with Session(db) as s:
        return list(s.exec(select(Outbox).where(Outbox.sent_at.is_(None), Outbox.kind != "reminder")))


def test_429_then_500_then_ok_gives_exactly_one_post(bot, db, clock):
    bot.emulator.fail_next("chat.postMessage", status=429, retry_after=7)
    bot.command(LINE, user="U0DEV")
    assert release(db).state == "pending"  # the request stands although Slack refused
    [row] = unsent(db)
    assert row.due_at == clock.now() + timedelta(seconds=7) and "429" in row.last_error
    assert bot.deliver() == 0  # Retry-After not yet passed: not even tried
    assert len(bot.emulator.calls_to("chat.postMessage")) == 1
    bot.emulator.fail_next("chat.postMessage", status=500)
    clock.advance(seconds=7)
    assert bot.deliver() == 0
    clock.advance(minutes=1)
    assert bot.deliver() == 1
    ok = [c for c in bot.emulator.calls_to("chat.postMessage") if c.ok]
    assert len(ok) == 1 and unsent(db) == []
    assert release(db).message_ts == ok[0].response["ts"]


def test_slack_down_keeps_votes_and_announces_later_in_order(bot, db, clock):
    bot.command(LINE, user="U0DEV")
    post = bot.emulator.calls_to("chat.postMessage")[0]
    bot.emulator.fail_next("*", n=100, status=503)
    for user in ("U0RM", "U0QA"):
        bot.click("vote_go", "1", user=user, channel=post.response["channel"], message_ts=post.response["ts"])
    assert release(db).state == "approved"
    with Session(db) as s:
        assert len(list(s.exec(select(Vote)))) == 2
    assert len(unsent(db)) == 3  # two message updates and the approval note
    bot.emulator.heal()
    seen = len(bot.emulator.calls)
    clock.advance(hours=1)
    assert bot.deliver() == 3
    kinds = [c.method for c in bot.emulator.calls[seen:]]
    assert kinds == ["chat.update", "chat.update", "chat.postMessage"]
    assert "approved" in bot.emulator.calls[-1].args["text"]


def test_refused_connection_is_retried(db, clock, policy, emulator):
    from conftest import start_bot
    dead = start_bot(db, clock, policy, emulator, {"SLACK_API_URL": "http://127.0.0.1:9/api/"})
    try:
        dead.command(LINE, user="U0DEV")
        [row] = unsent(db)
        assert row.attempts == 1 and row.last_error
    finally:
        dead.slack.close()
        dead.server.close()
    alive = start_bot(db, clock, policy, emulator)
    try:
        clock.advance(minutes=5)
        assert alive.deliver() == 1 and unsent(db) == []
    finally:
        alive.slack.close()
        alive.server.close()


def test_two_approvers_in_the_same_instant_give_one_approval_announcement(bot, db):
    bot.command(LINE, user="U0DEV")
    post = bot.emulator.calls_to("chat.postMessage")[0]
    barrier = threading.Barrier(4)

    def click(user):
        barrier.wait()
        bot.slack.block_action("vote_go", "1", user=user, channel=post.response["channel"],
                               message_ts=post.response["ts"])

    threads = [threading.Thread(target=click, args=(u,)) for u in ("U0RM", "U0QA", "U0RM", "U0QA")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bot.idle()
    bot.deliver()
    with Session(db) as s:
        votes = list(s.exec(select(Vote)))
    assert sorted(v.voter_id for v in votes) == ["U0QA", "U0RM"]
    notes = [c for c in bot.emulator.calls_to("chat.postMessage") if c.args.get("thread_ts")]
    assert len(notes) == 1 and "approved" in notes[0].args["text"]
    assert release(db).approval_seq == 1


def test_a_claimed_row_whose_sender_died_is_sent_after_its_lease(bot, db, clock):
    from storage import outbox
    bot.emulator.fail_next("chat.postMessage", status=503)
    bot.command(LINE, user="U0DEV")
    clock.advance(minutes=1)
    [claimed] = outbox.claim_due(db, clock.now())  # a process claims it and dies before sending
    assert bot.deliver() == 0  # still leased
    clock.advance(seconds=61)
    assert bot.deliver() == 1
    assert len([c for c in bot.emulator.calls_to("chat.postMessage") if c.ok]) == 1


def test_deleted_approval_message_is_posted_again(bot, db, clock):
    bot.command(LINE, user="U0DEV")
    first = bot.emulator.calls_to("chat.postMessage")[0]
    bot.emulator.messages.clear()  # someone deleted it in Slack
    bot.click("vote_go", "1", user="U0RM", channel=first.response["channel"], message_ts=first.response["ts"])
    posts = [c for c in bot.emulator.calls_to("chat.postMessage") if c.ok]
    assert len(posts) == 2 and unsent(db) == []
    assert release(db).message_ts == posts[1].response["ts"] != first.response["ts"]
