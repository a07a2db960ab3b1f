"""What the bot says about its own setup: the release channel it was not invited to."""
from __future__ import annotations

from bot.membership import INVITE
from bot.messages.common import esc


def not_in_channel(ref: str, channel: str) -> str:
    """To the requester, once per release and channel: their request stands, only its messages cannot go."""
    where = f"<#{channel}>" if channel[:1] in ("C", "G") and channel.isalnum() else esc(channel)
    return (f":warning: {esc(ref)} is recorded, but I cannot post its approval message: I am not a member of "
            f"{where} (the release channel). Someone in that channel needs to type `{INVITE}`; then the bot's "
            f"operators can send what was held back (`releasebot outbox --dead`, `--retry ID`). "
            f"`/release show {esc(ref)}` has the request meanwhile.")
