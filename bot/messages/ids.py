"""Ids of the paged lists' "More" button: one action, its value says which list and from where."""
from __future__ import annotations

MORE_ACTION = "list_more"
LISTS = ("releases", "blackouts")


def more_value(kind: str, which: str, offset: int) -> str:
    return f"{kind}:{which}:{offset}"


def parse_more(value: object) -> tuple[str, str, int] | None:
    """(list, filter, offset) from a button's value; None for anything the bot did not make."""
    kind, _, rest = str(value or "").partition(":")
    which, _, offset = rest.partition(":")
    if kind not in LISTS or not (offset.isascii() and offset.isdigit()) or len(offset) > 6:
        return None
    return kind, which, int(offset)
