"""Log lines that untrusted values cannot forge.

A request path, a header or a calendar's text with CR/LF in it would otherwise
write what looks like a second, made-up log line; other control characters
(ESC, NUL) can rewrite a terminal. The formatter escapes them in every record's
message, whoever logged it (slack_bolt, waitress, ours); `loggable` does the same
for a value on its own, where a module logs something a caller sent.

A log line never waits for whoever reads stderr (see Unblocked).
"""
from __future__ import annotations

import logging
import queue
import re
import sys
import threading
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUEUE_LINES = 10_000  # lines formatted and not yet written; past it, lines are counted and dropped
CLOSE_WAIT = 2.0  # seconds: at exit, how long the lines still queued may take to be written
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    c = match.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def loggable(value: object) -> str:
    """The value on one line: control characters written as repr writes them, without repr's quotes."""
    return _CONTROL.sub(_escape, str(value))


class SafeFormatter(logging.Formatter):
    """Escapes control characters in the formatted message (its arguments included). A traceback
    appended after it keeps its own lines: those are the program's, not the caller's."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = record.message
        record.message = loggable(message)
        try:
            return super().formatMessage(record)
        finally:
            record.message = message


class Unblocked(logging.Handler):
    """Lines formatted on the thread that logs, written to the stream by a thread of their own.

    A StreamHandler writes on the thread that logs, holding the handler's lock: when nobody reads stderr
    (a pipe whose reader stopped, a blocking log driver), the write blocks once the pipe's 64 KiB are full,
    and then every thread that logs waits for that lock. Under a burst of 64 requests waitress logs
    "Task queue depth" from its one socket thread, inside its task queue's lock: acks went unanswered,
    forever (benchmarks/ack_burst.py, whose children's stderr nobody read). Here a thread that logs only
    formats and queues; when QUEUE_LINES are waiting, further lines are dropped and counted, and the count
    is written before the next line that fits."""

    def __init__(self, stream: TextIO, capacity: int = QUEUE_LINES):
        super().__init__()
        self.stream = stream
        self._lines: queue.Queue = queue.Queue(capacity)
        self._dropped = 0
        self._count = threading.Lock()
        self._writer = threading.Thread(target=self._write, name="log-writer", daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - logging's own contract: a bad record never raises
            self.handleError(record)
            return
        with self._count:
            try:
                if self._dropped:
                    self._lines.put_nowait(f"{self._dropped} log lines were dropped here: stderr was not read "
                                           "fast enough")
                    self._dropped = 0
                self._lines.put_nowait(line)
            except queue.Full:
                self._dropped += 1

    def _write(self) -> None:
        while (line := self._lines.get()) is not None:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # stderr closed: nowhere left to say it
                pass

    def close(self) -> None:
        """Write what is queued (logging.shutdown calls this at exit), waiting at most CLOSE_WAIT seconds:
        an exit never hangs on a stderr nobody reads."""
        if not self._writer.is_alive():
            return super().close()
        try:
            self._lines.put(None, timeout=CLOSE_WAIT)
        except queue.Full:
            pass
        self._writer.join(CLOSE_WAIT)
        super().close()


def configure(level: int = logging.INFO) -> logging.Handler | None:
    """What `releasebot` does at start: one stderr handler, every line escaped, none waiting for stderr's
    reader. The handler, or None when logging was configured already (logging.basicConfig's rule)."""
    if logging.getLogger().handlers:
        return None
    handler = Unblocked(sys.stderr, QUEUE_LINES)
    handler.setFormatter(SafeFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    return handler
