"""Storage guarantees an auditor relies on."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DatabaseError

from calendars import windows
from storage import audit, scan
from storage.db import transaction
from storage.models import AuditEvent


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


# Either side of PostgreSQL's epoch (2000-01-01, where its binary integers are 0) and of the Unix one,
# to the microsecond, and a DST change's hour.
INSTANTS = [datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc), datetime(1999, 12, 31, 23, 59, 59, 999_999,
                                                                             tzinfo=timezone.utc),
            datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2026, 10, 25, 1, 0, 0, 7, tzinfo=timezone.utc),
            datetime(2026, 10, 25, 0, 59, 59, 999_999, tzinfo=timezone.utc), datetime(2199, 12, 31, 23, 59,
                                                                                     tzinfo=timezone.utc)]


def test_timestamps_read_as_stored_give_the_same_instants_and_order(db):
    with transaction(db) as s:
        for at in INSTANTS:
            audit.record(s, actor="U0RM", action="x", at=at)
    with transaction(db) as s:
        scan.custom_plans(s)
        rows = scan.rows_as_stored(s, select(AuditEvent.at, AuditEvent.at).order_by(AuditEvent.id), {})
        # the statement after one read as stored is read as usual, on the same connection
        usual = s.execute(select(AuditEvent.at).order_by(AuditEvent.id)).scalars().all()
    assert [scan.to_us(a) for a, _ in rows] == [windows.to_us(at) for at in INSTANTS]
    assert sorted(range(len(rows)), key=lambda i: rows[i][0]) == sorted(range(len(INSTANTS)),
                                                                        key=lambda i: INSTANTS[i])
    assert usual == INSTANTS
