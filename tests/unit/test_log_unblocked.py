"""A log line never waits for whoever reads stderr: a thread answering Slack that logs must not hang when the
pipe behind stderr is full (benchmarks/ack_burst.py's children, whose stderr nobody read, stopped answering)."""
from __future__ import annotations

import io
import logging
import sys
import threading

import pytest

from bot import logging_safe

WAIT = 10  # seconds: a safety net for the events below, never a measure


class Unread(io.StringIO):
    """stderr whose reader has stopped: a write from any thread but `caller` blocks until `read` is set,
    as a write to a full pipe does; one from `caller` is recorded (and would have blocked)."""

    def __init__(self, caller: threading.Thread):
        super().__init__()
        self.caller, self.entered, self.read = caller, threading.Event(), threading.Event()
        self.on_caller: list[str] = []
        self.lines: list[str] = []
        self._written = threading.Condition()

    def write(self, text: str) -> int:
        if threading.current_thread() is self.caller:
            self.on_caller.append(text)
            return len(text)
        self.entered.set()
        assert self.read.wait(WAIT)
        with self._written:
            self.lines += text.splitlines()
            self._written.notify_all()
        return len(text)

    def wait_for_lines(self, n: int) -> bool:
        with self._written:
            return self._written.wait_for(lambda: len(self.lines) >= n, WAIT)


@pytest.fixture
def unread(monkeypatch):
    """`releasebot`'s logging, configured as at start, with stderr unread; restored afterwards."""
    stream = Unread(threading.current_thread())
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(logging_safe, "QUEUE_LINES", 3)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers[:] = []
    handler = None
    try:
        handler = logging_safe.configure(logging.INFO)
        yield stream, handler
    finally:
        stream.read.set()
        if handler is not None:
            handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def test_a_thread_that_logs_does_not_write_to_stderr_itself(unread):
    stream, handler = unread
    logging.getLogger("test.unread").warning("Task queue depth is %d", 48)
    assert stream.on_caller == []  # a StreamHandler wrote (and waited) here, on the thread that logged
    stream.read.set()
    handler.close()
    assert len(stream.lines) == 1 and stream.lines[0].endswith("WARNING test.unread: Task queue depth is 48")


def test_lines_past_the_queue_are_counted_and_the_count_is_written(unread):
    stream, handler = unread
    log = logging.getLogger("test.unread")
    log.warning("first")
    assert stream.entered.wait(WAIT)  # the writer holds "first", stuck in the write
    for i in range(5):  # three fit in the queue, two do not
        log.warning("line %d", i)
    stream.read.set()  # the reader is back, and reads what was queued
    assert stream.wait_for_lines(4)
    log.warning("after")
    handler.close()
    said = [line.split(": ", 1)[-1] if " test.unread: " in line else line for line in stream.lines]
    assert said == ["first", "line 0", "line 1", "line 2",
                    "2 log lines were dropped here: stderr was not read fast enough", "after"]
    assert stream.on_caller == []


def test_closing_writes_what_is_queued_and_does_not_wait_forever_for_a_reader(unread, monkeypatch):
    stream, handler = unread
    monkeypatch.setattr(logging_safe, "CLOSE_WAIT", 0.01)
    log = logging.getLogger("test.unread")
    log.warning("first")
    assert stream.entered.wait(WAIT)
    log.warning("second")
    handler.close()  # the reader never came back: close gives up instead of hanging the exit
    assert stream.lines == []
    stream.read.set()
