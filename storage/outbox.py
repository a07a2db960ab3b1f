"""The outbox: messages and reminders that must reach Slack, claimed by any process.

Rows are claimed with a lease. PostgreSQL skips rows another process holds
(FOR UPDATE SKIP LOCKED); SQLite's BEGIN IMMEDIATE already serialises claims and
the conditional UPDATE makes a stale read harmless. A row whose claimer died
becomes claimable again when its lease runs out. Rows of one stream (a
release's announcements) go out in order: a row waits while an earlier one of
its stream is unsent. Reminders have no stream and go out when due.

A dead letter (a row Slack will never take, or would not take for
[delivery] dead_letter_after) is neither sent nor pending: it no longer holds
up its stream, keeps when and why it was given up on, and goes out again only
when an operator re-queues it (`releasebot outbox --retry ID`).
"""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any, Iterator, Optional

from sqlalchemy import and_, bindparam, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session

from storage import audit
from storage.db import is_postgres, read, transaction
from storage.models import Outbox, UTCDateTime

LEASE = timedelta(seconds=60)


def enqueue(session: Session, *, key: str, kind: str, at: datetime, release_id: Optional[int] = None,
            payload: Optional[dict[str, Any]] = None, due_at: Optional[datetime] = None,
            stream: Optional[str] = None) -> bool:
    """Insert unless a row with this key exists. True if this call added it."""
    values = dict(key=key, kind=kind, release_id=release_id, payload=payload or {}, created_at=at,
                  due_at=due_at or at, attempts=0, stream=stream)
    dialect = session.get_bind().dialect.name
    ins = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = ins(Outbox).values(**values).on_conflict_do_nothing(index_elements=["key"]).returning(Outbox.id)
    # The returned id, not rowcount: with RETURNING, psycopg's rowcount is not the rows inserted.
    added = session.execute(stmt).first() is not None
    queued = _queued.get()
    if added and queued is not None:
        queued.append(key)
    return added


_queued: ContextVar[Optional[list[str]]] = ContextVar("outbox_queued", default=None)


@contextmanager
def collecting() -> Iterator[list[str]]:
    """The keys of the rows enqueued inside this block (on this thread): what one change queued."""
    token = _queued.set([])
    try:
        yield _queued.get()
    finally:
        _queued.reset(token)


# Built once: constructing these expressions costs more than running them.
_t = Outbox.__table__
_earlier = _t.alias("earlier")
_now = bindparam("now", type_=UTCDateTime())
_claimable = or_(_t.c.claimed_until.is_(None), _t.c.claimed_until < _now)
_DUE = (select(_t.c.id)
        .where(_t.c.sent_at.is_(None), _t.c.dead_at.is_(None), _t.c.due_at <= _now, _claimable,
               or_(_t.c.stream.is_(None),
                   ~exists().where(and_(_earlier.c.stream == _t.c.stream, _earlier.c.id < _t.c.id,
                                        _earlier.c.sent_at.is_(None), _earlier.c.dead_at.is_(None)))))
        .order_by(_t.c.id).limit(bindparam("limit")))
_DUE_SKIP_LOCKED = _DUE.with_for_update(skip_locked=True, of=_t)
_CLAIM = (update(_t).where(_t.c.id.in_(bindparam("ids", expanding=True)), _claimable)
          .values(claimed_until=bindparam("lease_until", type_=UTCDateTime()), claim_token=bindparam("token"),
                  attempts=_t.c.attempts + 1, first_attempt_at=func.coalesce(_t.c.first_attempt_at, _now)))
_CLAIMED = select(Outbox).where(Outbox.claim_token == bindparam("token")).order_by(Outbox.id)
_SENT = (update(_t).where(_t.c.id == bindparam("row_id"), _t.c.claim_token == bindparam("token"))
         .values(sent_at=bindparam("at", type_=UTCDateTime()), claimed_until=None, last_error=None,
                 result=bindparam("outcome")))
_RETRY = (update(_t).where(_t.c.id == bindparam("row_id"), _t.c.claim_token == bindparam("token"))
          .values(due_at=bindparam("at", type_=UTCDateTime()), claimed_until=None, last_error=bindparam("error")))
