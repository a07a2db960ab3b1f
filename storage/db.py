"""Engine and transactions.

SQLite is the embedded default: WAL, so readers never wait for the writer. A
transaction that writes starts with BEGIN IMMEDIATE, so two writers serialise
at the start instead of failing at commit with "database is locked"; one that
only reads (`read`) is a plain deferred BEGIN and takes no write lock at all.
PostgreSQL is used when several bot processes share one database; there, rows
that must be decided one at a time are taken with SELECT … FOR UPDATE, and a
read is a READ ONLY transaction.

How long a transaction waits for a lock depends on who is waiting. Work after
Slack's ack waits as long as it takes (LONG_WAIT). A write before the ack
(`ack_write`: a replay claim, a form that must stay open to show errors) waits
about ACK_WAIT and then raises Busy, having written nothing, so the person is
told "busy, try again" inside Slack's three seconds instead of after thirty.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
import logging
import weakref
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from storage import scan

DEFAULT_URL = "sqlite:///releasebot.db"
LONG_WAIT = 30.0  # seconds: after-ack work, the scheduler, the CLI
ACK_WAIT = 1.0  # seconds: a write that runs before the ack (Slack allows three in all)
ACK_STATEMENT = "2s"  # PostgreSQL: no single statement of an ack-path write runs longer

_UNIT = "releasebot_unit"  # connection execution option: "write" (default), "read" or "ack"
_WAIT_MS = "releasebot_wait_ms"  # connection execution option: an "ack" unit's lock wait
_RESET = "releasebot_reset"  # connection info flag: undo this unit's settings when the connection goes back
SLICE_MS = 5  # one BEGIN IMMEDIATE's wait inside SQLite while another process holds its write lock
_BUSY_SQLSTATES = {"55P03", "57014"}  # lock_not_available, query_canceled (statement_timeout)


log = logging.getLogger(__name__)


class Busy(Exception):
    """The lock could not be had within an ack-path write's short wait; nothing was written."""


class WriteGate:
    """SQLite's writers in this process, one at a time, acks first.

    SQLite lets one connection write at a time, and one that finds the lock taken polls for it, sleeping
    longer each time (up to 100 ms between tries). Under a burst, an ack's one-row insert then lost the lock
    to after-ack work again and again, and slept in between. Inside one process the writers queue here
    instead: a writer that ends wakes the next one at once, and a waiting ack goes before any waiting
    after-ack work. Another process's writers still meet at SQLite's lock (_begin_immediate)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holder: object | None = None
        self._acks_waiting = 0
        self.waiting = 0  # writers waiting to enter, acks or not

    def enter(self, dbapi_conn, *, ack: bool, timeout: float) -> bool:
        with self._cond:
            if self._holder is dbapi_conn:
                return True  # a second transaction on the connection that holds it (the CLI, migrations)
            if ack:
                self._acks_waiting += 1
            self.waiting += 1
            self._cond.notify_all()
            try:
                ready = (lambda: self._holder is None) if ack else (
                    lambda: self._holder is None and self._acks_waiting == 0)
                if not self._cond.wait_for(ready, timeout):
                    return False
                self._holder = dbapi_conn
                return True
            finally:
                self.waiting -= 1
                if ack:
                    self._acks_waiting -= 1

    def step_aside(self, dbapi_conn, timeout: float) -> bool:
        """The holder, not an ack and still waiting for SQLite's lock, lets the acks waiting now go first and
        enters again after them (False: not within `timeout`)."""
        with self._cond:
            if not self._acks_waiting or self._holder is not dbapi_conn:
                return True
            self._holder = None
            self._cond.notify_all()
        return self.enter(dbapi_conn, ack=False, timeout=timeout)

    def wait_for_waiting(self, n: int, timeout: float) -> bool:
        """Until `n` writers wait to enter (for tests, which must not guess with sleeps)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.waiting >= n, timeout)

    def leave(self, dbapi_conn) -> None:
        with self._cond:
            if self._holder is dbapi_conn and dbapi_conn is not None:
                self._holder = None
                self._cond.notify_all()


