"""Small pieces every message uses: escaping, mentions, dates, Slack's limits."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Mapping
from zoneinfo import ZoneInfo

TEXT_LIMIT = 3000  # characters in one section's text
BLOCK_LIMIT = 50  # blocks in one message
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


def esc(text: object) -> str:
    """Escape the three characters Slack parses as control sequences, so user text
    can never become <!channel>, a mention or a link."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mention(user_id: str) -> str:
    return f"<@{user_id}>" if _USER_ID.match(user_id or "") else esc(user_id)


def date(dt: datetime, fmt: str = "{date_short_pretty} {time}") -> str:
    """Slack renders this in each reader's own time zone; the fallback is UTC."""
    fallback = dt.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(dt.timestamp())}^{fmt}|{fallback}>"


def window_echo(start: datetime, end: datetime, tz: str) -> str:
    """The one way a created or changed window is said back: each reader sees it in their own zone
    (<!date^…>), with the planning zone's wall clock beside it, so nobody has to trust a conversion."""
    z = ZoneInfo(tz)
    ls, le = start.astimezone(z), end.astimezone(z)
    same_day = ls.date() == le.date()
    planned = f"{ls:%a %d %b %H:%M}–{le:%H:%M}" if same_day else f"{ls:%a %d %b %H:%M} – {le:%a %d %b %H:%M}"
    end_fmt = "{time}" if same_day else "{date_short_pretty} {time}"
    return (f"<!date^{int(start.timestamp())}^{{date_short_pretty}} {{time}}|{ls:%Y-%m-%d %H:%M} {esc(tz)}>–"
            f"<!date^{int(end.timestamp())}^{end_fmt}|{le:%Y-%m-%d %H:%M} {esc(tz)}> your time "
            f"({planned} {esc(tz)})")


def outcome_text(message: str, data: Mapping[str, Any] | None = None) -> str:
    """A use case's plain message, escaped, then the window it created or moved (data["window"]:
    start, end, zone) and how an ambiguous start was read (data["reading"])."""
    text = esc(message)
    window = (data or {}).get("window")
    if window:
        text += f" Window: {window_echo(*window)}."
    if (data or {}).get("reading"):
        text += f" ({esc(data['reading'])}.)"
    return text


def clip(text: str, limit: int = TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text)}}


def context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text)}]}


def plain(text: str, limit: int = 150) -> dict:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}
