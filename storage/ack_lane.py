"""PostgreSQL: an ack's rows in one statement, one round trip, on connections kept for acks.

An ack on PostgreSQL took six round trips before Slack heard back: the pool's
pre-ping, BEGIN, SET LOCAL of its two timeouts, the replay claim, the inbox row
and COMMIT (eight waits on the socket, by psycopg's count). Each is a wake-up of
the server's backend and of this thread on a machine whose two cores the burst's
other acks and the server share, and each is about 0.1 ms of psycopg's Python. Under
a burst of 64 the bot's p50 was 3.5x a bare Bolt app's (ack_burst.py).

Here the claim and the row are one INSERT: the row is written only if the claim
was (a data-modifying WITH), so a copy of a delivery claimed already writes
nothing. It runs in autocommit: one statement is one transaction, committed
(its WAL flushed) before the server answers, so the row is as durable as before
when the ack goes out. Concurrent acks' commits share a WAL flush, as they did.

The timeouts (ACK_WAIT for a lock, ACK_STATEMENT in all) are the lane's
connections' own settings, given when each connects (libpq's `options`), so
nothing is set per ack. No pre-ping: a connection that went stale (the server
restarted) fails its statement before any of it was done, is dropped, and the
statement is sent once more on a fresh one.

On PostgreSQL these inserts wait for a lock only behind a copy of the same
delivery in flight (the unique key) or a schema change, never behind other
writers. So a read's claim, which on SQLite does not wait for the write lock at
all, waits here as an ack's does, and nothing is gained by batching acks'
rows (storage.inbox_batch is SQLite's).
"""
from __future__ import annotations

import threading
import weakref
from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as NoConnection

from storage.db import ACK_STATEMENT, ACK_WAIT, Busy, canonical_json, lock_timeout_is_busy

DEFAULT_SIZE = 16  # bot.config's RELEASEBOT_HTTP_THREADS default: the acks that can be answered at once
OVERFLOW = 4  # connections past the size, for threads that ack outside the HTTP server (Socket Mode's)

_COLUMNS = "kind, stream, body, context, received_at, attempts"
_VALUES = "%(kind)s, %(stream)s, %(body)s::json, %(context)s::json, %(received_at)s, 0"
CLAIM = ("INSERT INTO seen_delivery (key, seen_at) VALUES (%(key)s, %(seen_at)s) "
         "ON CONFLICT (key) DO NOTHING RETURNING key")
ROW = f"INSERT INTO inbox ({_COLUMNS}) VALUES ({_VALUES}) RETURNING id"
# The row exists only if the claim was inserted: a claimed copy gets no row back and has written nothing.
CLAIMED_ROW = (f"WITH claim AS ({CLAIM}) "
               f"INSERT INTO inbox ({_COLUMNS}) SELECT {_VALUES} FROM claim RETURNING id")


class Lane:
    """One engine's connections for acks: opened as acks need them and kept, up to `size`. Sized to the threads
    that answer Slack, so an ack never waits for one; a connection opened past the pool's size is closed when
    it goes back, and opening one costs the server a process (several ms of CPU in the middle of a burst)."""

    def __init__(self, url, size: int):
        settings = f"-c lock_timeout={int(ACK_WAIT * 1000)}ms -c statement_timeout={ACK_STATEMENT}"
        given = url.query.get("options")  # the operator's own (a search_path, say) come first
        self.engine = create_engine(
            url, isolation_level="AUTOCOMMIT", pool_pre_ping=False, pool_reset_on_return=None,
            pool_size=size, max_overflow=OVERFLOW, pool_timeout=ACK_WAIT,
            connect_args={"options": f"{given} {settings}" if given else settings})


_lanes: "weakref.WeakKeyDictionary[Engine, Lane]" = weakref.WeakKeyDictionary()
_lanes_lock = threading.Lock()


def lane(engine: Engine, size: int = DEFAULT_SIZE) -> Lane:
    """`engine`'s ack lane, made on first use with `size` connections (bot.cli serve passes its HTTP threads)."""
    with _lanes_lock:
        found = _lanes.get(engine)
        if found is None:
            found = _lanes[engine] = Lane(engine.url, size)
            # A disposed engine's lane goes with it (a scratch database cannot be dropped while it is open).
            event.listen(engine, "engine_disposed", lambda _engine, found=found: found.engine.dispose())
        return found


def claim(engine: Engine, key: str, now: datetime) -> bool:
    """storage.replay.claim on PostgreSQL: True if this inserted the claim, False if it was taken already."""
    return _one(engine, CLAIM, {"key": key, "seen_at": _utc(now)}) is not None


def put(engine: Engine, values: dict[str, Any], claim_key: Optional[str], now: datetime) -> Optional[int]:
    """storage.inbox.put on PostgreSQL: the row's id, or None when `claim_key` was claimed already (nothing
    written)."""
    params = {"kind": values["kind"], "stream": values["stream"], "body": canonical_json(values["body"]),
              "context": canonical_json(values["context"]), "received_at": _utc(values["received_at"])}
    if claim_key is None:
        return _one(engine, ROW, params)
    return _one(engine, CLAIMED_ROW, {**params, "key": claim_key, "seen_at": _utc(now)})


def _one(engine: Engine, statement: str, params: dict[str, Any]):
    """The first column of the statement's one row, or None. Busy when a lock or the statement's time ran out."""
    pool = lane(engine).engine
    for retry in (True, False):
        try:
            with lock_timeout_is_busy(), pool.connect() as conn:
                return conn.exec_driver_sql(statement, params).scalar()
        except DBAPIError as exc:
            # A pooled connection the server closed (a restart) fails before its statement ran: once more,
            # on a new one. SQLAlchemy has dropped every connection of the pool older than this failure.
            if not (retry and exc.connection_invalidated):
                raise
        except NoConnection as exc:  # every lane connection in use for ACK_WAIT (the pool's timeout)
            raise Busy("no database connection for the ack within its wait") from exc


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")  # as storage.columns.UTCDateTime
    return value.astimezone(timezone.utc)
