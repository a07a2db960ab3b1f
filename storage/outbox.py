"""The outbox: messages and reminders that must reach Slack, claimed by any process.

Rows are claimed with a lease. PostgreSQL skips rows another process holds
(FOR UPDATE SKIP LOCKED); SQLite's BEGIN IMMEDIATE already serialises claims and
the conditional UPDATE makes a stale read harmless. A row whose claimer died
becomes claimable again when its lease runs out. Rows of one stream (a
release's announcements) go out in order: a row waits while an earlier one of
its stream is unsent. Reminders have no stream and go out when due.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Optional

from sqlalchemy import and_, bindparam, exists, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session

from storage.db import is_postgres, transaction
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
    stmt = ins(Outbox).values(**values).on_conflict_do_nothing(index_elements=["key"])
    return session.execute(stmt).rowcount == 1


# Built once: constructing these expressions costs more than running them.
_t = Outbox.__table__
_earlier = _t.alias("earlier")
_now = bindparam("now", type_=UTCDateTime())
_claimable = or_(_t.c.claimed_until.is_(None), _t.c.claimed_until < _now)
_DUE = (select(_t.c.id)
        .where(_t.c.sent_at.is_(None), _t.c.due_at <= _now, _claimable,
               or_(_t.c.stream.is_(None),
                   ~exists().where(and_(_earlier.c.stream == _t.c.stream, _earlier.c.id < _t.c.id,
                                        _earlier.c.sent_at.is_(None)))))
        .order_by(_t.c.id).limit(bindparam("limit")))
_DUE_SKIP_LOCKED = _DUE.with_for_update(skip_locked=True, of=_t)
_CLAIM = (update(_t).where(_t.c.id.in_(bindparam("ids", expanding=True)), _claimable)
          .values(claimed_until=bindparam("lease_until", type_=UTCDateTime()), claim_token=bindparam("token"),
                  attempts=_t.c.attempts + 1))
_CLAIMED = select(Outbox).where(Outbox.claim_token == bindparam("token")).order_by(Outbox.id)
_SENT = (update(_t).where(_t.c.id == bindparam("row_id"), _t.c.claim_token == bindparam("token"))
         .values(sent_at=bindparam("at", type_=UTCDateTime()), claimed_until=None, last_error=None,
                 result=bindparam("outcome")))
_RETRY = (update(_t).where(_t.c.id == bindparam("row_id"), _t.c.claim_token == bindparam("token"))
          .values(due_at=bindparam("at", type_=UTCDateTime()), claimed_until=None, last_error=bindparam("error")))


def claim_due(engine: Engine, now: datetime, limit: int = 50, lease: timedelta = LEASE) -> list[Outbox]:
    token = uuid.uuid4().hex
    with transaction(engine) as session:
        query = _DUE_SKIP_LOCKED if is_postgres(engine) else _DUE
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

