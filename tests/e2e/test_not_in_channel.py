"""The bot was never invited to the release channel: the requester is told, once per release, and /healthz
counts what could not be posted."""
from __future__ import annotations

import httpx

from conftest import CHANNEL

LINE = ('request service=payments version={v} type=minor flags=feature start="2026-12-01 14:00" '
        'tz=Europe/London duration=60m summary="Add refunds" rollback="redeploy"')


def dms_to(emu, user: str) -> list[str]:
    return [c.args["text"] for c in emu.calls_to("chat.postMessage") if c.ok and c.args.get("channel") == user]


def health(bot) -> dict:
    return httpx.get(f"{bot.url}/healthz", timeout=10).json()


def test_the_requester_hears_once_per_release_which_channel_to_invite_the_bot_to(bot):
    bot.emulator.not_member.add(CHANNEL)
    bot.command(LINE.format(v="2.3.1"), user="U0DEV")
    # the approval post failed, and the requester heard why in the same run, without waiting for a tick
    [refused] = bot.emulator.calls_to("chat.postMessage")[:1]
    assert refused.response["error"] == "not_in_channel"
    [dm] = dms_to(bot.emulator, "U0DEV")
    assert f"<#{CHANNEL}>" in dm and "/invite @releasebot" in dm and "REL-1 is recorded" in dm
    assert "REL-1 requested" in bot.emulator.said_to("U0DEV")[0]  # the request itself stands
    # every later message of REL-1 fails the same way; the requester is not told again
    bot.command("go REL-1", user="U0QA")
    bot.command("go REL-1", user="U0EL")
    bot.deliver()
    assert len(dms_to(bot.emulator, "U0DEV")) == 1
    dead = [c for c in bot.emulator.calls_to("chat.postMessage") if c.response.get("error") == "not_in_channel"]
    assert len(dead) >= 2 and health(bot) == {"status": "ok", "not_in_channel": len(dead)}
    # another release is another notice
    bot.command(LINE.format(v="2.3.2"), user="U0DEV")
    assert [d.split(" is recorded")[0] for d in dms_to(bot.emulator, "U0DEV")] == [":warning: REL-1", ":warning: REL-2"]


def test_a_private_channel_the_bot_cannot_see_is_told_the_same_way(bot):
    bot.emulator.fail_next("chat.postMessage", error="channel_not_found")
    bot.command(LINE.format(v="2.3.1"), user="U0DEV")
    [dm] = dms_to(bot.emulator, "U0DEV")
    assert "/invite @releasebot" in dm
    assert health(bot)["not_in_channel"] == 1


def test_healthz_counts_nothing_when_the_bot_is_in_the_channel(bot):
    bot.command(LINE.format(v="2.3.1"), user="U0DEV")
    bot.deliver()
    assert health(bot) == {"status": "ok", "not_in_channel": 0} and dms_to(bot.emulator, "U0DEV") == []
