"""Storage guarantees an auditor relies on."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from storage import audit
from storage.db import transaction


def test_audit_log_rejects_updates_and_deletes(db):
    with transaction(db) as s:
        audit.record(s, actor="U0RM", action="approved", at=datetime(2026, 11, 23, tzinfo=timezone.utc))
    for sql in ("UPDATE audit_event SET actor = 'U0EVIL'", "DELETE FROM audit_event"):
        with pytest.raises(DatabaseError, match="append-only"):
            with db.begin() as conn:
                conn.execute(text(sql))
    with db.connect() as conn:
        assert conn.execute(text("SELECT actor FROM audit_event")).scalar_one() == "U0RM"


def test_timestamps_come_back_as_utc(db):
    at = datetime(2026, 3, 29, 1, 30, tzinfo=timezone.utc)
    with transaction(db) as s:
        ev = audit.record(s, actor="U0RM", action="x", at=at)
    with transaction(db) as s:
        back = s.get(type(ev), ev.id)
    assert back.at == at and back.at.tzinfo is not None


def test_naive_datetimes_are_refused(db):
    with pytest.raises(Exception, match="naive"):
        with transaction(db) as s:
            audit.record(s, actor="U0RM", action="x", at=datetime(2026, 1, 1))
