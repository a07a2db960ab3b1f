"""The ack path of a command or click writes once and reads nothing: its replay claim and its inbox row are
one transaction (one BEGIN IMMEDIATE on SQLite), and a copy of it meets the first at the claim and writes
nothing. Only when that write finds the database busy does the ack look whether a copy was done already."""
from __future__ import annotations

import threading
from contextlib import contextmanager

from sqlalchemy import event
from sqlmodel import Session, select

from bot.replay import BUSY
from held_locks import writer_holds_the_database
from slack_client import Recorder
from storage import ack_lane, sqlite_lane
from storage.models import InboxRow, Release, SeenDelivery

LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-01 14:00" tz=Europe/London '
        'duration=60m summary="Add refunds"')


@contextmanager
def ack_writes(db):
    """The transactions begun on the HTTP threads (the ack path) while inside: "ack" for an ack-path write
    (storage.db.ack_write; on SQLite a transaction of its ack lane, storage.sqlite_lane; on PostgreSQL one
    statement on the ack lane: storage.ack_lane, autocommit),
    "read" for a read, "write" for any other."""
    begun: list[str] = []

    def on_begin(conn):
        if threading.current_thread().name.startswith("waitress"):
            begun.append(conn.get_execution_options().get("releasebot_unit", "write"))

    def on_lane(*_args):
        if threading.current_thread().name.startswith("waitress"):
            begun.append("ack")

    lane = ack_lane.lane(db).engine if db.dialect.name == "postgresql" else None
    sqlite = sqlite_lane.lane(db) if lane is None else None
    event.listen(db, "begin", on_begin)
    if lane is not None:
        event.listen(lane, "before_cursor_execute", on_lane)
    if sqlite is not None:
        sqlite.on_begin.append(on_lane)
    try:
        yield begun
    finally:
        event.remove(db, "begin", on_begin)
        if lane is not None:
            event.remove(lane, "before_cursor_execute", on_lane)
        if sqlite is not None:
            sqlite.on_begin.remove(on_lane)


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


def test_a_copy_of_a_command_is_already_done_and_writes_nothing(bot, db):
    wire = Recorder(bot.slack)
    bot.command(LINE, user="U0DEV")
    again = wire.replay(bot, -1)
    assert again.status_code == 200
    assert "already done" in again.json()["text"].lower()
    assert count(db, Release) == 1 and count(db, InboxRow) == 1 and count(db, SeenDelivery) == 1


def test_slacks_retry_of_a_command_is_dropped_without_an_answer(bot, db):
    wire = Recorder(bot.slack)
    bot.command(LINE, user="U0DEV")
    again = wire.replay(bot, -1, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert again.status_code == 200 and again.text == ""
    assert count(db, Release) == 1 and count(db, InboxRow) == 1


def test_a_copy_sent_while_a_writer_holds_the_database_is_already_done_not_busy(bot, db, db_url):
    wire = Recorder(bot.slack)
    bot.command(LINE, user="U0DEV")
    with writer_holds_the_database(db_url):
        with ack_writes(db) as begun:
            again = wire.replay(bot, -1)
        retried = wire.replay(bot, -1, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    # the claim waited its second (SQLite's BEGIN IMMEDIATE is what waits, so its begin is not counted; on
    # PostgreSQL the insert waits), then one look found the first's claim
    assert begun in (["read"], ["ack", "read"])
    assert "already done" in again.json()["text"].lower()
    assert retried.status_code == 200 and retried.text == ""
    assert count(db, Release) == 1 and count(db, InboxRow) == 1 and count(db, SeenDelivery) == 1


def test_a_first_delivery_sent_while_a_writer_holds_the_database_is_still_told_busy(bot, db, db_url):
    with writer_holds_the_database(db_url):
        r = bot.command(LINE, user="U0DEV")
    assert r.json()["text"] == BUSY
    assert count(db, Release) == 0 and count(db, InboxRow) == 0 and count(db, SeenDelivery) == 0


def test_the_command_line_is_parsed_once_before_the_ack(bot, monkeypatch):
    from bot.listeners import common
    parsed, parse = [], common.parse_command

    def counting(text):
        parsed.append(threading.current_thread().name)
        return parse(text)

    monkeypatch.setattr(common, "parse_command", counting)
    assert bot.command(LINE, user="U0DEV").status_code == 200
    assert len([name for name in parsed if name.startswith("waitress")]) == 1  # the guard's, kept for the ack half
