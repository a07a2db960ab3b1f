"""The Slack endpoint's body cap and signature check, on their own."""
from __future__ import annotations

import hashlib
import hmac
import io
import time

from bot.http_prologue import read_capped
from bot.server import signed

SECRET = b"unit-secret"


class Counting(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.asked = 0

    def read(self, size=-1):
        self.asked += size if size and size > 0 else len(self.getvalue())
        return super().read(size)


def test_a_declared_length_over_the_cap_is_refused_without_reading():
    stream = Counting(b"a" * 100)
    assert read_capped({"CONTENT_LENGTH": "101", "wsgi.input": stream}, 50) is None
    assert stream.asked == 0


def test_without_a_length_at_most_cap_plus_one_bytes_are_read():
    stream = Counting(b"a" * 10_000)
    assert read_capped({"wsgi.input": stream}, 50) is None
    assert stream.asked == 51
    assert read_capped({"wsgi.input": io.BytesIO(b"abc")}, 50) == b"abc"


def test_a_malformed_length_is_told_apart():
    assert read_capped({"CONTENT_LENGTH": "-1", "wsgi.input": io.BytesIO(b"")}, 50) is False


def sign(body: bytes, ts: str) -> str:
    return "v0=" + hmac.new(SECRET, b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()


def test_the_signature_is_checked_on_raw_bytes_even_when_they_are_not_utf8():
    ts, body = str(int(time.time())), b"x=\xff"
    assert signed(SECRET, body, ts, sign(body, ts))
    assert not signed(SECRET, body + b"1", ts, sign(body, ts))


def test_stale_or_malformed_timestamps_are_not_signed():
    old = str(int(time.time()) - 301)
    assert not signed(SECRET, b"x", old, sign(b"x", old))
    for ts in ("", "abc", "1e9", "٣٣", "9" * 40):
        assert not signed(SECRET, b"x", ts, sign(b"x", ts))
