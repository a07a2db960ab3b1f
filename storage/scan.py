"""Reading timestamps by the ten thousand: as stored, converted only where needed.

The free-slot search reads months of calendar (tens of thousands of windows on a
busy one). Turning each stored timestamp into an aware datetime was most of its
cost, whoever did it: SQLAlchemy's type processing, or on PostgreSQL psycopg itself
(it parses each timestamptz's text into a datetime with a zone: 30 ms of CPU for
production's 20,000 windows in the calendar benchmark). So these rows come back
as the database holds them:
- on SQLite the UTC text storage.models.UTCDateTime writes ('YYYY-MM-DD
  HH:MM:SS.ffffff', which sorts as time does); asking SQLite for an epoch instead
  (strftime) parses every value again, and was slower;
- on PostgreSQL in the binary protocol, where a timestamptz is an int64 of
  microseconds since 2000-01-01 UTC, read as that integer (psycopg's own int8
  loader, in C). Selecting `EXTRACT(EPOCH FROM …) * 1000000` as a bigint instead
  costs the server more than it saves (numeric arithmetic: 21 ms of server CPU
  against 9 for the raw column, and 13 against 30 for the client).
Within one database they compare and sort as the instants do; the search merges
them first and converts only what is left (`to_us`).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICRO = timedelta(microseconds=1)
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 UTC, PostgreSQL's epoch, in microseconds since 1970
AS_STORED = "releasebot_as_stored"  # execution option: this statement's rows are read by rows_as_stored
BINARY = "releasebot_binary"  # execution option: rows in PostgreSQL's binary format, each type's usual loader


def binary_results():
    """A before_cursor_execute listener for PostgreSQL engines (storage.db): a statement run by
    `rows_as_stored` has its rows sent in binary, and its timestamptz values read as PostgreSQL's
    integers. A statement run with the BINARY option has its rows sent in binary with every type read as
    usual (a float arrives as its 8 bytes, not as text to parse: the KPIs' 100k rows of them). Other
    statements are read as usual."""
    from psycopg import postgres, pq
    from psycopg.types.numeric import Int8BinaryLoader

    binary, timestamptz = pq.Format.BINARY, postgres.types["timestamptz"].oid

    def listener(conn, cursor, statement, parameters, context, executemany) -> None:
        if context is None:
            return
        options = context.execution_options
        if options.get(AS_STORED):
            cursor.format = binary  # the cursor is this statement's own (SQLAlchemy makes one per execution)
            cursor.adapters.register_loader(timestamptz, Int8BinaryLoader)
        elif options.get(BINARY):
            cursor.format = binary

    return listener


def custom_plans(session: Session) -> None:
    """On PostgreSQL, plan the rest of this transaction's statements for their parameters' values.

    psycopg prepares a statement run five times, and PostgreSQL then tries a generic plan, one made
    without the values. For the slot search's blackout occurrences (`blackout_id IN (` hundreds of ids `)`)
    that plan tests every row against each parameter in turn instead of a hashed list of constants: 33 ms
    of server CPU a search instead of 6 (measured on the calendar benchmark). Planning each run costs well
    under a millisecond."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_CUSTOM_PLANS)


_CUSTOM_PLANS = text("SET LOCAL plan_cache_mode = force_custom_plan")


def rows_as_stored(session: Session, statement: Any, params: dict) -> list[tuple]:
    """The rows of `statement` as the driver returns them: plain tuples, no type processing, timestamps
    as stored (see above).

    SQLAlchemy's Rows and result processors cost more than the query itself at
    this volume (and Rows compare several times slower than tuples when sorted)."""
    result = session.connection().execute(statement, params, execution_options={AS_STORED: True})
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def to_us(value: int | str | datetime) -> int:
    """A timestamp read by `rows_as_stored`, as integer microseconds since the epoch (UTC)."""
    if value.__class__ is int:  # PostgreSQL's
        return value + _PG_EPOCH_US
    if value.__class__ is str:
        value = datetime.fromisoformat(value + "+00:00")
    elif value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return (value - EPOCH) // _MICRO
