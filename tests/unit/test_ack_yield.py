"""Acks first (bot.inbox.AckYield): after-ack work starts only after a gap without acks, not in the moment
between two requests of one burst. The clock is the test's; every wait here has a timeout of 0, so whether
it is quiet is asked, never waited for."""
from __future__ import annotations

import threading

from bot.inbox import ACK_GAP, AckYield


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def answered(acks: AckYield) -> None:
    """One ack, answered at once."""
    list(acks.answering(lambda environ, start_response: [b""])({}, None))


def test_quiet_before_any_ack():
    assert AckYield(clock=Clock()).quiet(timeout=0)


def test_not_quiet_in_the_moment_after_an_ack_only_once_the_gap_has_passed():
    clock = Clock()
    acks = AckYield(clock=clock)
    answered(acks)
    assert not acks.quiet(timeout=0)  # the next request of the burst may be a couple of ms away
    clock.t += ACK_GAP / 2
    assert not acks.quiet(timeout=0)
    answered(acks)  # it came: the gap starts again
    clock.t += ACK_GAP * 0.75
    assert not acks.quiet(timeout=0)
    clock.t += ACK_GAP * 0.25
    assert acks.quiet(timeout=0)


def test_never_quiet_while_an_ack_is_being_answered():
    clock = Clock()
    acks = AckYield(clock=clock)
    inside, leave = threading.Event(), threading.Event()

    def slow(environ, start_response):
        inside.set()
        assert leave.wait(10)
        return [b""]

    answering = threading.Thread(target=lambda: list(acks.answering(slow)({}, None)))
    answering.start()
    try:
        assert inside.wait(10)
        clock.t += ACK_GAP * 10
        assert not acks.quiet(timeout=0)
    finally:
        leave.set()
        answering.join()
    assert not acks.quiet(timeout=0)  # just answered
    clock.t += ACK_GAP
    assert acks.quiet(timeout=0)
