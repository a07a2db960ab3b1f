"""The audit log: append-only, written in the same transaction as the change."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlmodel import Session, select

from storage.models import AuditEvent


def record(session: Session, *, actor: str, action: str, at: datetime, release_id: Optional[int] = None,
           before: Optional[dict[str, Any]] = None, after: Optional[dict[str, Any]] = None,
           reason: Optional[str] = None) -> AuditEvent:
    event = AuditEvent(release_id=release_id, actor=actor, action=action, at=at,
                       before=_jsonable(before or {}), after=_jsonable(after or {}), reason=reason)
    session.add(event)
    session.flush()
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
