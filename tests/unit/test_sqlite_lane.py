"""SQLite's ack lane (storage.sqlite_lane): an ack's claim and inbox row on connections of its own, with no
SQLAlchemy in between, stored exactly as SQLAlchemy's inserts store them, behind the engine's write gate,
Busy past the ack's wait, and closed with the engine. Defined only when the suite runs on SQLite
(PostgreSQL's acks are one statement: tests/unit/test_ack_lane.py)."""
from __future__ import annotations

import os
import sqlite3
import threading
from datetime import timezone

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel, select

from held_locks import writer_holds_the_database
from storage import inbox, replay, sqlite_lane
from storage.db import Busy, gate_of, make_engine, normalise_url
from storage.models import InboxRow, SeenDelivery
from storage.replay import Claimed
from conftest import START

WAIT = 10  # seconds: a safety net for the waits below, never a measure


def raw_rows(db_url, table):
    """The stored values as SQLite holds them (text, as written), not as SQLAlchemy reads them back."""
    con = sqlite3.connect(make_url(normalise_url(db_url)).database)
    try:
        return con.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
    finally:
        con.close()


if not os.environ.get("RELEASEBOT_TEST_DATABASE_URL"):
    def test_a_row_and_a_claim_are_stored_exactly_as_sqlalchemys_inserts_store_them(db, db_url):
        body = {"type": "block_actions", "text": "é <!channel> \u2028", "n": [1, 2.5, None, True]}
        values = dict(kind="go", stream="user:U1", body=body, context={"outcome": {"a": 1}}, received_at=START,
                      attempts=0)
        with sqlite_lane.lane(db).writing() as writer:
            assert writer.claim("action:lane", START.astimezone(timezone.utc))
            lane_id = writer.insert(values)
        with db.begin() as conn:
            core_id = conn.execute(insert(InboxRow.__table__), values).inserted_primary_key[0]
            conn.execute(insert(SeenDelivery.__table__), {"key": "action:core", "seen_at": START})
        lane_row, core_row = raw_rows(db_url, "inbox")
        assert lane_row[0] == lane_id and core_row[0] == core_id
        assert lane_row[1:] == core_row[1:]
        (lane_key, lane_at), (core_key, core_at) = raw_rows(db_url, "seen_delivery")
        assert (lane_key, core_key) == ("action:lane", "action:core") and lane_at == core_at
        with Session(db) as s:
            assert s.get(InboxRow, lane_id).body == body and s.get(InboxRow, lane_id).received_at == START

    def test_a_copy_claimed_already_is_told_so_and_writes_nothing(db, db_url):
        assert replay.claim(db, "command:once", START)
        assert not replay.claim(db, "command:once", START)
        assert [key for key, _ in raw_rows(db_url, "seen_delivery")] == ["command:once"]

    def test_while_another_connection_holds_the_lock_past_the_wait_it_is_busy_and_nothing_is_written(db, db_url):
        with writer_holds_the_database(db_url):
            with pytest.raises(Busy):
                replay.claim(db, "command:held", START, wait=0.05)
            with pytest.raises(Busy):
                inbox.put(db, kind="go", body={}, context={}, now=START, claim="command:held")
        assert raw_rows(db_url, "seen_delivery") == [] and raw_rows(db_url, "inbox") == []
        assert replay.claim(db, "command:held", START)  # the lane's connection is usable again

    def test_an_ack_waits_at_the_gate_for_this_processs_writer_and_goes_in_after_it(db, db_url):
        gate, holder = gate_of(db), object()
        assert gate.enter(holder, ack=False, timeout=WAIT)
        claimed = []
        ack = threading.Thread(target=lambda: claimed.append(replay.claim(db, "command:gated", START)))
        ack.start()
        assert gate.wait_for_waiting(1, WAIT)
        assert raw_rows(db_url, "seen_delivery") == []  # not beside the writer that holds the gate
        gate.leave(holder)
        ack.join(WAIT)
        assert claimed == [True]

    def test_a_failed_transaction_is_rolled_back_and_its_connection_not_reused(db, db_url):
        lane = sqlite_lane.lane(db)
        with pytest.raises(sqlite3.IntegrityError):
            with lane.writing() as writer:
                writer.claim("command:kept-out", START)
                writer.insert({"kind": None, "body": {}, "context": {}, "received_at": START})  # kind NOT NULL
        assert raw_rows(db_url, "seen_delivery") == []
        assert lane._free == []
        assert replay.claim(db, "command:after", START)

    def test_the_lanes_connections_close_with_the_engine(db_url):
        engine = make_engine(db_url)
        lane = sqlite_lane.lane(engine)
        assert replay.claim(engine, "command:closing", START)
        (conn,) = lane._free
        engine.dispose()
        assert lane._free == []
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")

    def test_a_database_in_memory_has_no_lane_and_its_acks_go_through_the_engine():
        engine = make_engine("sqlite://")
        SQLModel.metadata.create_all(engine)
        assert sqlite_lane.lane(engine) is None
        row_id = inbox.put(engine, kind="go", body={"n": 1}, context={}, now=START, claim="command:memory")
        with pytest.raises(Claimed):
            inbox.put(engine, kind="go", body={"n": 2}, context={}, now=START, claim="command:memory")
        with Session(engine) as s:
            assert [r.id for r in s.exec(select(InboxRow))] == [row_id]
