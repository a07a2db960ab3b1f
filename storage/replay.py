"""The claim on one Slack delivery: the first insert of its identity wins; pruning forgets old ones.

Bolt refuses a request whose signed timestamp is more than five minutes from now
(either way), so a captured request can be replayed only inside that window; a
row is kept for the window plus a margin for the timestamp and the clocks.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from storage import ack_lane, sqlite_lane
from storage.db import ACK_WAIT, ack_write, is_postgres, read, transaction
from storage.models import SeenDelivery

WINDOW = timedelta(minutes=5)  # Slack's signature window
KEEP = WINDOW + timedelta(minutes=10)  # + a timestamp up to five minutes ahead, + clock skew

_TABLE = SeenDelivery.__table__
# SQLite's claim (PostgreSQL's is storage.ack_lane's statement), built once (compiled once, SQLAlchemy's
# cache). ON CONFLICT DO NOTHING: a copy claimed already writes nothing and leaves the caller's transaction
# usable (a batch of acks' rows goes on: storage.inbox_batch); RETURNING says whether it was inserted.
_CLAIM = sqlite_insert(_TABLE).on_conflict_do_nothing(index_elements=["key"]).returning(_TABLE.c.key)


def claim(db: Engine, key: str, now: datetime, wait: float = ACK_WAIT) -> bool:
    """True for the first delivery with this identity; False when it was seen already.

    Its own short transaction (one indexed insert), so it commits before the work it guards starts.
    It runs before the ack, so it waits for the lock only briefly: storage.db.Busy when another
    writer holds it, and then nothing is claimed (the same delivery sent again is the first).
    On PostgreSQL one statement on the ack lane (storage.ack_lane), which waits ACK_WAIT whatever `wait`
    says: there it waits only for a copy of the same delivery in flight or a schema change."""
    if is_postgres(db):
        return ack_lane.claim(db, key, now)
    with sqlite_lane.writing(db, wait) as writer:
        return writer.claim(key, now)


def claimed(conn: Connection, key: str, now: datetime) -> bool:
    """Claim inside the caller's transaction: True if this took it, False (nothing written) if it was
    taken already."""
    return conn.execute(_CLAIM, {"key": key, "seen_at": now}).first() is not None


class Claimed(Exception):
    """This delivery was claimed already (raised by a write that claims it with its work: storage.inbox.put)."""


def seen_already(db: Engine, key: str) -> bool:
    """Whether this delivery was claimed already: a read, so it never waits for a writer."""
    with read(db) as session:
        return session.execute(select(_TABLE.c.key).where(_TABLE.c.key == key)).first() is not None


def claim_in(conn: Connection, key: str, now: datetime) -> None:
    """Claim inside the caller's transaction, so the claim and the work it guards commit together (or
    neither does). Raises Claimed when it was claimed first elsewhere (the caller's transaction is then
    rolled back: nothing of it was written)."""
    if not claimed(conn, key, now):
        raise Claimed(key)


def release(db: Engine, key: str, *, in_ack: bool = True) -> None:
    """Forget a claim whose delivery did nothing (a form sent back with errors may be submitted again).
    In the ack (the default) it waits only briefly and raises Busy; after the ack, as long as it takes."""
    with (ack_write(db) if in_ack else transaction(db)) as session:
        session.execute(delete(_TABLE).where(_TABLE.c.key == key))


def prune(db: Engine, now: datetime) -> int:
    """Forget deliveries older than any that Slack's signature check would still let through."""
    with db.begin() as conn:
        return conn.execute(delete(_TABLE).where(_TABLE.c.seen_at < now - KEEP)).rowcount
