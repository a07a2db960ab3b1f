"""The inbox rows of acks that arrive together are written in one transaction (group commit).

SQLite has one writer at a time. Under a burst every ack's row took its own
BEGIN IMMEDIATE and commit, one after the other, and while another process held
the lock (50 ms of every 60 in ack_burst.py's contention scenario) only four to
eight acks got in each time it was let go: that process's next try found the lock
free between two of them. Here the rows of acks that arrive while the lock is
being waited for go together: the first of them waits at the write gate (as an ack,
so after-ack work waiting there goes after it) and, once it holds the lock, takes
every row queued by then. One BEGIN IMMEDIATE, one commit, each row committed
before its ack is answered, as before. The transaction is the ack lane's
(storage.sqlite_lane: sqlite3 connections kept for acks, no SQLAlchemy between),
or the engine's own for a database in memory. SQLite's alone: on PostgreSQL an ack's
rows are one autocommit statement that waits for no other writer
(storage.ack_lane), so there is nothing to share.

Each row's claim (storage.replay) is an INSERT … ON CONFLICT DO NOTHING, so a copy
of a delivery claimed already is told so (Claimed) without spoiling the others'
transaction. No row waits longer than its own ACK_WAIT for the lock: the one that
waits is the oldest, and when its wait runs out the next oldest waits on.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from sqlalchemy.engine import Engine

from storage import sqlite_lane
from storage.db import ACK_WAIT, Busy
from storage.replay import Claimed


class _Row:
    __slots__ = ("values", "claim", "now", "deadline", "done", "lead", "row_id", "error")

    def __init__(self, values: dict[str, Any], claim: Optional[str], now, deadline: float):
        self.values, self.claim, self.now, self.deadline = values, claim, now, deadline
        self.done = threading.Event()  # set when written (or refused), or when this row's thread is to lead
        self.lead = False
        self.row_id: Optional[int] = None
        self.error: Optional[BaseException] = None


class GroupPut:
    """One engine's queue of inbox rows waiting for a transaction, and the row whose thread begins it."""

    def __init__(self, engine: Engine, put_one: Callable[[dict[str, Any], Optional[str], Any], int]):
        self._engine, self._put_one = engine, put_one
        self._changed = threading.Condition()
        self._queue: list[_Row] = []
        self._leader: Optional[_Row] = None  # the queued row whose thread waits for the lock for them all

    def put(self, values: dict[str, Any], claim: Optional[str], now, wait: float = ACK_WAIT) -> int:
        row = _Row(values, claim, now, time.monotonic() + min(wait, ACK_WAIT))
        with self._changed:
            self._queue.append(row)
            if self._leader is None:
                self._leader, row.lead = row, True
            self._changed.notify_all()
        while True:
            if row.lead:
                self._lead(row)
            row.done.wait()  # always set: written (or refused) with a batch, or to wait for the lock itself
            if not row.lead:
                break
        if row.error is not None:
            raise row.error
        return row.row_id

    def wait_for(self, *, queued: int, timeout: float) -> bool:
        """Until `queued` rows wait for the lock (tests must not guess with sleeps)."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._queue) == queued, timeout)

    def _lead(self, row: _Row) -> None:
        row.done.clear()
        batch: list[_Row] = []
        try:
            with sqlite_lane.writing(self._engine, max(0.0, row.deadline - time.monotonic())) as writer:
                with self._changed:  # the lock is held: every row queued by now goes in this transaction
                    batch, self._queue, self._leader = self._queue, [], None
                    for queued in batch:
                        queued.lead = False
                    self._changed.notify_all()
                self._write(writer, batch)
        except BaseException as exc:  # noqa: BLE001 - each row is answered (raised) on its own thread
            if not batch:
                self._hand_on(row, exc)
            elif isinstance(exc, Busy):
                for queued in batch:
                    queued.error, queued.row_id = Busy(str(exc)), None
            else:
                self._each_alone(batch)
        finally:
            for queued in batch:
                queued.done.set()

    def _hand_on(self, row: _Row, exc: BaseException) -> None:
        """The lock was not had (Busy, or the database failed): this row is refused, the next oldest waits."""
        with self._changed:
            self._queue.remove(row)
            row.lead, row.error = False, exc
            self._leader = self._queue[0] if self._queue else None
            if self._leader is not None:
                self._leader.lead = True
                self._leader.done.set()
            self._changed.notify_all()
        row.done.set()

    def _write(self, writer: sqlite_lane.Writer, batch: list[_Row]) -> None:
        for row in batch:
            if row.claim is not None and not writer.claim(row.claim, row.now):
                row.error = Claimed(row.claim)
                continue
            row.row_id = writer.insert(row.values)

    def _each_alone(self, batch: list[_Row]) -> None:
        """One row's failure (rolled back with the batch) must not become the others': each is tried alone."""
        for row in batch:
            row.error, row.row_id = None, None
            try:
                row.row_id = self._put_one(row.values, row.claim, row.now)
            except Exception as exc:  # noqa: BLE001 - handed to that row's own thread, which raises it
                row.error = exc
