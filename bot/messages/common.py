"""Small pieces every message uses: escaping, mentions, dates, Slack's limits, and splitting long text."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from commands.text import render_times

from bot.messages.ids import MORE_ACTION
from bot.times import planned_in

TEXT_LIMIT = 3000  # characters in one section's text
BLOCK_LIMIT = 50  # blocks in one message
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_SLACK_FORMAT = {"dt": "{date_short_pretty} {time}", "d": "{date_short_pretty}", "t": "{time}"}
_FALLBACK = {"dt": "%Y-%m-%d %H:%M UTC", "d": "%Y-%m-%d", "t": "%H:%M UTC"}
# The tokens a cut must never fall inside: <!date^…>, <@U…>, <!subteam^…>, and &amp; &lt; &gt;.
_TOKEN = re.compile(r"<[^<>\n]*>|&(?:amp|lt|gt);")


def esc(text: object) -> str:
    """Escape the three characters Slack parses as control sequences, so user text
    can never become <!channel>, a mention or a link. Then the time markers a sentence
    from commands/ carries (commands.text.when) become <!date^…>: made of characters
    no input may hold, they are never user text, and a typed look-alike was escaped above."""
    escaped = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return render_times(escaped, lambda dt, show, tz: date(dt, _SLACK_FORMAT[show], show) + planned_in(dt, show, tz))


def mention(user_id: str) -> str:
    return f"<@{user_id}>" if _USER_ID.match(user_id or "") else esc(user_id)


def date(dt: datetime, fmt: str = "{date_short_pretty} {time}", show: str | None = None) -> str:
    """Slack renders this in each reader's own time zone; the fallback is UTC."""
    fallback = dt.strftime(_FALLBACK[show or ("t" if fmt == "{time}" else "dt")])
    return f"<!date^{int(dt.timestamp())}^{fmt}|{fallback}>"


def cut_point(text: str, limit: int) -> int:
    """Where to cut `text` to at most `limit` characters: at a line break, else a space, and never
    inside a Slack token (a date token holds spaces) or an escape entity."""
    if len(text) <= limit:
        return len(text)
    lo = max(0, limit // 2)
    spans = [m.span() for m in _TOKEN.finditer(text, max(0, lo - 300), limit + 300)]

    def inside(at: int) -> bool:
        return any(a < at < b for a, b in spans)
    cut = limit
    while cut > lo and inside(cut):
        cut -= 1
    for sep in ("\n", " "):
        at = text.rfind(sep, lo, cut + 1)
        while at > lo and inside(at):
            at = text.rfind(sep, lo, at)
        if at > lo:
            return at
    return cut


def split(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """All of `text`, in pieces Slack takes, cut where cut_point says."""
    pieces = []
    while len(text) > limit:
        at = cut_point(text, limit)
        pieces.append(text[:at].rstrip())
        text = text[at:].lstrip("\n ")
    if text or not pieces:
        pieces.append(text)
    return pieces


def shorten(text: str, limit: int, more: str) -> str:
    """At most `limit` characters of (unescaped) text, ending in `more` when it had to be cut."""
    if len(text) <= limit:
        return text
    return text[:cut_point(text, limit - len(more) - 2)].rstrip() + "… " + more
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
    """The last resort for a text that must be one piece: cut, but never inside a token."""
    return text if len(text) <= limit else text[: cut_point(text, limit - 1)] + "…"


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text)}}


def sections(text: str) -> list[dict]:
    """A long text over as many sections as it needs, so nothing is cut off."""
    return [section(piece) for piece in split(text)]


def more_button(value: str) -> dict:
    """The "More" under a paged list: the next page is shown to the person who clicks, only to them."""
    return {"type": "actions", "block_id": f"more:{value}"[:255],
            "elements": [{"type": "button", "action_id": MORE_ACTION, "value": value, "text": plain("More")}]}


def context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text)}]}


def plain(text: str, limit: int = 150) -> dict:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}
