"""Acks whose inbox rows arrive while the write lock is waited for go together in one transaction
(storage.inbox_batch), each committed before put returns; a copy already claimed is that row's answer alone,
and a wait run out refuses each row in turn. Another connection holds SQLite's write lock for as long as the test says (held_locks),
and the queue is watched with GroupPut.wait_for: nothing here sleeps."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from held_locks import writer_holds_the_database
from storage import inbox, sqlite_lane
from storage.db import Busy
from storage.models import InboxRow, SeenDelivery
from storage.replay import Claimed
from conftest import START

WAIT = 10  # seconds: a safety net for the waits below, never a measure


def put(db, claim):
    return inbox.put(db, kind="go", body={"type": "block_actions", "n": claim}, context={}, now=START,
                     stream=None, claim=claim)


def transactions(db) -> list[str]:
    """The transactions begun from now on: the engine's by their unit, and the SQLite ack lane's as "ack"."""
    begun: list[str] = []
    event.listen(db, "begin", lambda conn: begun.append(conn.get_execution_options().get("releasebot_unit")))
    lane = sqlite_lane.lane(db)
    if lane is not None:
        lane.on_begin.append(lambda: begun.append("ack"))
    return begun


def rows(db):
    with Session(db) as s:
        return sorted(r.body["n"] for r in s.exec(select(InboxRow))), len(s.exec(select(SeenDelivery)).all())


if not os.environ.get("RELEASEBOT_TEST_DATABASE_URL"):
    # SQLite's write lock, held by the test, is what the rows queue for here. On PostgreSQL the row that
    # leads takes the queue once its transaction has begun (below: rows written, copies refused).
    def test_rows_that_arrive_while_the_lock_is_waited_for_go_in_one_transaction(db, db_url):
        group = inbox._group(db)
        begun = transactions(db)
        with ThreadPoolExecutor(4) as pool:
            with writer_holds_the_database(db_url):
                puts = [pool.submit(put, db, key) for key in ("a", "b", "c", "d")]
                assert group.wait_for(queued=4, timeout=WAIT)  # "a" waits for the lock; the others with it
            ids = [f.result(WAIT) for f in puts]
        assert len(set(ids)) == 4
        assert begun == ["ack"]
        assert rows(db) == (["a", "b", "c", "d"], 4)

    def test_a_copy_claimed_already_is_refused_alone_and_the_others_in_its_batch_are_written(db, db_url):
        group = inbox._group(db)
        put(db, "dup")
        with ThreadPoolExecutor(4) as pool:
            with writer_holds_the_database(db_url):
                first, copy, other = (pool.submit(put, db, key) for key in ("a", "dup", "b"))
                assert group.wait_for(queued=3, timeout=WAIT)
            first.result(WAIT), other.result(WAIT)
            with pytest.raises(Claimed):
                copy.result(WAIT)
        assert rows(db) == (["a", "b", "dup"], 3)

    def test_while_the_lock_is_held_past_the_wait_every_queued_row_is_busy_and_nothing_is_written(db, db_url):
        group = inbox._group(db)
        with ThreadPoolExecutor(4) as pool:
            with writer_holds_the_database(db_url):
                puts = [pool.submit(put, db, key) for key in ("a", "b", "c")]
                assert group.wait_for(queued=3, timeout=WAIT)
                for f in puts:  # the lock is still held: the oldest waited its second, then each next one
                    with pytest.raises(Busy):
                        f.result(WAIT)
        assert rows(db) == ([], 0)
        assert put(db, "b")  # nothing of it was kept: sent again, it is the first
        assert rows(db) == (["b"], 1)

    def test_one_row_alone_is_one_transaction_and_the_next_finds_nobody_writing(db):
        begun = transactions(db)
        put(db, "a")
        put(db, "b")
        assert begun == ["ack", "ack"] and rows(db) == (["a", "b"], 2)


def test_puts_at_once_each_write_their_row_and_claim(db):
    begun = transactions(db)
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda key: put(db, key), ["a", "b", "c", "d"]))
    begun = begun[:]  # before rows() reads
    assert len(set(ids)) == 4 and rows(db) == (["a", "b", "c", "d"], 4)
    if db.dialect.name == "sqlite":
        assert 1 <= len(begun) <= 4  # those that queued went together
    else:
        assert begun == []  # each its own statement on the ack lane (storage.ack_lane), none on the engine


def test_a_copy_is_claimed_already_and_writes_no_row(db):
    put(db, "a")
    with pytest.raises(Claimed):
        put(db, "a")
    assert rows(db) == (["a"], 1)