def _begin_immediate(conn, deadline: float, then_wait_ms: int, gate: WriteGate | None = None) -> None:
    """BEGIN IMMEDIATE, tried every millisecond or two until `deadline` while another process holds the lock.

    SQLite's own busy wait sleeps longer each time (up to 100 ms between tries) and misses a lock that is
    free for 10 ms, so each try waits only SLICE_MS inside SQLite (its tries at 1, 3 and 5 ms) and the
    next begins at once. Those tries run in SQLite, without the interpreter's lock: when this thread slept
    in Python between tries instead (1 ms each), it needed the interpreter back after every one, and under
    a burst it did not get it for tens of milliseconds while the lock was there to be had.

    `gate`: this is after-ack work holding the write gate; while it waits for the lock, acks that come to the
    gate go first (an ack that waited behind it missed the lock's next free moment, and then the work's own
    transaction, 20 ms of it under a burst)."""
    raw = conn.connection.dbapi_connection
    raw.execute(f"PRAGMA busy_timeout={SLICE_MS}")
    try:
        while time.monotonic() < deadline:
            if began_immediate(raw):
                return
            if gate is not None and not gate.step_aside(raw, deadline - time.monotonic()):
                log.warning("a write waited past its deadline for this process's acks; trying the lock itself")
                gate = None
        raw.execute("PRAGMA busy_timeout=0")
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the last try: raises SQLAlchemy's OperationalError, as before
    finally:
        raw.execute(f"PRAGMA busy_timeout={then_wait_ms}")


def began_immediate(raw: sqlite3.Connection) -> bool:
    """One BEGIN IMMEDIATE, waiting inside SQLite as long as the connection's busy timeout: False when
    another connection held the write lock all that time."""
    try:
        raw.execute("BEGIN IMMEDIATE")
        return True
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise
        return False


def sqlite_settings(dbapi_conn: sqlite3.Connection, *, busy_ms: int) -> None:
    """Every SQLite connection's, the engine's and the ack lane's (storage.sqlite_lane)."""
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={busy_ms}")
    cur.close()


_gates: "weakref.WeakKeyDictionary[Engine, WriteGate]" = weakref.WeakKeyDictionary()


def gate_of(engine: Engine) -> WriteGate | None:
    """A SQLite engine's write gate (None for PostgreSQL's, which has none)."""
    return _gates.get(engine)


