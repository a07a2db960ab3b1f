"""The claim on one Slack delivery: the first insert of its identity wins; pruning forgets old ones.

Bolt refuses a request whose signed timestamp is more than five minutes from now
(either way), so a captured request can be replayed only inside that window; a
row is kept for the window plus a margin for the timestamp and the clocks.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from storage.models import SeenDelivery

WINDOW = timedelta(minutes=5)  # Slack's signature window
KEEP = WINDOW + timedelta(minutes=10)  # + a timestamp up to five minutes ahead, + clock skew

_TABLE = SeenDelivery.__table__


def claim(db: Engine, key: str, now: datetime) -> bool:
    """True for the first delivery with this identity; False when it was seen already.

    Its own short transaction (one indexed insert), so it commits before the work it guards starts. It is
    on the ack path, so it waits for another writer only briefly: storage.inbox.Busy past that."""
    from storage.inbox import quick
    try:
        with quick(db) as conn:
            conn.execute(insert(_TABLE).values(key=key, seen_at=now))
    except IntegrityError:
        return False
    return True


def release(db: Engine, key: str) -> None:
    """Forget a claim whose delivery did nothing (a form sent back with errors may be submitted again).
    On the ack path too: a brief wait, storage.inbox.Busy past it."""
    from storage.inbox import quick
    with quick(db) as conn:
        conn.execute(delete(_TABLE).where(_TABLE.c.key == key))


def prune(db: Engine, now: datetime) -> int:
    """Forget deliveries older than any that Slack's signature check would still let through."""
    with db.begin() as conn:
        return conn.execute(delete(_TABLE).where(_TABLE.c.seen_at < now - KEEP)).rowcount
