"""Reading timestamps by the ten thousand: as stored, converted only where needed.

The free-slot search reads months of calendar (tens of thousands of windows on a
busy one). Turning each stored timestamp into an aware datetime through
SQLAlchemy's type processing was most of its cost, and so was asking SQLite to
compute epochs (strftime parses every value again). So these rows come back
as stored: on SQLite the UTC text storage.models.UTCDateTime writes
('YYYY-MM-DD HH:MM:SS.ffffff', which sorts as time does), on PostgreSQL an aware
datetime. Within one database they compare and sort correctly as they are; the
search merges them first and converts only what is left (`to_us`).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlmodel import Session

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICRO = timedelta(microseconds=1)


def rows_as_stored(session: Session, statement: Any, params: dict) -> list[tuple]:
    """The rows of `statement` as the driver returns them: plain tuples, no type processing.

    SQLAlchemy's Rows and result processors cost more than the query itself at
    this volume (and Rows compare several times slower than tuples when sorted)."""
    result = session.connection().execute(statement, params)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def to_us(value: str | datetime) -> int:
    """A value read by `rows_as_stored`, as integer microseconds since the epoch (UTC)."""
    if value.__class__ is str:
        value = datetime.fromisoformat(value + "+00:00")
    elif value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return (value - EPOCH) // _MICRO
