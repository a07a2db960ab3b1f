"""The audit log's hash chain: every event names the previous one's hash, so an edit, a deletion or an
insertion anywhere shows when the chain is walked (`verify`).

Canonical form (version 1) of an event, the bytes its hash is taken over:
  UTF-8 JSON of the object {"action", "actor", "after", "at", "before", "prev_hash", "reason",
  "release_id", "seq", "v": 1}, its keys in that (sorted) order, no whitespace (separators "," and ":"),
  non-ASCII characters as themselves (not \\u escapes); "at" is ISO 8601 in UTC with microseconds and a Z
  ("2026-11-23T09:00:00.000000Z"); before and after are the JSON text the column stores: compact, keys in
  the order they were written (storage.db.canonical_json, the engine's serializer for every JSON column),
  so verifying hashes the stored bytes without parsing them.
  hash = lowercase hex SHA-256 of those bytes. The first event's prev_hash is GENESIS (64 zeros).
The row id is not hashed, and ids need not rise with seq: an event is inserted (and draws its id) when it
is written, and takes its place in the chain when its transaction commits.

The head (audit_chain_head, one row) is the last event's seq and hash. A transaction that wrote events
takes it FOR UPDATE on PostgreSQL as it commits (chain_pending), so it is the last lock the transaction
takes and two processes append one after the other; on SQLite BEGIN IMMEDIATE already lets one writer in
at a time.
"""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator, Optional

from sqlalchemy import String, Text, bindparam, cast, event, func, select, type_coerce
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from storage.db import _UNIT, canonical_json
from storage.audit_models import HEAD_ID, AuditChainHead, AuditCheckpoint
from storage.models import AuditEvent

GENESIS = "0" * 64
FORMAT = 1
BATCH = 5000  # rows per query while walking: memory stays flat however long the log is

_events = AuditEvent.__table__
_head = AuditChainHead.__table__


def stored_json(value: Any) -> Any:
    """The value as the JSON column gives it back (tuples are lists, keys are strings)."""
    return json.loads(json.dumps(value))


