"""Log lines that untrusted values cannot forge.

A request path, a header or a calendar's text with CR/LF in it would otherwise
write what looks like a second, made-up log line; other control characters
(ESC, NUL) can rewrite a terminal. The formatter escapes them in every record's
message, whoever logged it (slack_bolt, waitress, ours); `loggable` does the same
for a value on its own, where a module logs something a caller sent.
"""
from __future__ import annotations

import logging
import re

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
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


def configure(level: int = logging.INFO) -> None:
    """What `releasebot` does at start: one stderr handler, every line escaped."""
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