def canonical_json(value) -> str:
    """How every JSON column is written: compact (no whitespace), non-ASCII as itself, keys in the order
    given (the order means something: an approver set's roles). The audit chain hashes the stored text as
    it is (storage/audit_chain.py), so one value has one spelling. A lone surrogate (a delivery's payload
    may carry one; the listener then refuses it) has no UTF-8 form: that value is written with \\u escapes."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"))
    return text


def normalise_url(url: str) -> str:
    # Heroku-style and bare postgresql:// URLs mean psycopg 3, the driver we ship.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def make_engine(url: str = DEFAULT_URL, *, pool_size: int = 10) -> Engine:
    """`pool_size`: the connections kept open (bot.config's RELEASEBOT_DB_POOL when serving), and as many
    again under a burst. A thread that finds none free waits for one, whoever holds it; the bot sizes it
    so that acks do not: some after-ack work holds two at once (a read inside its transaction)."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        pooled = {} if parsed.database in (None, "", ":memory:") else {"pool_size": pool_size, "max_overflow": pool_size}
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": LONG_WAIT},
                               json_serializer=canonical_json, **pooled)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            sqlite_settings(dbapi_conn, busy_ms=int(LONG_WAIT * 1000))

        gate = _gates[engine] = WriteGate()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            options = conn.get_execution_options()
            unit = options.get(_UNIT, "write")
            if unit == "read":
                conn.info[_RESET] = True
                conn.exec_driver_sql("BEGIN")  # deferred: a WAL snapshot, no write lock
                conn.exec_driver_sql("PRAGMA query_only=ON")
                return
            wait = options[_WAIT_MS] / 1000 if unit == "ack" else LONG_WAIT
            deadline = time.monotonic() + wait
            if not gate.enter(conn.connection.dbapi_connection, ack=unit == "ack", timeout=wait):
                if unit == "ack":
                    raise Busy("another write of this process held the database past the ack's wait")
                log.warning("a write waited %.0f s for this process's other writers; trying the lock itself", wait)
            if unit == "ack":
                conn.info[_RESET] = True  # its statements, too, wait only briefly
            _begin_immediate(conn, deadline, int(wait * 1000), gate=None if unit == "ack" else gate)

        @event.listens_for(engine, "checkin")
        def _on_checkin(dbapi_conn, record):
            # After its commit or rollback: the next writer of this process may begin.
            gate.leave(dbapi_conn)
            # A pooled connection goes back as a writer with the long wait, whatever its last unit was.
            if dbapi_conn is not None and record.info.pop(_RESET, False):
                dbapi_conn.execute("PRAGMA query_only=OFF")
                dbapi_conn.execute(f"PRAGMA busy_timeout={int(LONG_WAIT * 1000)}")

        @event.listens_for(engine, "invalidate")
        def _on_invalidate(dbapi_conn, _record, _exc):
            gate.leave(dbapi_conn)  # its checkin will not name it

        return engine
    engine = create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size,
                           json_serializer=canonical_json)
    event.listen(engine, "before_cursor_execute", scan.binary_results())

    @event.listens_for(engine, "begin")
    def _on_begin_pg(conn):
        # SET TRANSACTION / SET LOCAL last as long as the transaction: nothing to undo afterwards.
        unit = conn.get_execution_options().get(_UNIT, "write")
        if unit == "read":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        elif unit == "ack":
            wait_ms = max(1, int(conn.get_execution_options()[_WAIT_MS]))  # 0 would mean no limit
            # SET LOCAL both, in one round trip (set_config's third argument: for this transaction only)
            conn.exec_driver_sql(f"SELECT set_config('lock_timeout', '{wait_ms}ms', true), "
                                 f"set_config('statement_timeout', '{ACK_STATEMENT}', true)")

    return engine


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: everything inside commits together or not at all."""
    with Session(engine, expire_on_commit=False) as session:
        with session.begin():
            yield session


@contextmanager
def read(engine: Engine) -> Iterator[Session]:
    """A read-only unit: never waits for a writer (SQLite) and cannot write (both databases).

    For everything that only looks: show, list, the agenda and feed, the gate's check, what delivery
    renders, the reads that open a form."""
    with _unit(engine, "read") as session:
        yield session


@contextmanager
def ack_write(engine: Engine, wait: float = ACK_WAIT) -> Iterator[Session]:
    """A write that runs before Slack's ack: waits about `wait` seconds (ACK_WAIT) for its locks, then
    raises Busy (rolled back: nothing written). Everything inside commits together, as in `transaction`."""
    with lock_timeout_is_busy(), _unit(engine, "ack", _ack_options(wait)) as session:
        yield session


@contextmanager
def ack_rows(engine: Engine, wait: float = ACK_WAIT) -> Iterator[Connection]:
    """`ack_write` on a Core connection, for the one or two rows an ack writes (the replay claim, the inbox
    row) with prebuilt statements: an ORM session and a statement built per call cost an ack about 0.4 ms
    of CPU that those inserts do not need. On a SQLite file acks write through its ack lane instead
    (storage.sqlite_lane); this is for a database in memory, and for a batch's rows tried one by one."""
    with lock_timeout_is_busy(), engine.connect() as conn:
        conn.execution_options(**{_UNIT: "ack", **_ack_options(wait)})
        with conn.begin():
            yield conn


def _ack_options(wait: float) -> dict:
    return {_WAIT_MS: int(min(wait, ACK_WAIT) * 1000)}


@contextmanager
def lock_timeout_is_busy() -> Iterator[None]:
    """An ack's write whose lock wait ran out raises Busy (rolled back: nothing written). Also PostgreSQL's
    ack lane's (storage.ack_lane), whose statements time out by their connections' own settings."""
    try:
        yield
    except DBAPIError as exc:
        if is_lock_timeout(exc):
            raise Busy(str(exc.orig)) from exc
        raise


def write(engine: Engine, *, lock_wait: float | None = None):
    """`transaction` (lock_wait None: wait as long as it takes), or `ack_write` on the ack path."""
    return transaction(engine) if lock_wait is None else ack_write(engine, lock_wait)


@contextmanager
def _unit(engine: Engine, unit: str, options: dict | None = None) -> Iterator[Session]:
    with engine.connect() as conn:
        conn.execution_options(**{_UNIT: unit, **(options or {})})
        with Session(bind=conn, expire_on_commit=False) as session:
            if unit == "read":
                yield session  # closed without commit: a read has nothing to keep
            else:
                with session.begin():
                    yield session


def is_lock_timeout(exc: DBAPIError) -> bool:
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in _BUSY_SQLSTATES:
        return True
    # sqlite3: SQLITE_BUSY (another connection holds the lock) or SQLITE_LOCKED
    return getattr(orig, "sqlite_errorcode", None) in (5, 6) or "database is locked" in str(orig)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"
