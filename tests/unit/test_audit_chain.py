"""The audit log's hash chain, and tampering that really tampers: straight SQL with the append-only
triggers dropped, the way a database owner could. `verify` names the first bad event each time."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from storage import audit, audit_chain
from storage.db import is_postgres, transaction
from storage.models import AuditEvent

from conftest import START


def write(db, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        with transaction(db) as s:
            audit.record(s, actor=f"U{i}", action="vote_go", at=START + timedelta(minutes=i), reason=f"reason {i}",
                         before={"state": "pending"}, after={"state": "pending", "votes": [i, "ü"], "n": 1.5})


def sql(db, *statements: str, **params) -> None:
    """Raw SQL with the append-only triggers out of the way (and put back: the tamperer's tidy-up)."""
    from storage import audit_triggers
    pg = is_postgres(db)
    with db.begin() as conn:
        for st in audit_triggers.drop(pg):
            conn.exec_driver_sql(st)
        for st in statements:
            conn.execute(text(st), params)
        for st in audit_triggers.create(pg):
            conn.exec_driver_sql(st)


def row(db, seq: int) -> dict:
    with db.connect() as conn:
        return dict(conn.execute(text("SELECT * FROM audit_event WHERE seq = :s"), {"s": seq}).mappings().one())


def test_each_event_links_to_the_one_before_and_the_head_follows(db):
    write(db, 5)
    result = audit_chain.verify(db)
    assert result.ok and result.first_bad is None
    assert (result.count, result.head_seq) == (5, 5)
    rows = [row(db, s) for s in range(1, 6)]
    assert rows[0]["prev_hash"] == audit_chain.GENESIS
    assert [r["prev_hash"] for r in rows[1:]] == [r["hash"] for r in rows[:-1]]
    assert result.head_hash == rows[-1]["hash"]
    # The canonical form is what the docstring says: recompute one by hand.
    import hashlib
    r = rows[2]
    raw = ('{"action":"vote_go","actor":"U2","after":{"state":"pending","votes":[2,"ü"],"n":1.5},'
           '"at":"2026-11-23T09:02:00.000000Z","before":{"state":"pending"},"prev_hash":"' + rows[1]["hash"] +
           '","reason":"reason 2","release_id":null,"seq":3,"v":1}').encode()
    assert hashlib.sha256(raw).hexdigest() == r["hash"]
    # the JSON is stored as hashed: compact, keys in the order written (an approver set's order means something)
    with db.connect() as conn:
        stored = conn.execute(text('SELECT CAST("after" AS TEXT) FROM audit_event WHERE seq = 3')).scalar()
    assert stored == '{"state":"pending","votes":[2,"ü"],"n":1.5}'


def test_a_lone_surrogate_is_stored_escaped_and_still_verifies(db):
    """A delivery may carry text with no UTF-8 form; the value is written with \\u escapes and hashed as stored."""
    with transaction(db) as session:
        audit.record(session, actor="U1", action="request_refused", at=START, after={"text": "a\ud800b", "ok": "ü"})
    with db.connect() as conn:
        stored = conn.execute(text('SELECT CAST("after" AS TEXT) FROM audit_event WHERE seq = 1')).scalar()
    assert stored == '{"text":"a\\ud800b","ok":"\\u00fc"}'
    assert audit_chain.verify(db).ok


def test_an_empty_log_verifies(db):
    result = audit_chain.verify(db)
    assert result.ok and result.count == 0 and result.head_hash == audit_chain.GENESIS


def test_a_rolled_back_event_leaves_no_gap(db):
    write(db, 2)
    with pytest.raises(RuntimeError):
        with transaction(db) as s:
            audit.record(s, actor="U9", action="vote_go", at=START)
            raise RuntimeError("the decision failed after its audit event")
    write(db, 1, start=2)
    result = audit_chain.verify(db)
    assert result.ok and result.count == 3
    assert row(db, 3)["actor"] == "U2"


def test_an_edited_reason_is_named(db):
    write(db, 5)
    sql(db, "UPDATE audit_event SET reason = 'nothing to see' WHERE seq = 3")
    bad = audit_chain.verify(db).first_bad
    assert (bad.kind, bad.seq, bad.id) == ("changed", 3, row(db, 3)["id"])
    assert "content" in bad.detail


def test_an_edit_with_its_own_hash_recomputed_is_named(db):
    write(db, 5)
    r = row(db, 3)
    forged = audit_chain.event_hash(seq=3, prev_hash=r["prev_hash"], release_id=None, actor="U2", action="vote_go",
                                    at=START + timedelta(minutes=2), reason="nothing to see",
                                    before={"state": "pending"}, after={"state": "pending", "votes": [2, "ü"], "n": 1.5})
    sql(db, "UPDATE audit_event SET reason = 'nothing to see', hash = :h WHERE seq = 3", h=forged)
    bad = audit_chain.verify(db).first_bad
    assert (bad.kind, bad.seq, bad.id) == ("changed", 3, r["id"])


def test_a_deleted_event_is_named_missing(db):
    write(db, 5)
    sql(db, "DELETE FROM audit_event WHERE seq = 2")
    result = audit_chain.verify(db)
    assert not result.ok and result.count == 1
    bad = result.first_bad
    assert (bad.kind, bad.seq) == ("missing", 2)
    assert f"id {row(db, 3)['id']}" in bad.detail


def test_the_last_events_deleted_are_named_missing(db):
    write(db, 5)
    sql(db, "DELETE FROM audit_event WHERE seq >= 4")
    bad = audit_chain.verify(db).first_bad
    assert (bad.kind, bad.seq) == ("missing", 4)


def test_a_forged_row_at_the_end_is_named_inserted(db):
    write(db, 3)
    head = row(db, 3)
    sql(db, "INSERT INTO audit_event (actor, action, at, reason, before, after, seq, prev_hash, hash) "
            "VALUES ('U0RM', 'approved', :at, 'forged', '{}', '{}', 4, :p, :h)",
        at=START.replace(tzinfo=None) if not is_postgres(db) else START, p=head["hash"], h="f" * 64)
    bad = audit_chain.verify(db).first_bad
    assert (bad.kind, bad.seq) == ("inserted", 4)


def test_a_forged_row_slipped_into_the_middle_with_a_good_hash_is_named_inserted(db):
    write(db, 5)
    before = row(db, 2)
    at = START + timedelta(minutes=1, seconds=30)
    h = audit_chain.event_hash(seq=3, prev_hash=before["hash"], release_id=None, actor="U0RM", action="approved",
                               at=at, reason="forged", before={}, after={})
    # Make room at seq 3 (the unique constraint would refuse a second one), then forge it.
    sql(db, "UPDATE audit_event SET seq = seq + 100 WHERE seq >= 3", "UPDATE audit_event SET seq = seq - 99 WHERE seq > 100",
        "INSERT INTO audit_event (actor, action, at, reason, before, after, seq, prev_hash, hash) "
        "VALUES ('U0RM', 'approved', :at, 'forged', '{}', '{}', 3, :p, :h)",
        at=at.replace(tzinfo=None) if not is_postgres(db) else at, p=before["hash"], h=h)
    bad = audit_chain.verify(db).first_bad
    assert (bad.kind, bad.seq, bad.id) == ("inserted", 3, row(db, 3)["id"])
    assert row(db, 3)["reason"] == "forged"


def test_two_events_swapped_are_named_reordered(db):
    write(db, 5)
    sql(db, "UPDATE audit_event SET seq = 100 WHERE seq = 2", "UPDATE audit_event SET seq = 2 WHERE seq = 4",
        "UPDATE audit_event SET seq = 4 WHERE seq = 100")
    bad = audit_chain.verify(db).first_bad
    assert (bad.kind, bad.seq) == ("reordered", 2)
    assert "written at seq 4" in bad.detail


def test_a_full_rewrite_with_recomputed_hashes_passes_the_chain_alone(db):
    """What the chain cannot see, and why checkpoints exist (test_audit_checkpoints catches it)."""
    write(db, 4)
    rewrite(db, 2, "nothing to see")
    result = audit_chain.verify(db)
    assert result.ok and result.count == 4


def rewrite(db, seq: int, reason: str) -> None:
    """Change one event's reason and recompute every hash from it on, head included: a careful tamperer."""
    with db.connect() as conn:
        rows = [dict(r) for r in conn.execute(text("SELECT id FROM audit_event ORDER BY seq")).mappings()]
    from sqlmodel import Session, select
    with Session(db) as s:
        events = list(s.exec(select(AuditEvent).order_by(AuditEvent.seq)))
    statements, prev = [], audit_chain.GENESIS
    params = {}
    for e in events:
        if e.seq == seq:
            e.reason = reason
        h = audit_chain.event_hash(seq=e.seq, prev_hash=prev, release_id=e.release_id, actor=e.actor, action=e.action,
                                   at=e.at, reason=e.reason, before=e.before, after=e.after)
        statements.append(f"UPDATE audit_event SET reason = :r{e.id}, prev_hash = :p{e.id}, hash = :h{e.id} "
                          f"WHERE id = {e.id}")
        params.update({f"r{e.id}": e.reason, f"p{e.id}": prev, f"h{e.id}": h})
        prev = h
    statements.append("UPDATE audit_chain_head SET hash = :head")
    sql(db, *statements, head=prev, **params)
    assert rows


def test_events_written_around_the_head_are_named_inserted(db):
    write(db, 3)
    sql(db, "UPDATE audit_chain_head SET seq = 2")
    bad = audit_chain.verify(db).first_bad
    assert (bad.kind, bad.seq) == ("inserted", 3)


def test_the_walk_pages_through_a_long_log(db):
    write(db, 23)
    sql(db, "UPDATE audit_event SET actor = 'U0EVIL' WHERE seq = 17")
    result = audit_chain.verify(db, batch=5)
    assert (result.first_bad.kind, result.first_bad.seq, result.count) == ("changed", 17, 16)


def test_the_log_stays_append_only_for_the_bot(db):
    write(db, 2)
    for st in ("UPDATE audit_event SET reason = 'x' WHERE seq = 1", "DELETE FROM audit_event WHERE seq = 1"):
        with pytest.raises(Exception, match="append-only"):
            with db.begin() as conn:
                conn.execute(text(st))


def test_the_migration_chains_the_events_already_there(tmp_path):
    """0015 on a database at 0014 with events in it: they are chained in id order, and the triggers that
    had to go for that are back."""
    from storage.db import make_engine
    from storage.migrate import upgrade
    from conftest import PG_URL
    if PG_URL:
        url = _fresh_pg(tmp_path)
    else:
        url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    try:
        upgrade(engine, "0014")
        with engine.begin() as conn:
            for i in range(7):
                conn.execute(text("INSERT INTO audit_event (actor, action, at, reason, before, after) "
                                  "VALUES (:a, 'requested', :at, NULL, '{}', :after)"),
                             {"a": f"U{i}", "at": (START + timedelta(hours=i)) if PG_URL
                              else (START + timedelta(hours=i)).replace(tzinfo=None), "after": '{"b": 1, "a": [2]}'})
        upgrade(engine)
        result = audit_chain.verify(engine)
        assert result.ok and result.count == 7
        with transaction(engine) as s:
            audit.record(s, actor="U9", action="vote_go", at=START)
        assert audit_chain.verify(engine).count == 8
        with pytest.raises(Exception, match="append-only"):
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM audit_event WHERE seq = 1"))
    finally:
        engine.dispose()
        if PG_URL:
            _drop_pg(url)


def _fresh_pg(tmp_path) -> str:
    import uuid
    from storage.db import make_engine, normalise_url
    from conftest import PG_URL
    name = f"releasebot_mig_{uuid.uuid4().hex[:8]}"
    admin = make_engine(PG_URL)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return normalise_url(PG_URL).rsplit("/", 1)[0] + f"/{name}"


def _drop_pg(url: str) -> None:
    from storage.db import make_engine
    from conftest import PG_URL
    admin = make_engine(PG_URL)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def test_only_the_chaining_of_a_new_event_gets_past_the_triggers(db):
    """A row without a seq (written around the bot) may be given one and nothing else, which is no more
    than inserting it with one; its content stays as written."""
    write(db, 1)
    pg = is_postgres(db)
    with db.begin() as conn:
        conn.execute(text("INSERT INTO audit_event (actor, action, at, before, after) VALUES ('U0X', 'forged', :at, "
                          "'{}', '{}')"), {"at": START if pg else START.replace(tzinfo=None)})
    with pytest.raises(Exception, match="append-only"):
        with db.begin() as conn:
            conn.execute(text("UPDATE audit_event SET seq = 2, reason = 'x' WHERE seq IS NULL"))
    assert audit_chain.verify(db).first_bad.kind == "inserted"


# PostgreSQL only, so defined only there (a skipped test would count for nothing): SQLite lets one writer
# in at a time, so its transactions cannot interleave locks.
if __import__("conftest").PG_URL:
    def test_a_release_row_locked_after_an_audit_event_does_not_deadlock_with_a_vote(db):
        """A re-plan audits one release and then locks the next; a vote on that next one locks it and then
        audits. With the head taken at the first audit event these two deadlocked; taken at commit, they wait
        for each other in turn."""
        import threading
        from sqlmodel import Session
        from storage.models import Blackout
        with Session(db) as s:
            s.add(Blackout(name="b", start_local=START.replace(tzinfo=None), tz="UTC", created_by="U0RM",
                           end_local=START.replace(tzinfo=None) + timedelta(days=1), created_at=START))
            s.commit()
        locked, audited = threading.Event(), threading.Event()
        errors = []

        def replan():
            try:
                with transaction(db) as s:
                    audit.record(s, actor="releasebot", action="planning_checked", at=START)
                    audited.set()
                    assert locked.wait(30)
                    s.execute(text("SELECT id FROM blackout WHERE id = 1 FOR UPDATE"))  # waits for the vote
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        def vote():
            try:
                with transaction(db) as s:
                    s.execute(text("SELECT id FROM blackout WHERE id = 1 FOR UPDATE"))
                    locked.set()
                    assert audited.wait(30)
                    audit.record(s, actor="U0RM", action="vote_go", at=START)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=replan), threading.Thread(target=vote)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        result = audit_chain.verify(db)
        assert result.ok and result.count == 2


def test_an_event_rolled_back_with_its_savepoint_takes_no_place(db):
    """SQLite gives the next row the id the rolled-back one had: the chain must hash the row that stayed."""
    write(db, 1)
    with transaction(db) as s:
        with pytest.raises(RuntimeError):
            with s.begin_nested():
                audit.record(s, actor="U0GONE", action="vote_go", at=START, reason="rolled back")
                raise RuntimeError
        audit.record(s, actor="U0KEPT", action="vote_go", at=START, reason="kept")
    result = audit_chain.verify(db)
    assert result.ok and result.count == 2, result.first_bad
    assert row(db, 2)["actor"] == "U0KEPT"
