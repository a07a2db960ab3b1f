"""What every signed endpoint does before it checks a signature: POST only, the body capped and read once,
and plain-text answers. Slack's /slack/events (bot.server.verified) and GitHub's /github/webhook
(bot.github.webhook) share it, so the two cannot drift apart on a malformed or oversized request."""
from __future__ import annotations

from typing import Union

_TEXT = [("Content-Type", "text/plain; charset=utf-8")]


def plain(start_response, status: str, body: bytes, headers=()) -> list[bytes]:
    start_response(status, [*_TEXT, ("Content-Length", str(len(body))), *headers])
    return [body]


def read_capped(environ, cap: int) -> bytes | None | bool:
    """The body, or None when it is longer than `cap`, or False when Content-Length is not a number.
    Content-Length is checked before reading; without one (a chunked body) at most cap + 1 bytes are read."""
    stream = environ.get("wsgi.input")
    declared = (environ.get("CONTENT_LENGTH") or "").strip()
    if declared:
        if not declared.isdigit():
            return False
        length = int(declared)
        if length > cap:
            return None
        return stream.read(length) if length and stream is not None else b""
    body = stream.read(cap + 1) if stream is not None else b""
    return None if len(body) > cap else body


class Answered(list):
    """The answer already given (405, 413 or 400): the endpoint returns it as it is."""


def posted_body(environ, start_response, cap: int) -> Union[bytes, Answered]:
    """The POSTed body, read once and at most `cap` bytes, or the answer given when there is none to read."""
    if environ.get("REQUEST_METHOD") != "POST":
        return Answered(plain(start_response, "405 Method Not Allowed", b"POST only\n", [("Allow", "POST")]))
    body = read_capped(environ, cap)
    if body is None:
        return Answered(plain(start_response, "413 Content Too Large", b"request body too large\n"))
    if body is False:
        return Answered(plain(start_response, "400 Bad Request", b"malformed Content-Length\n"))
    return body
