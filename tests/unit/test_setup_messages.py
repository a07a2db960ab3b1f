"""What the bot says about its own setup: the release channel it is not in."""
from __future__ import annotations

from bot.membership import Membership
from bot.messages.setup import not_in_channel


def test_the_requester_notice_names_the_channel_the_invite_and_that_the_request_stands():
    text = not_in_channel("REL-7", "C0RELEASES")
    assert "<#C0RELEASES>" in text and "`/invite @releasebot`" in text and "REL-7 is recorded" in text
    assert "/release show REL-7" in text and len(text) < 3000


def test_a_channel_that_is_not_an_id_is_shown_escaped_never_as_a_mention():
    text = not_in_channel("REL-7", "<!channel>")
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text


def test_the_start_up_line_says_member_not_member_or_could_not_check():
    assert Membership("C1", True).log_line() == "channel: C1, the bot is a member"
    missing = Membership("C1", False).log_line()
    assert "not a member of C1" in missing and "/invite @releasebot" in missing
    unknown = Membership("C1", None, "Slack unreachable: refused").log_line()
    assert "could not check" in unknown and "Slack unreachable: refused" in unknown
