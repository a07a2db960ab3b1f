"""Emergency releases (QMS 4.6): the incident they answer, their bridge record and their clock."""
from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from commands import bridge
from storage import audit
from storage.models import Emergency, Release


def opened(session: Session, release: Release, actor: str, now: datetime, incident: str,
           security: bool = False) -> Emergency:
    """The bridge record of a just-created emergency release, and its bridge queued (same transaction)."""
    emergency = Emergency(release_id=release.id, incident=incident, security=security, opened_at=now,
                          opened_by=actor, bridge_key=f"bridge:{release.id}")
    session.add(emergency)
    session.flush()
    audit.record(session, actor=actor, action="emergency_opened", release_id=release.id, at=now,
                 after={"incident": incident, "security": security})
    bridge.request_bridge(session, release, emergency, now)
    return emergency


def of(session: Session, release: Release) -> Emergency | None:
    return session.exec(select(Emergency).where(Emergency.release_id == release.id)).first()
