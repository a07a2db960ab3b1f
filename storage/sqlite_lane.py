"""SQLite: an ack's rows on connections kept for acks, with nothing between them and sqlite3.

An ack's inbox row (and its replay claim) took 0.9 ms of CPU on SQLite, two thirds
of the whole ack, and almost none of it was SQLite's: the pool's checkout and
checkin, the write gate's BEGIN event, two PRAGMA busy_timeout per transaction to
set the ack's short wait and put the long one back, a PRAGMA query_only on the way
back, and SQLAlchemy's execution context around each of the two inserts. Under a
burst of 64 that is the CPU the other acks wait for (ack_burst.py, ack_cpu.py).

Here each connection is opened for acks and stays one: its busy timeout is the
few milliseconds one BEGIN IMMEDIATE waits inside SQLite (storage.db's slices, so
the ack's deadline is kept by the loop, as before), and it is never used for
anything else, so nothing is set per ack and nothing is undone. The statements are
plain strings and the values go through the same bind processors SQLAlchemy's
inserts use, so the rows are stored exactly as before. The write gate
(storage.db.WriteGate) is the engine's own: an ack here still goes before the
process's waiting after-ack work, and after a writer of it, never beside one.
"""
from __future__ import annotations

import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Callable, Iterator, Optional

from sqlalchemy import event
from sqlalchemy.engine import Engine

from storage.db import ACK_WAIT, SLICE_MS, Busy, WriteGate, ack_rows, began_immediate, gate_of, sqlite_settings
from storage.models import InboxRow, SeenDelivery

_INBOX = ("kind", "stream", "body", "context", "received_at", "attempts")
CLAIM = "INSERT INTO seen_delivery (key, seen_at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING RETURNING key"
ROW = f"INSERT INTO inbox ({', '.join(_INBOX)}) VALUES ({', '.join('?' * len(_INBOX))})"


class Writer:
    """The statements of one ack-lane transaction."""

    def __init__(self, conn: sqlite3.Connection, encode: dict[str, Callable[[Any], Any]]):
        self._conn, self._encode = conn, encode

    def claim(self, key: str, now: datetime) -> bool:
        """True if this inserted the claim, False (nothing written) if it was taken already."""
        return self._conn.execute(CLAIM, (key, self._encode["seen_at"](now))).fetchone() is not None

    def insert(self, values: dict[str, Any]) -> int:
        enc = self._encode
        return self._conn.execute(ROW, [enc[c](values.get(c, 0 if c == "attempts" else None))
                                        for c in _INBOX]).lastrowid


class Lane:
    """One SQLite file's connections for acks: opened as acks need them and kept (one per thread that acks)."""

    def __init__(self, engine: Engine, path: str, gate: WriteGate):
        self._path, self._gate = path, gate
        self._free: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._generation = 0  # bumped when the engine is disposed: connections out then are closed on return
        self.on_begin: list[Callable[[], None]] = []  # for tests: told of each transaction the lane begins
        self._encode = encoders(engine)

    @contextmanager
    def writing(self, wait: float = ACK_WAIT) -> Iterator[Writer]:
        """One transaction, begun within about `wait` seconds (at most ACK_WAIT) or Busy with nothing
        written; committed when the block ends, rolled back if it raises."""
        deadline = time.monotonic() + min(wait, ACK_WAIT)
        conn, generation = self._take()
        healthy = entered = False
        try:
            if not self._gate.enter(conn, ack=True, timeout=max(0.0, deadline - time.monotonic())):
                raise Busy("another write of this process held the database past the ack's wait")
            entered = True
            _begin_immediate(conn, deadline)
            for told in self.on_begin:
                told()
            try:
                yield Writer(conn, self._encode)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            healthy = True
        except Busy:
            healthy = True  # nothing was begun: the connection is as it was
            raise
        finally:
            if entered:
                self._gate.leave(conn)
            self._give(conn, generation, healthy)

    def close(self) -> None:
        with self._lock:
            free, self._free = self._free, []
            self._generation += 1
        for conn in free:
            conn.close()

    def _take(self) -> tuple[sqlite3.Connection, int]:
        with self._lock:
            generation = self._generation
            if self._free:
                return self._free.pop(), generation
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=SLICE_MS / 1000)
        sqlite_settings(conn, busy_ms=SLICE_MS)
        return conn, generation

    def _give(self, conn: sqlite3.Connection, generation: int, healthy: bool) -> None:
        with self._lock:
            if healthy and generation == self._generation:
                self._free.append(conn)
                return
        conn.close()  # a failed statement or rollback may have left it mid-transaction; or its engine is gone


def _begin_immediate(conn: sqlite3.Connection, deadline: float) -> None:
    """BEGIN IMMEDIATE, tried again at once after each of SQLite's short waits (SLICE_MS: it misses no free
    moment of a lock another process holds), until `deadline`; Busy then. At least one try."""
    while not began_immediate(conn):
        if time.monotonic() >= deadline:
            raise Busy("the database was locked past the ack's wait")


def encoders(engine: Engine) -> dict[str, Callable[[Any], Any]]:
    """The inbox's and the replay claims' columns, each as SQLAlchemy binds it on this engine."""
    return {name: _processor(col.type, engine.dialect) for name, col in
            [*InboxRow.__table__.c.items(), *SeenDelivery.__table__.c.items()]}


def _processor(type_, dialect) -> Callable[[Any], Any]:
    process = type_.dialect_impl(dialect).bind_processor(dialect)  # the dialect's type, as SQLAlchemy binds it
    return process if process is not None else (lambda value: value)


_lanes: "weakref.WeakKeyDictionary[Engine, Optional[Lane]]" = weakref.WeakKeyDictionary()
_lanes_lock = threading.Lock()


def lane(engine: Engine) -> Optional[Lane]:
    """`engine`'s ack lane, made on first use; None for a database with no file (in memory: a connection
    of its own would be another database), where acks go through the engine's pool."""
    with _lanes_lock:
        if engine in _lanes:
            return _lanes[engine]
        path, gate = engine.url.database, gate_of(engine)
        found = None
        if path not in (None, "", ":memory:") and gate is not None:
            found = Lane(engine, path, gate)
            # The lane's connections close with the engine's (a test's scratch file is then free to delete).
            event.listen(engine, "engine_disposed", lambda _engine, found=found: found.close())
        _lanes[engine] = found
        return found


@contextmanager
def writing(engine: Engine, wait: float = ACK_WAIT) -> Iterator[Writer]:
    """An ack's transaction for its claim and rows: on `engine`'s lane, or for a database in memory on the
    engine's own connection (storage.db.ack_rows), with the same statements. Busy as Lane.writing."""
    found = lane(engine)
    if found is not None:
        with found.writing(wait) as writer:
            yield writer
        return
    with ack_rows(engine, wait) as conn:
        yield Writer(conn.connection.dbapi_connection, encoders(engine))
