"""PostgreSQL's ack lane (storage.ack_lane): an ack's claim and inbox row are one autocommit statement on
connections of its own, with the ack's timeouts as their settings, no pre-ping, and one more try on a fresh
connection when a pooled one was closed by the server. Defined only when the suite runs on PostgreSQL
(SQLite's acks take the write lock: tests/unit/test_inbox_batch.py)."""
from __future__ import annotations

import os

import pytest
from sqlalchemy import event, text
from sqlmodel import Session, select

from held_locks import writer_holds_the_database
from storage import ack_lane, inbox, replay
from storage.db import Busy, make_engine
from storage.models import InboxRow, SeenDelivery
from storage.replay import Claimed
from conftest import START


def put(db, claim, n=None):
    return inbox.put(db, kind="go", body={"type": "block_actions", "n": n or claim}, context={"c": 1}, now=START,
                     stream="user:U1", claim=claim)


def rows(db):
    with Session(db) as s:
        return ([(r.body["n"], r.context, r.stream, r.received_at)
                 for r in s.exec(select(InboxRow).order_by(InboxRow.id))],
                sorted(r.key for r in s.exec(select(SeenDelivery))))


def statements(engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: seen.append(statement))
    return seen


if os.environ.get("RELEASEBOT_TEST_DATABASE_URL"):
    def test_a_claim_and_its_row_are_one_statement_and_nothing_else_is_sent(db):
        lane = ack_lane.lane(db).engine
        sent, on_engine = statements(lane), statements(db)
        put(db, "a")
        assert len(sent) == 1 and sent[0].startswith("WITH claim AS (INSERT INTO seen_delivery")
        assert on_engine == []  # no pre-ping, BEGIN, SET or COMMIT on the app's own engine either
        assert rows(db) == ([("a", {"c": 1}, "user:U1", START)], ["a"])

    def test_a_copy_claimed_already_writes_no_row(db):
        put(db, "a")
        with pytest.raises(Claimed):
            put(db, "a", n="copy")
        assert rows(db)[0] == [("a", {"c": 1}, "user:U1", START)] and rows(db)[1] == ["a"]

    def test_a_row_without_a_claim_and_a_claim_without_a_row(db):
        assert put(db, None, n="lazy")
        assert replay.claim(db, "read", START) is True
        assert replay.claim(db, "read", START) is False
        assert [r[0] for r in rows(db)[0]] == ["lazy"] and rows(db)[1] == ["read"]

    def test_the_lanes_connections_carry_the_acks_timeouts_and_are_autocommit(db):
        with ack_lane.lane(db).engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "1s"
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "2s"
            assert conn.connection.dbapi_connection.autocommit is True

    def test_the_operators_own_connection_options_are_kept(db_url):
        engine = make_engine(db_url + "?options=-c%20application_name%3Dops-tool")
        try:
            with ack_lane.lane(engine).engine.connect() as conn:
                assert conn.exec_driver_sql("SHOW application_name").scalar() == "ops-tool"
                assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "1s"
        finally:
            engine.dispose()

    def test_a_writer_holding_the_tables_past_the_wait_is_busy_and_nothing_is_written(db, db_url):
        with writer_holds_the_database(db_url):
            with pytest.raises(Busy):
                put(db, "a")
        assert rows(db) == ([], [])
        assert put(db, "a")  # nothing of it was kept: sent again, it is the first

    def test_connections_the_server_closed_are_replaced_and_the_row_written_once(db):
        put(db, "a")  # a lane connection is open and pooled
        with db.connect() as conn:
            closed = conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                       "datname = current_database() AND pid <> pg_backend_pid()")).all()
        assert closed  # the server closed them (a restart, as the next ack finds it)
        put(db, "b")
        assert [r[0] for r in rows(db)[0]] == ["a", "b"] and rows(db)[1] == ["a", "b"]

    def test_the_lane_is_closed_with_its_engine(db_url):
        engine = make_engine(db_url)
        lane = ack_lane.lane(engine).engine
        put(engine, "a")
        assert lane.pool.checkedin() == 1
        engine.dispose()
        assert lane.pool.checkedin() == 0
