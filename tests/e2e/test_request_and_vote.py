"""A release from /release request to approval, driven only through signed HTTP and the emulator."""
from __future__ import annotations

from sqlmodel import Session, select

from storage.models import AuditEvent, Release, Vote

LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-01 14:00" tz=Europe/London '
        'duration=60m summary="Add refunds"')


def releases(db) -> list[Release]:
    with Session(db) as s:
        return list(s.exec(select(Release).order_by(Release.id)))


def actions(db, release_id=1) -> list[str]:
    with Session(db) as s:
        return [e.action for e in s.exec(select(AuditEvent).where(AuditEvent.release_id == release_id)
                                         .order_by(AuditEvent.id))]


def click(bot, action_id, user, release_id=1):
    post = bot.emulator.calls_to("chat.postMessage")[0]
    return bot.click(action_id, str(release_id), user=user, channel=post.response["channel"],
                     message_ts=post.response["ts"])


def ephemerals(bot, user):
    return bot.emulator.said_to(user)


def test_one_line_request_creates_release_and_posts_approval_message(bot, db):
    r = bot.command(LINE, user="U0DEV")
    assert r.status_code == 200
    [post] = bot.emulator.calls_to("chat.postMessage")
    [rel] = releases(db)
    assert rel.ref == "REL-1" and rel.state == "pending"
    assert rel.required_roles == {"release_manager": 1, "qa_lead": 1}
    assert post.args["channel"] == "C0RELEASES"
    buttons = [e for b in post.args["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [b["text"]["text"] for b in buttons] == ["Go", "No-go", "Record test result"]  # evidence: QMS 4.3
    shown = str(post.args["blocks"])
    assert "release_manager" in shown and "qa_lead" in shown and "payments" in shown
    [reply] = bot.emulator.calls_to("response_url")
    assert "REL-1" in reply.args["text"]
    assert rel.message_ts == post.response["ts"] and rel.channel_id == post.response["channel"]
    assert actions(db) == ["requested"]


def test_votes_update_message_in_place_and_approval_is_announced_once(bot, db):
    bot.command(LINE, user="U0DEV")
    click(bot, "vote_go", "U0RM")
    click(bot, "vote_go", "U0QA")
    updates = bot.emulator.calls_to("chat.update")
    posts = bot.emulator.calls_to("chat.postMessage")
    assert len(updates) == 2 and all(u.args["ts"] == posts[0].response["ts"] for u in updates)
    thread = [c for c in posts if c.args.get("thread_ts")]
    assert len(thread) == 1 and "approved" in thread[0].args["text"]
    assert thread[0].args["thread_ts"] == posts[0].response["ts"]
    assert releases(db)[0].state == "approved"
    # a double click and a retried delivery change nothing and announce nothing
    click(bot, "vote_go", "U0QA")
    bot.slack.block_action("vote_go", "1", user="U0QA", retry_num=1)
    bot.idle()
    assert "already recorded" in ephemerals(bot, "U0QA")[-1]
    assert bot.deliver() == 0
    assert len(bot.emulator.calls_to("chat.postMessage")) == 2
    with Session(db) as s:
        assert len(list(s.exec(select(Vote)))) == 2
    assert actions(db) == ["requested", "vote_go", "vote_go", "approved"]