def iso(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("naive datetime given to the audit chain")
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _iso_stored(at: Any) -> str:
    """`at` as the database hands it over raw: SQLite's text (UTC, as storage.columns writes it) or a datetime."""
    if isinstance(at, str):
        if len(at) == 26 and at[10] == " ":  # SQLAlchemy's SQLite form, "2026-11-23 09:00:00.000000"
            return f"{at[:10]}T{at[11:]}Z"
        at = datetime.fromisoformat(at)
        at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    return iso(at)


_s = json.encoder.encode_basestring  # a JSON string, non-ASCII as itself: json.dumps(…, ensure_ascii=False)


def canonical_text(seq: int, prev_hash: Optional[str], release_id: Optional[int], actor: str, action: str,
                   at_iso: str, reason: Optional[str], before_json: str, after_json: str) -> bytes:
    """The canonical form, from its parts as stored: no JSON is parsed or written again."""
    return (f'{{"action":{_s(action)},"actor":{_s(actor)},"after":{after_json},"at":"{at_iso}",'
            f'"before":{before_json},"prev_hash":{"null" if prev_hash is None else _s(prev_hash)},'
            f'"reason":{"null" if reason is None else _s(reason)},'
            f'"release_id":{"null" if release_id is None else int(release_id)},"seq":{int(seq)},"v":{FORMAT}}}'
            ).encode("utf-8")


def canonical(*, seq: int, prev_hash: str, release_id: Optional[int], actor: str, action: str, at: datetime,
              reason: Optional[str], before: Any, after: Any) -> bytes:
    return canonical_text(seq, prev_hash, release_id, actor, action, iso(at), reason, canonical_json(before),
                          canonical_json(after))


def event_hash(**fields: Any) -> str:
    return hashlib.sha256(canonical(**fields)).hexdigest()


# Built once: constructing these costs more than running them, and they run with every audit event.
_HEAD = select(_head.c.seq, _head.c.hash).where(_head.c.id == HEAD_ID)
_HEAD_LOCKED = _HEAD.with_for_update()
_LAST = (select(_events.c.seq, _events.c.hash).where(_events.c.seq.is_not(None))
         .order_by(_events.c.seq.desc()).limit(1))
_MOVE = _head.update().where(_head.c.id == HEAD_ID).values(seq=bindparam("seq"), hash=bindparam("hash"))


def take_head(session: Session) -> tuple[int, str]:
    """The head's (seq, hash), locked until this transaction ends (PostgreSQL). A missing head row (a new
    or emptied table) is made from the last event, by whichever writer comes first."""
    pg = session.get_bind().dialect.name == "postgresql"
    query = _HEAD_LOCKED if pg else _HEAD
    row = session.execute(query).first()
    if row is None:
        last = session.execute(_LAST).first()
        ins = (postgresql.insert if pg else sqlite.insert)(_head).values(
            id=HEAD_ID, seq=last.seq if last else 0, hash=last.hash if last else GENESIS)
        session.execute(ins.on_conflict_do_nothing(index_elements=["id"]))
        row = session.execute(query).first()
    return row.seq, row.hash


def move_head(session: Session, seq: int, hash_: str) -> None:
    session.execute(_MOVE, {"seq": seq, "hash": hash_})


_PENDING = "audit_chain_pending"
_CHAIN = (_events.update().where(_events.c.id == bindparam("row_id"), _events.c.seq.is_(None))
          .values(seq=bindparam("s"), prev_hash=bindparam("p"), hash=bindparam("h")))


def pending(session: Session, ev: AuditEvent) -> None:
    """An event inserted in this transaction, to be chained when it commits (its values kept now: a
    savepoint rolled back takes the row, and its object, away)."""
    session.info.setdefault(_PENDING, []).append(
        (ev, dict(release_id=ev.release_id, actor=ev.actor, action=ev.action, at=ev.at, reason=ev.reason,
                  before=ev.before, after=ev.after), ev.id, session.get_nested_transaction()))


@event.listens_for(Session, "before_commit")
def chain_pending(session: Session) -> None:
    """Chain this transaction's events, in the order they were written, after the head; move the head.

    At commit, not at each event: the head's lock (PostgreSQL) is then the last one the transaction takes,
    held only from here to COMMIT, so it cannot deadlock with release rows locked after an audit event (a
    re-plan auditing one release, then locking the next). The triggers let exactly this update through:
    seq from NULL to a value, nothing else changed (migration 0015)."""
    queued = session.info.pop(_PENDING, None)
    if not queued:
        return
    session.flush()  # every other lock this transaction needs is taken before the head's
    seq, prev = take_head(session)
    for obj, fields, row_id, _ in sorted(queued, key=lambda q: q[2]):
        h = event_hash(seq=seq + 1, prev_hash=prev, **fields)
        if session.execute(_CHAIN, {"row_id": row_id, "s": seq + 1, "p": prev, "h": h}).rowcount != 1:
            continue  # rolled back with its savepoint: it takes no place
        seq, prev_hash, prev = seq + 1, prev, h
        for name, value in (("seq", seq), ("prev_hash", prev_hash), ("hash", h)):
            set_committed_value(obj, name, value)
    move_head(session, seq, prev)


@event.listens_for(Session, "after_soft_rollback")
def _rolled_back(session: Session, previous_transaction) -> None:
    """A savepoint rolled back takes its events with it: drop them here, before SQLite can give a later
    event the same id (it reuses the highest rowid) and the chaining would hash the wrong row."""
    queued = session.info.get(_PENDING)
    if not queued or not previous_transaction.nested:
        return

    def inside(tx) -> bool:
        while tx is not None:
            if tx is previous_transaction:
                return True
            tx = tx.parent
        return False
    session.info[_PENDING] = [q for q in queued if not inside(q[3])]


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction) -> None:
    if transaction.parent is None:  # the whole transaction ended (a rollback): nothing left to chain
        session.info.pop(_PENDING, None)


