"""The audit log: append-only, written in the same transaction as the change, and hash-chained
(storage/audit_chain.py): each event takes the chain head, links to it and becomes the new head."""
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
    seq, prev_hash = audit_chain.take_head(session)  # locked until commit: the next writer appends after this one
    event = AuditEvent(release_id=release_id, actor=actor, action=action, at=at, before=before, after=after,
                       reason=reason, seq=seq + 1, prev_hash=prev_hash)
    event.hash = audit_chain.event_hash(seq=event.seq, prev_hash=prev_hash, release_id=release_id, actor=actor,
                                        action=action, at=at, reason=reason, before=before, after=after)
    session.add(event)
    session.flush()
    audit_chain.move_head(session, event.seq, event.hash)
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
