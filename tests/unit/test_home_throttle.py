"""App Home's per-person cache and publish throttle (bot/home_cache.py), on an injected clock."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from commands.clock import FixedClock

from bot.home_cache import PUBLISHES, HomeCache

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def test_an_open_within_a_minute_redraws_from_the_data_read_and_a_later_one_reads_again():
    clock = FixedClock(NOW)
    cache = HomeCache(clock)
    assert cache.cached("U1") is None
    cache.store("U1", "read at 9:00")
    clock.advance(seconds=59)
    assert cache.cached("U1") == "read at 9:00"
    assert cache.cached("U2") is None  # keyed by person
    clock.advance(seconds=1)
    assert cache.cached("U1") is None  # a minute old: read the record again


def test_acting_on_the_tab_drops_that_persons_data_only():
    clock = FixedClock(NOW)
    cache = HomeCache(clock)
    cache.store("U1", "a")
    cache.store("U2", "b")
    cache.forget("U1")
    assert cache.cached("U1") is None and cache.cached("U2") == "b"


def test_publishes_are_limited_per_person_per_minute():
    clock = FixedClock(NOW)
    cache = HomeCache(clock)
    for _ in range(PUBLISHES):
        assert cache.may_publish("U1")
        clock.advance(seconds=1)
    assert not cache.may_publish("U1")
    assert cache.may_publish("U2")  # someone else is not held back
    clock.set(NOW + timedelta(seconds=60))  # the first publish has left the window
    assert cache.may_publish("U1")
    assert not cache.may_publish("U1")  # the second one (at 9:00:01) has not yet


def test_a_429_holds_that_persons_publishes_until_retry_after():
    clock = FixedClock(NOW)
    cache = HomeCache(clock)
    cache.hold("U1", 30)
    clock.advance(seconds=29)
    assert not cache.may_publish("U1")
    clock.advance(seconds=1)
    assert cache.may_publish("U1")