# ---- verification ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bad:
    """The first event where the chain does not hold. kind: changed | missing | inserted | reordered."""

    kind: str
    seq: Optional[int]
    id: Optional[int]
    detail: str

    def line(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "no seq"
        return f"{self.kind}: event {where}, id {self.id if self.id is not None else '-'}: {self.detail}"


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int  # events walked
    head_seq: int  # the last event's seq (0: none)
    head_hash: str  # the last event's hash (GENESIS: none)
    first_bad: Optional[Bad] = None


@dataclass(slots=True)  # not frozen: one is made per row walked, and frozen ones cost twice as much
class Link:
    id: Optional[int]
    seq: Optional[int]
    prev_hash: Optional[str]
    hash: Optional[str]
    raw: Optional[tuple]  # what is hashed, but seq and prev_hash, as stored

    def hash_as(self, seq: int) -> Optional[str]:
        """What its hash would be at this seq (None: the row cannot be hashed at all)."""
        try:
            release_id, actor, action, at, reason, before, after = self.raw
            return hashlib.sha256(canonical_text(seq, self.prev_hash, release_id, actor, action, _iso_stored(at),
                                                 reason, before, after)).hexdigest()
        except (TypeError, ValueError):
            return None

    @property
    def content_ok(self) -> bool:
        """The stored hash is the hash of what the row holds now."""
        return self.seq is not None and self.hash is not None and self.hash_as(self.seq) == self.hash


# Raw: the stored JSON text as it is (the hash covers those bytes), `at` without type conversion.
_COLS = (_events.c.id, _events.c.seq, _events.c.prev_hash, _events.c.hash, _events.c.release_id,
         _events.c.actor, _events.c.action, type_coerce(_events.c.at, String), _events.c.reason,
         cast(_events.c.before, Text), cast(_events.c.after, Text))


def _link(r) -> Link:
    return Link(r[0], r[1], r[2], r[3], tuple(r[4:]))


def _rows(conn: Connection, batch: int) -> Iterator[Link]:
    # Unchained rows (no seq: written around the chain) first, then the chain in order, by keyset pages.
    for r in conn.execute(select(*_COLS).where(_events.c.seq.is_(None)).order_by(_events.c.id)):
        yield _link(r)
    # Pages are ranges of seq, not LIMITs, so rows sharing a seq (a forged duplicate) land on one page.
    lo = 0
    while True:
        rows = conn.execute(select(*_COLS).where(_events.c.seq > lo, _events.c.seq <= lo + batch)
                            .order_by(_events.c.seq, _events.c.id)).all()
        for r in rows:
            yield _link(r)
        if rows:
            lo += batch
            continue
        nxt = conn.execute(select(func.min(_events.c.seq)).where(_events.c.seq > lo)).scalar()
        if nxt is None:
            return
        lo = nxt - 1  # a long gap (deleted, or a forged seq far ahead): jump it


def _seq_of_hash(conn: Connection, hash_: Optional[str]) -> Optional[int]:
    if hash_ == GENESIS:
        return 0
    return conn.execute(select(_events.c.seq).where(_events.c.hash == hash_).limit(1)).scalar()


def _walk(conn: Connection, batch: int) -> VerifyResult:
    head = conn.execute(select(_head.c.seq, _head.c.hash).where(_head.c.id == HEAD_ID)).first()
    count, prev_seq, prev_id, prev_hash = 0, 0, None, GENESIS
    prev_link: Optional[Link] = None
    rows = _rows(conn, batch)
    nxt: Optional[Link] = next(rows, None)
    while nxt is not None:
        r, nxt = nxt, next(rows, None)

        def bad(kind: str, detail: str, seq: Optional[int] = r.seq, id_: Optional[int] = r.id) -> VerifyResult:
            return VerifyResult(False, count, prev_seq, prev_hash, Bad(kind, seq, id_, detail))

        if r.seq is None:
            return bad("inserted", "it has no sequence number: it was written around the chain, not by the bot")
        if head is not None and r.seq > head.seq:
            return bad("inserted", f"it comes after the recorded chain head (seq {head.seq}): added around the bot")
        if r.seq == prev_seq:
            return bad("inserted", f"a second event at seq {r.seq} (the first is id {prev_id})")
        content_ok = r.content_ok
        if not content_ok:
            origin = _seq_of_hash(conn, r.prev_hash)
            if origin is not None and origin + 1 != r.seq and r.hash_as(origin + 1) == r.hash:
                if origin + 1 == prev_seq and prev_link is not None and prev_link.prev_hash == r.prev_hash:
                    # Pushed down one place by the event before it, which claims to follow the same one.
                    return bad("inserted", f"it took seq {prev_seq}, the place of the event now at seq {r.seq} "
                                           f"(id {r.id}), which was written there: slipped into the chain",
                               seq=prev_seq, id_=prev_id)
                return bad("reordered", f"it was written at seq {origin + 1} and has been moved to seq {r.seq}")
        if not content_ok:
            return bad("changed", "its content no longer matches its hash: it was edited after it was written")
        if r.seq > prev_seq + 1:
            gap = f"seq {prev_seq + 1}" if r.seq == prev_seq + 2 else f"seq {prev_seq + 1} to {r.seq - 1}"
            return bad("missing", f"{gap} is gone (deleted); the next event left is seq {r.seq}, id {r.id}",
                       seq=prev_seq + 1, id_=None)
        if r.prev_hash != prev_hash:
            if (nxt is not None and nxt.prev_hash == r.hash) or (nxt is None and head is not None
                                                                  and head.hash == r.hash):
                # The chain goes on from this one: the event before it was rewritten, hash and all.
                return bad("changed", f"it was rewritten and its hash recomputed: seq {r.seq} (id {r.id}) no "
                                      "longer links to it", seq=prev_seq, id_=prev_id)
            other = _seq_of_hash(conn, r.prev_hash)
            if other is not None:
                return bad("reordered", f"it was chained after seq {other}, not after seq {prev_seq}")
            return bad("inserted", f"it does not follow seq {prev_seq}: its link names no event in the log (forged)")
        count, prev_seq, prev_id, prev_hash, prev_link = count + 1, r.seq, r.id, r.hash, r
    if head is None:
        if count:
            return VerifyResult(False, count, prev_seq, prev_hash,
                                Bad("missing", None, None, "the chain head record (audit_chain_head) is gone"))
    elif head.seq > prev_seq:
        gap = f"seq {prev_seq + 1}" if head.seq == prev_seq + 1 else f"seq {prev_seq + 1} to {head.seq}"
        return VerifyResult(False, count, prev_seq, prev_hash,
                            Bad("missing", prev_seq + 1, None, f"the last events ({gap}) are gone: the recorded "
                                                               f"head is seq {head.seq}"))
    elif head.hash != prev_hash:
        return VerifyResult(False, count, prev_seq, prev_hash,
                            Bad("changed", prev_seq, prev_id, "the last event's hash is not the recorded head's"))
    return VerifyResult(True, count, prev_seq, prev_hash)


def verify(source: Session | Engine | Connection, batch: int = BATCH) -> VerifyResult:
    """Walk the whole chain; reads only. An engine gets one snapshot (REPEATABLE READ, read-only, on
    PostgreSQL; a deferred read on SQLite), so a bot writing meanwhile is not mistaken for tampering."""
    if isinstance(source, Session):
        return _walk(source.connection(), batch)
    if isinstance(source, Connection):
        return _walk(source, batch)
    with snapshot(source) as conn:
        return _walk(conn, batch)


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """One read-only view of the whole database for as long as it is open."""
    with engine.connect() as conn:
        options = {_UNIT: "read"}  # storage.db: a deferred BEGIN and query_only on SQLite, READ ONLY on PostgreSQL
        if engine.dialect.name == "postgresql":
            options["isolation_level"] = "REPEATABLE READ"
        conn.execution_options(**options)
        with conn.begin() as tx:
            yield conn
            tx.rollback()


def hash_at(source: Session | Connection, seq: int) -> Optional[tuple[int, str]]:
    """(id, stored hash) of the event at seq, or None."""
    conn = source.connection() if isinstance(source, Session) else source
    row = conn.execute(select(_events.c.id, _events.c.hash).where(_events.c.seq == seq).limit(1)).first()
    return (row.id, row.hash) if row else None


def latest_checkpoint(source: Session | Engine | Connection) -> Optional[AuditCheckpoint]:
    """The newest signed checkpoint (for the evidence packet), or None."""
    query = select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc(), AuditCheckpoint.id.desc()).limit(1)
    if isinstance(source, Engine):
        with Session(source) as session:
            return session.scalars(query).first()
    session = source if isinstance(source, Session) else Session(bind=source)
    return session.scalars(query).first()


