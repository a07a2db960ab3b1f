"""Small pieces every message uses: escaping, mentions, dates, Slack's limits."""
from __future__ import annotations

import re
from datetime import datetime

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


def clip(text: str, limit: int = TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text)}}


def context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text)}]}


def plain(text: str, limit: int = 150) -> dict:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}