_DEAD = (update(_t).where(_t.c.id == bindparam("row_id"), _t.c.claim_token == bindparam("token"))
         .values(dead_at=bindparam("at", type_=UTCDateTime()), claimed_until=None, dead_reason=bindparam("reason"),
                 last_error=bindparam("reason"), result=bindparam("outcome")))
_REQUEUE = (update(_t).where(_t.c.id == bindparam("row_id"), _t.c.dead_at.is_not(None), _t.c.sent_at.is_(None))
            .values(dead_at=None, claimed_until=None, claim_token=None))


def claim_due(engine: Engine, now: datetime, limit: int = 50, lease: timedelta = LEASE,
              keys: Optional[list[str]] = None) -> list[Outbox]:
    """Claim due rows; only those with these keys when given (what one change queued)."""
    token = uuid.uuid4().hex
    with transaction(engine) as session:
        query = _DUE_SKIP_LOCKED if is_postgres(engine) else _DUE
        if keys is not None:
            query = query.where(_t.c.key.in_(keys))
        ids = list(session.execute(query, {"now": now, "limit": limit}).scalars())
        if not ids:
            return []
        session.execute(_CLAIM, {"ids": ids, "now": now, "lease_until": now + lease, "token": token})
        return list(session.scalars(_CLAIMED, {"token": token}))


def mark_sent(session: Session, row: Outbox, now: datetime, result: str = "sent") -> bool:
    """Done with this row: sent, or (result says why) no longer worth sending."""
    res = session.execute(_SENT, {"row_id": row.id, "token": row.claim_token, "at": now, "outcome": result[:200]})
    return res.rowcount == 1


def mark_retry(engine: Engine, row: Outbox, due_at: datetime, error: str) -> None:
    with transaction(engine) as session:
        session.execute(_RETRY, {"row_id": row.id, "token": row.claim_token, "at": due_at, "error": error[:2000]})


def mark_dead(session: Session, row: Outbox, now: datetime, reason: str, result: Optional[str] = None) -> bool:
    """Give up on this row: it stops holding up its stream. `result` says what went instead, if anything."""
    res = session.execute(_DEAD, {"row_id": row.id, "token": row.claim_token, "at": now,
                                  "reason": reason[:2000], "outcome": result[:200] if result else None})
    return res.rowcount == 1


def requeue_dead(engine: Engine, row_id: int, *, actor: str, now: datetime) -> bool:
    """A dead letter goes back to pending for one more try (due at once: its due time has passed).
    False if it is not a dead letter. A person chose to send it again, so it is audited with the row's
    identity and why it had died, in the same transaction."""
    with transaction(engine) as session:
        if session.execute(_REQUEUE, {"row_id": row_id}).rowcount != 1:
            return False
        row = session.execute(select(_t.c.key, _t.c.kind, _t.c.dead_reason, _t.c.release_id)
                              .where(_t.c.id == row_id)).one()
        audit.record(session, actor=actor, action="outbox_requeued", at=now, release_id=row.release_id,
                     after={"outbox": row_id, "key": row.key, "kind": row.kind, "dead_reason": row.dead_reason})
        return True


def unsent(engine: Engine, dead_only: bool = False, limit: int = 500) -> list[Outbox]:
    """Rows not sent (pending, claimed and dead letters), oldest first; only dead letters with dead_only."""
    query = select(Outbox).where(Outbox.sent_at.is_(None))
    if dead_only:
        query = query.where(Outbox.dead_at.is_not(None))
    with read(engine) as session:
        return list(session.scalars(query.order_by(Outbox.id).limit(limit)))


def dead_letters(engine: Engine, *reasons: str) -> int:
    """How many rows are dead letters for one of these reasons (Slack's error code begins the reason)."""
    query = (select(func.count()).select_from(_t)
             .where(_t.c.dead_at.is_not(None), or_(*(_t.c.dead_reason.like(f"{r}%") for r in reasons))))
    with read(engine) as session:
        return session.execute(query).scalar_one()
