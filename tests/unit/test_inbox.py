"""The inbox's claims (storage.inbox) and the worker pool's size (RELEASEBOT_WORKERS)."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from bot.config import ConfigError, load_config
from storage import inbox
from conftest import START

ENV = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "s", "RELEASE_CHANNEL": "C0RELEASE"}
LEASE = timedelta(seconds=60)


def test_the_worker_pool_size_comes_from_releasebot_workers():
    assert load_config(ENV).workers == 8
    assert load_config({**ENV, "RELEASEBOT_WORKERS": "3"}).workers == 3
    for bad in ("0", "many", "17", "-2"):
        with pytest.raises(ConfigError, match="RELEASEBOT_WORKERS '.*' is not a whole number from 1 to 16"):
            load_config({**ENV, "RELEASEBOT_WORKERS": bad})


def put(db, stream=None, kind="go"):
    return inbox.put(db, kind=kind, body={"type": "block_actions"}, context={}, now=START, stream=stream)


def test_a_claimed_row_is_held_until_its_lease_runs_out_then_anyone_takes_it(db):
    row_id = put(db)
    first = inbox.claim(db, START, LEASE)
    assert first.id == row_id and first.attempts == 1
    assert inbox.claim(db, START + timedelta(seconds=59), LEASE) is None
    again = inbox.claim(db, START + timedelta(seconds=61), LEASE)  # its claimer died
    assert again.id == row_id and again.attempts == 2
    assert not inbox.finish(db, first, START)  # the dead claimer's token no longer counts
    assert inbox.finish(db, again, START)
    assert inbox.claim(db, START + timedelta(hours=1), LEASE) is None


def test_one_persons_rows_are_applied_in_order_and_others_go_on(db):
    a1, a2, b1 = put(db, "user:A"), put(db, "user:A"), put(db, "user:B")
    first = inbox.claim(db, START, LEASE, row_id=a1)
    assert inbox.claim(db, START, LEASE, row_id=a2) is None  # waits for A's first
    assert inbox.claim(db, START, LEASE).id == b1  # B is not held up by A
    assert inbox.waiting(db, START) == 0
    inbox.finish(db, first, START)
    assert inbox.waiting(db, START) == 1
    assert inbox.claim(db, START, LEASE, stream="user:A").id == a2


def test_workers_claiming_at_once_each_get_a_different_row_read_back_as_claimed(db):
    ids = {put(db) for _ in range(24)}
    gate = threading.Barrier(8)

    def worker():
        gate.wait()
        mine = []
        while (row := inbox.claim(db, START, LEASE)) is not None:
            mine.append(row)
        return mine

    with ThreadPoolExecutor(8) as pool:
        claimed = [row for rows in pool.map(lambda _: worker(), range(8)) for row in rows]
    assert sorted(r.id for r in claimed) == sorted(ids)  # every row once, none twice
    assert {(r.attempts, r.claimed_until, r.kind, r.body["type"]) for r in claimed} == {
        (1, START + LEASE, "go", "block_actions")}
    assert len({r.claim_token for r in claimed}) == len(ids)
    assert all(inbox.finish(db, r, START) for r in claimed)  # each token is the one stored


def test_done_rows_are_pruned_after_a_day(db):
    put(db)
    inbox.finish(db, inbox.claim(db, START, LEASE), START)
    assert inbox.prune(db, START + timedelta(hours=1)) == 0
    assert inbox.prune(db, START + timedelta(days=2)) == 1


# A worker may die after a use case committed and before its inbox row was marked done; the row
# then runs again. The blackout use cases recognise that second run instead of doing it twice.

def test_the_same_blackout_added_twice_is_one_blackout(db, clock, policy):
    from sqlmodel import Session, select
    from commands.blackout import add_blackout
    from conftest import actor
    from storage.models import AuditEvent, Blackout
    raw = {"name": "Peak trading", "start": "2026-12-18 16:00", "end": "2027-01-04 08:00", "tz": "Europe/London"}
    first = add_blackout(db, actor("U0RM"), raw, clock, policy)
    again = add_blackout(db, actor("U0RM"), dict(raw), clock, policy)
    assert first.changed and not again.changed
    assert f"Blackout {first.data['blackout']} 'Peak trading' already exists" in again.message
    with Session(db) as s:
        assert len(s.exec(select(Blackout)).all()) == 1
        assert len(s.exec(select(AuditEvent).where(AuditEvent.action == "blackout_added")).all()) == 1
    other = add_blackout(db, actor("U0RM"), {**raw, "end": "2027-01-05 08:00"}, clock, policy)
    assert other.changed  # different times: a blackout of its own


def test_the_same_calendar_subscribed_twice_is_one_subscription(db, clock, policy):
    from sqlmodel import Session, select
    from calendars.netpolicy import NetPolicy
    from commands.blackout import subscribe
    from conftest import actor
    from storage.models import CalendarSubscription
    net = NetPolicy.build(resolver=lambda host, port: ["93.184.216.34"])
    raw = {"url": "https://calendar.test/h.ics", "name": "Holidays"}
    first = subscribe(db, actor("U0RM"), raw, clock, policy, net=net)
    again = subscribe(db, actor("U0RM"), dict(raw), clock, policy, net=net)
    assert first.changed and not again.changed and "already subscribed" in again.message
    with Session(db) as s:
        assert len(s.exec(select(CalendarSubscription)).all()) == 1


def test_a_row_that_claims_its_delivery_is_written_with_the_claim_or_not_at_all(db):
    from storage import replay as seen
    from storage.models import InboxRow, SeenDelivery
    from sqlmodel import Session, select

    first = inbox.put(db, kind="go", body={"type": "block_actions"}, context={}, now=START, claim="action:U0QA:1.2")
    with pytest.raises(seen.Claimed):
        inbox.put(db, kind="go", body={"type": "block_actions"}, context={}, now=START, claim="action:U0QA:1.2")
    with Session(db) as s:
        assert [r.id for r in s.exec(select(InboxRow))] == [first]
        assert [d.key for d in s.exec(select(SeenDelivery))] == ["action:U0QA:1.2"]
    assert not seen.claim(db, "action:U0QA:1.2", START)  # the claim is the one the replay guard checks
    assert seen.seen_already(db, "action:U0QA:1.2") and not seen.seen_already(db, "action:U0QA:9.9")


def test_the_http_threads_and_the_database_pool_come_from_the_environment():
    config = load_config(ENV)
    assert (config.http_threads, config.workers, config.db_pool) == (16, 8, 28)  # enough for every thread
    config = load_config({**ENV, "RELEASEBOT_HTTP_THREADS": "10", "RELEASEBOT_WORKERS": "4"})
    assert (config.http_threads, config.db_pool) == (10, 18)
    assert load_config({**ENV, "RELEASEBOT_DB_POOL": "40"}).db_pool == 40
    for bad in ("5", "65", "lots", "-8"):
        with pytest.raises(ConfigError, match="RELEASEBOT_HTTP_THREADS '.*' is not a whole number from 6 to 64"):
            load_config({**ENV, "RELEASEBOT_HTTP_THREADS": bad})
    for bad in ("23", "201", "x"):  # fewer than the 16 HTTP threads plus the 8 workers, or absurd
        with pytest.raises(ConfigError, match="RELEASEBOT_DB_POOL '.*' is not a whole number from 24 "):
            load_config({**ENV, "RELEASEBOT_DB_POOL": bad})


def test_the_engine_keeps_the_pool_it_is_given(tmp_path, db_url):
    from storage.db import make_engine

    for url in (f"sqlite:///{tmp_path}/pool.db", db_url):
        engine = make_engine(url, pool_size=31)
        try:
            assert engine.pool.size() == 31 and engine.pool._max_overflow == 31  # as many again in a burst
        finally:
            engine.dispose()
