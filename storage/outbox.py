"""The outbox: messages and reminders that must reach Slack, claimed by any process.

Rows are claimed with a lease. PostgreSQL skips rows another process holds
(FOR UPDATE SKIP LOCKED); SQLite's BEGIN IMMEDIATE already serialises claims and
the conditional UPDATE makes a stale read harmless. A row whose claimer died
becomes claimable again when its lease runs out. A release's rows go out in
order: a row waits while an earlier one of the same release is unsent.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Optional

from sqlalchemy import and_, exists, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from storage.db import is_postgres, transaction
from storage.models import Outbox

LEASE = timedelta(seconds=60)


def enqueue(session: Session, *, key: str, kind: str, at: datetime, release_id: Optional[int] = None,
            payload: Optional[dict[str, Any]] = None, due_at: Optional[datetime] = None) -> bool:
    """Insert unless a row with this key exists. True if this call added it."""
    values = dict(key=key, kind=kind, release_id=release_id, payload=payload or {}, created_at=at,
                  due_at=due_at or at, attempts=0)
    dialect = session.get_bind().dialect.name
    ins = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = ins(Outbox).values(**values).on_conflict_do_nothing(index_elements=["key"])
    return session.execute(stmt).rowcount == 1


def claim_due(engine: Engine, now: datetime, limit: int = 50, lease: timedelta = LEASE) -> list[Outbox]:
    earlier = aliased(Outbox)
    blocked_by_earlier = exists().where(and_(
        earlier.release_id == Outbox.release_id,
        earlier.id < Outbox.id,
        earlier.sent_at.is_(None),
    ))
    claimable = or_(Outbox.claimed_until.is_(None), Outbox.claimed_until < now)
    query = (select(Outbox.id)
             .where(Outbox.sent_at.is_(None), Outbox.due_at <= now, claimable,
                    or_(Outbox.release_id.is_(None), ~blocked_by_earlier))
             .order_by(Outbox.id).limit(limit))
    token = uuid.uuid4().hex
    with transaction(engine) as session:
        if is_postgres(engine):
            query = query.with_for_update(skip_locked=True, of=Outbox)
        ids = list(session.exec(query))
        if not ids:
            return []
        session.execute(update(Outbox)
                        .where(Outbox.id.in_(ids), claimable)
                        .values(claimed_until=now + lease, claim_token=token, attempts=Outbox.attempts + 1)
                        .execution_options(synchronize_session=False))
        rows = list(session.exec(select(Outbox).where(Outbox.claim_token == token).order_by(Outbox.id)))
    return rows


def mark_sent(session: Session, row: Outbox, now: datetime) -> bool:
    res = session.execute(update(Outbox)
                          .where(Outbox.id == row.id, Outbox.claim_token == row.claim_token)
                          .values(sent_at=now, claimed_until=None, last_error=None)
                          .execution_options(synchronize_session=False))
    return res.rowcount == 1


def mark_retry(engine: Engine, row: Outbox, due_at: datetime, error: str) -> None:
    with transaction(engine) as session:
        session.execute(update(Outbox)
                        .where(Outbox.id == row.id, Outbox.claim_token == row.claim_token)
                        .values(due_at=due_at, claimed_until=None, last_error=error[:2000])
                        .execution_options(synchronize_session=False))


def pending(session: Session) -> list[Outbox]:
    return list(session.exec(select(Outbox).where(Outbox.sent_at.is_(None)).order_by(Outbox.id)))
