"""Reads never wait for a writer; a write on the ack path waits about a second and then says Busy.

A write that holds the database (a long re-plan, a migration, another process) must not
starve anyone: what only reads runs in a read-only transaction that takes no write lock, and
what must answer Slack within its ack gives up on the lock after ACK_WAIT with `Busy`,
having written nothing, so the person can simply try again.
"""
from __future__ import annotations

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import DBAPIError

from commands.agenda import agenda, feed_events
from commands.blackout import add_blackout, due_subscriptions, list_blackouts, occurrences_of, subscription_status
from commands.deploy import Deployer, check_gate, never_approved, release_state
from commands.record import list_releases, show_release
from commands.release import request_release
from conftest import actor
from held_locks import writer_holds_the_database
from storage import outbox, replay
from storage.db import ACK_WAIT, Busy, ack_write, is_postgres, read, transaction
from storage.models import SeenDelivery
from unit_support import ANSWERS_FOR, RAW, counts, dev, new_release

PEAK = {"name": "Peak trading", "start": "2026-12-18 16:00", "end": "2027-01-04 08:00", "tz": "Europe/London"}


def test_every_read_goes_on_while_a_writer_holds_the_database(db, db_url, clock, policy):
    rid = new_release(db, clock, policy)
    assert add_blackout(db, actor("U0RM"), PEAK, clock, policy).changed
    with writer_holds_the_database(db_url):
        assert show_release(db, rid).release.ref == "REL-1"
        assert [r.id for r in list_releases(db, dev(), None, clock)] == [rid]
        assert [r.id for r in list_releases(db, dev(), "mine", clock)] == [rid]
        assert [i.kind for i in agenda(db, clock.now(), days=30)] == ["release", "blackout"]
        assert {e.uid for e in feed_events(db, clock.now())} == {"release-1@releasebot", "blackout-1@releasebot"}
        assert check_gate(db, rid, Deployer.of(actor("U0PL")), clock, {}, policy)  # not approved: reasons
        assert release_state(db, rid) == "pending" and never_approved(db, rid)
        [(b, upcoming)] = list_blackouts(db, clock.now())
        assert b.name == "Peak trading" and len(upcoming) == 1
        assert occurrences_of(db, b.id, clock.now()) == upcoming
        assert subscription_status(db) == {} and due_subscriptions(db) == []
        assert outbox.unsent(db)


def test_a_read_only_transaction_refuses_to_write(db, clock):
    with pytest.raises(DBAPIError):
        with read(db) as session:
            session.execute(insert(SeenDelivery.__table__).values(key="k", seen_at=clock.now()))
    with read(db) as session:
        assert session.execute(text("SELECT count(*) FROM seen_delivery")).scalar_one() == 0


def test_an_ack_path_write_is_busy_while_a_writer_holds_the_database_and_keeps_nothing(db, db_url, clock):
    with writer_holds_the_database(db_url):
        with pytest.raises(Busy):
            replay.claim(db, "command:T1", clock.now())
        with pytest.raises(Busy):
            with ack_write(db) as session:
                session.execute(insert(SeenDelivery.__table__).values(key="other", seen_at=clock.now()))
    # nothing was claimed: the same delivery, sent again, is the first
    assert replay.claim(db, "command:T1", clock.now()) is True
    assert replay.claim(db, "command:T1", clock.now()) is False


def test_a_request_on_the_ack_path_is_busy_and_writes_nothing(db, db_url, clock, policy):
    before = counts(db)
    with writer_holds_the_database(db_url):
        with pytest.raises(Busy):
            _request_in_ack(db, clock, policy)
    assert counts(db) == before
    out = _request_in_ack(db, clock, policy)
    assert out.changed and out.release.ref == "REL-1"


def _request_in_ack(db, clock, policy):
    return request_release(db, dev(), RAW, ANSWERS_FOR["minor"], clock, policy, request_key="view:V1",
                           lock_wait=ACK_WAIT)


def _lock_settings(session) -> tuple:
    if is_postgres(session.get_bind()):
        return (session.execute(text("SHOW lock_timeout")).scalar_one(),
                session.execute(text("SHOW statement_timeout")).scalar_one(),
                session.execute(text("SHOW transaction_read_only")).scalar_one())
    return (session.execute(text("PRAGMA busy_timeout")).scalar_one(),
            session.execute(text("PRAGMA query_only")).scalar_one())


def test_short_waits_and_read_only_end_with_their_transaction(db, db_url, clock):
    with transaction(db) as session:
        usual = _lock_settings(session)
    with read(db) as session:
        assert _lock_settings(session) != usual
    with writer_holds_the_database(db_url):
        with pytest.raises(Busy):
            replay.claim(db, "command:T2", clock.now())
    with ack_write(db) as session:
        assert _lock_settings(session) != usual
    # the pooled connection is the same one; after-ack work keeps the long wait and may write
    with transaction(db) as session:
        assert _lock_settings(session) == usual
        session.execute(insert(SeenDelivery.__table__).values(key="after", seen_at=clock.now()))


def test_only_deliveries_that_change_nothing_go_on_unclaimed_when_the_database_is_held():
    from bot.replay import changes_nothing
    command = lambda text: {"command": "/release", "text": text, "trigger_id": "T"}  # noqa: E731
    click = lambda action_id: {"type": "block_actions", "actions": [{"action_id": action_id}]}  # noqa: E731
    for text in ("show REL-1", "list mine", "calendar days=7", "blackout", "blackout list", "help", "deploy REL-1",
                 "nonsense"):
        assert changes_nothing(command(text)), text
    for text in ("go REL-1", "withdraw REL-1", "blackout add name=x", "blackout remove 3", "request service=a"):
        assert not changes_nothing(command(text)), text
    assert changes_nothing(click("deploy_start")) and changes_nothing(click("vote_nogo"))
    assert not changes_nothing(click("vote_go")) and not changes_nothing(click("signoff"))
    assert not changes_nothing({"type": "view_submission", "view": {"id": "V1"}})
