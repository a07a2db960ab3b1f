"""The audit log: append-only, written in the same transaction as the change, and hash-chained
(storage/audit_chain.py): at commit, the transaction's events take the chain head, link to it one after
the other, and the last becomes the new head."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlmodel import Session, select

from storage import audit_chain
from storage.models import AuditEvent


def record(session: Session, *, actor: str, action: str, at: datetime, release_id: Optional[int] = None,
           before: Optional[dict[str, Any]] = None, after: Optional[dict[str, Any]] = None,
           reason: Optional[str] = None) -> AuditEvent:
    # Hashed as the JSON column gives it back, so verifying later recomputes the same bytes.
    before, after = audit_chain.stored_json(_jsonable(before or {})), audit_chain.stored_json(_jsonable(after or {}))
    event = AuditEvent(release_id=release_id, actor=actor, action=action, at=at, before=before, after=after,
                       reason=reason)
    session.add(event)
    session.flush()
    # Its place in the chain is given at commit (audit_chain.chain_pending), so the head's lock is the last
    # lock the transaction takes, whatever it locks after this event.
    audit_chain.pending(session, event)
    return event


def trail(session: Session, release_id: int) -> list[AuditEvent]:
    return list(session.exec(select(AuditEvent).where(AuditEvent.release_id == release_id)
                             .order_by(AuditEvent.id)))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
