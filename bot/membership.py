"""Is the bot in the release channel? Asked once at start-up, so a forgotten `/invite` is one log line, not
an approval message retrying `not_in_channel` in silence.

conversations.info answers `is_member` for the caller with the fewest scopes (channels:read for a public
channel, groups:read for a private one; manifest.yml asks for both).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from slack_sdk.errors import SlackApiError

INVITE = "/invite @releasebot"


@dataclass(frozen=True)
class Membership:
    channel: str
    member: Optional[bool]  # None: could not check
    why: str = ""  # what Slack said, when it could not be checked or the channel was not found

    def log_line(self) -> str:
        """The start-up log's one line about the channel."""
        if self.member:
            return f"channel: {self.channel}, the bot is a member"
        if self.member is False:
            return (f"channel: the bot is not a member of {self.channel} (RELEASE_CHANNEL){self.why}: nothing "
                    f"can be posted there. Type `{INVITE}` in that channel. Requests are still recorded; their "
                    "messages become dead letters (`releasebot outbox --dead`, then `--retry ID`)")
        return (f"channel: could not check that the bot is a member of {self.channel} ({self.why}); starting "
                f"anyway. If it is not, type `{INVITE}` in that channel")


def check(client, channel: str) -> Membership:
    """Never raises: Slack being down or a missing scope must not stop start-up."""
    try:
        info = client.conversations_info(channel=channel)
    except SlackApiError as exc:
        code = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        if code == "channel_not_found":
            # A private channel the bot is not in looks, to the bot, like no channel at all.
            return Membership(channel, False, " (Slack says channel_not_found: a private channel the bot is not "
                                              "in, or a wrong id)")
        if code == "missing_scope":
            return Membership(channel, None, "missing_scope: reinstall the app with channels:read and "
                                             "groups:read from manifest.yml")
        return Membership(channel, None, f"Slack answered {code or exc.response.status_code}")
    except OSError as exc:
        return Membership(channel, None, f"Slack unreachable: {exc}")
    is_member = (info.get("channel") or {}).get("is_member")
    if is_member is None:
        return Membership(channel, None, "Slack did not say")
    return Membership(channel, bool(is_member))
