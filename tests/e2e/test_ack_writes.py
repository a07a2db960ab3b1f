"""The ack path of a command or click writes once: its replay claim and its inbox row are one transaction
(one BEGIN IMMEDIATE on SQLite), and a copy racing the first meets it at the claim and writes nothing."""
from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from slack_client import Recorder
from storage import replay as seen
from storage.models import InboxRow, Release, SeenDelivery

LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-01 14:00" tz=Europe/London '
        'duration=60m summary="Add refunds"')


@contextmanager
def ack_writes(db):
    """Counts the transactions that ran as ack-path writes (storage.db.ack_write) while inside."""
    begun: list[str] = []

    def on_begin(conn):
        if conn.get_execution_options().get("releasebot_unit") == "ack":
            begun.append("ack")

    event.listen(db, "begin", on_begin)
    try:
        yield begun
    finally:
        event.remove(db, "begin", on_begin)


def count(db, model) -> int:
    with Session(db) as s:
        return len(s.exec(select(model)).all())


def test_a_typed_request_and_a_go_click_each_take_the_write_lock_once_before_their_ack(bot, db):
    with ack_writes(db) as begun:
        assert bot.command(LINE, user="U0DEV").status_code == 200
    assert begun == ["ack"]
    assert count(db, Release) == 1 and count(db, SeenDelivery) == 1 and count(db, InboxRow) == 1

    post = bot.emulator.calls_to("chat.postMessage")[0]
    with ack_writes(db) as begun:
        bot.click("vote_go", "1", user="U0QA", channel=post.response["channel"], message_ts=post.response["ts"])
    assert begun == ["ack"]
    assert count(db, SeenDelivery) == 2 and count(db, InboxRow) == 2


@pytest.fixture
def racing(monkeypatch):
    """As if a copy of each delivery had looked before the first one's claim committed."""
    monkeypatch.setattr(seen, "seen_already", lambda db, key: False)


def test_a_copy_racing_the_first_is_already_done_and_writes_nothing(bot, db, racing):
    wire = Recorder(bot.slack)
    bot.command(LINE, user="U0DEV")
    again = wire.replay(bot, -1)
    assert again.status_code == 200
    assert "already done" in again.json()["text"].lower()
    assert count(db, Release) == 1 and count(db, InboxRow) == 1 and count(db, SeenDelivery) == 1


def test_slacks_retry_racing_the_first_is_dropped_without_an_answer(bot, db, racing):
    wire = Recorder(bot.slack)
    bot.command(LINE, user="U0DEV")
    again = wire.replay(bot, -1, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert again.status_code == 200 and again.text == ""
    assert count(db, Release) == 1 and count(db, InboxRow) == 1
