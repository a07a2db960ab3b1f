"""The inbox: acknowledged deliveries whose after-ack work is still to be applied, claimed by any process.

Written on the ack path, so the insert waits for the database only briefly
(LOCK_WAIT): past it the person is told to try again while Slack still waits for
the answer. Claims are leased like the outbox's (storage.outbox): PostgreSQL skips
rows another process holds (FOR UPDATE SKIP LOCKED); SQLite's BEGIN IMMEDIATE
serialises claims and the conditional UPDATE makes a stale read harmless. A row
whose claimer died becomes claimable again when its lease runs out. Rows of one
stream (one person's deliveries) are applied in id order: a row waits while an
earlier one of its stream is not done.
"""
from __future__ import annotations

import threading
import uuid
import weakref
from datetime import datetime, timedelta
from typing import Any, Optional

from sqlalchemy import and_, bindparam, delete, exists, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from storage import ack_lane, replay as seen
from storage.db import ack_rows, is_postgres, transaction
from storage.inbox_batch import GroupPut
from storage.models import InboxRow, UTCDateTime

LEASE = timedelta(seconds=120)
KEEP_DONE = timedelta(days=1)


_t = InboxRow.__table__
_earlier = _t.alias("earlier")
_now = bindparam("now", type_=UTCDateTime())
_claimable = and_(_t.c.done_at.is_(None), or_(_t.c.claimed_until.is_(None), _t.c.claimed_until < _now))
_in_order = or_(_t.c.stream.is_(None),
                ~exists().where(and_(_earlier.c.stream == _t.c.stream, _earlier.c.id < _t.c.id,
                                     _earlier.c.done_at.is_(None))))
_PUT = insert(_t)  # built once (SQLAlchemy compiles it once); put passes the values
_DONE = (update(_t).where(_t.c.id == bindparam("row_id"), _t.c.claim_token == bindparam("token"))
         .values(done_at=bindparam("at", type_=UTCDateTime()), claimed_until=None, result=bindparam("outcome")))


def put(engine: Engine, *, kind: str, body: dict[str, Any], context: dict[str, Any], now: datetime,
        stream: Optional[str] = None, claim: Optional[str] = None) -> int:
    """Record one delivery's work; its id. Raises storage.db.Busy when the database is held past the ack's short wait.

    `claim`: the delivery's identity (bot.replay), claimed in the same transaction: the ack path then takes
    the write lock once, not twice. Raises storage.replay.Claimed, writing nothing, when it was claimed already.
    SQLite: with the rows of acks arriving meanwhile (storage.inbox_batch); PostgreSQL: one statement on the
    ack lane (storage.ack_lane)."""
    values = dict(kind=kind[:100], stream=stream[:60] if stream else None, body=body, context=context,
                  received_at=now, attempts=0)
    if is_postgres(engine):
        row_id = ack_lane.put(engine, values, claim, now)
        if row_id is None:
            raise seen.Claimed(claim)
        return row_id
    return _group(engine).put(values, claim, now)


def _put_one(engine: Engine, values: dict[str, Any], claim: Optional[str], now: datetime) -> int:
    with ack_rows(engine) as conn:
        if claim is not None:
            seen.claim_in(conn, claim, now)
        return _insert_row(conn, values)


def _insert_row(conn: Connection, values: dict[str, Any]) -> int:
    return conn.execute(_PUT, values).inserted_primary_key[0]


_groups: "weakref.WeakKeyDictionary[Engine, GroupPut]" = weakref.WeakKeyDictionary()
_groups_lock = threading.Lock()


def _group(engine: Engine) -> GroupPut:
    """The acks' rows queue per engine, written a batch at a time (storage.inbox_batch)."""
    with _groups_lock:
        group = _groups.get(engine)
        if group is None:
            group = _groups[engine] = GroupPut(
                engine, lambda values, claim, now: _put_one(engine, values, claim, now))
        return group


def claim(engine: Engine, now: datetime, lease: timedelta = LEASE, *, row_id: Optional[int] = None,
          stream: Optional[str] = None) -> Optional[InboxRow]:
    """Claim one row whose turn it is: that row, the oldest of that stream, or the oldest of all."""
    token = uuid.uuid4().hex
    query = select(_t.c.id).where(_claimable, _in_order)
    if row_id is not None:
        query = query.where(_t.c.id == row_id)
    if stream is not None:
        query = query.where(_t.c.stream == stream)
    query = query.order_by(_t.c.id).limit(1).correlate(None)  # its own `inbox`, not the UPDATE's
    if is_postgres(engine):
        query = query.with_for_update(skip_locked=True, of=_t)
    # One statement finds the row, claims it and reads it back: a worker's claim was a SELECT, an UPDATE and
    # a SELECT of the row, and under a burst the workers' round trips share the two cores with the acks.
    # The UPDATE checks the row is still claimable (on SQLite the write lock already serialises claims).
    statement = (update(InboxRow).where(_t.c.id == query.scalar_subquery(), _claimable)
                 .values(claimed_until=now + lease, claim_token=token, attempts=_t.c.attempts + 1)
                 .returning(InboxRow).execution_options(synchronize_session=False))
    with transaction(engine) as session:
        return session.scalars(statement, {"now": now}).first()


def finish(engine: Engine, row: InboxRow, now: datetime, result: str = "done") -> bool:
    """Done with this row (its work ran, or it was given up on: result says which)."""
    with transaction(engine) as session:
        return session.execute(_DONE, {"row_id": row.id, "token": row.claim_token, "at": now,
                                       "outcome": result[:200]}).rowcount == 1


def waiting(engine: Engine, now: datetime) -> int:
    """How many rows could be claimed now."""
    with Session(engine) as session:
        return session.execute(select(func.count()).select_from(_t).where(_claimable, _in_order),
                               {"now": now}).scalar() or 0


def prune(engine: Engine, now: datetime, keep: timedelta = KEEP_DONE) -> int:
    """Forget rows done longer ago than `keep`."""
    with transaction(engine) as session:
        return session.execute(delete(_t).where(_t.c.done_at.is_not(None), _t.c.done_at < now - keep)).rowcount
