"""What the feed says, read over HTTP: UIDs qualified with the bot's public host, refresh hints from
policy, a HEAD that tells the real length, descriptions that link the release's Slack thread and
name people, and removed blackouts shown CANCELLED for a while, then gone."""
from __future__ import annotations

import http.client
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from icalendar import Calendar
from sqlmodel import Session

from conftest import serving, start_bot
from storage.models import Release
from test_calendar import req
from test_feed_cache import url_for


@pytest.fixture
def public_bot(db, clock, policy, emulator):
    yield from serving(start_bot(db, clock, policy, emulator,
                                 {"RELEASEBOT_PUBLIC_URL": "https://releasebot.example.com/slack-bot"}))


def events(body: bytes) -> dict:
    return {str(e["UID"]): e for e in Calendar.from_ical(body).walk("VEVENT")}


def test_uids_carry_the_public_host(public_bot):
    public_bot.command(req(), user="U0DEV")
    public_bot.command('blackout add name="Close" start="2026-11-30 00:00" end="2026-11-30 23:00" tz=UTC',
                       user="U0RM")
    assert set(events(httpx.get(url_for(public_bot)).content)) == {"release-1@releasebot.example.com",
                                                                   "blackout-1@releasebot.example.com"}


def test_without_a_public_url_uids_carry_the_host_the_client_asked_for(bot):
    bot.command(req(), user="U0DEV")
    got = httpx.get(url_for(bot), headers={"Host": "Releases.Corp.Example:8443"})
    assert set(events(got.content)) == {"release-1@releases.corp.example"}
    # a Host that is not a host name does not reach the UID
    odd = httpx.get(url_for(bot, "U0QA"), headers={"Host": "a b\\c"})
    assert set(events(odd.content)) == {"release-1@releasebot"}


def test_the_feed_asks_clients_to_refresh_as_policy_says(bot):
    cal = Calendar.from_ical(httpx.get(url_for(bot)).content)
    assert cal["REFRESH-INTERVAL"].params["VALUE"] == "DURATION"
    assert cal["REFRESH-INTERVAL"].to_ical() == b"PT1H"
    assert str(cal["X-PUBLISHED-TTL"]) == "PT1H"


def test_refresh_hints_follow_the_policy_key(db, clock, emulator):
    from commands.policy import Policy

    started = serving(start_bot(db, clock, Policy.from_mapping({"calendar": {"feed_refresh": "4h"}}), emulator))
    running = next(started)
    try:
        body = httpx.get(url_for(running)).content
        assert b"REFRESH-INTERVAL;VALUE=DURATION:PT4H\r\n" in body and b"X-PUBLISHED-TTL:PT4H\r\n" in body
    finally:
        next(started, None)


def head(url: str) -> tuple[int, dict, bytes]:
    """A raw HEAD, so the test sees what the server sent and not what a client library made of it."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("HEAD", f"{parts.path}?{parts.query}")
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_head_reports_the_real_length_and_etag_without_a_body(bot, clock):
    bot.command(req(), user="U0DEV")
    got = httpx.get(url_for(bot))
    status, headers, body = head(url_for(bot, "U0QA"))
    assert status == 200 and body == b""
    assert int(headers["content-length"]) == len(got.content) > 0
    assert headers["etag"] == got.headers["ETag"]


def thread_of(db, rid=1) -> tuple[str, str]:
    with Session(db) as s:
        r = s.get(Release, rid)
        return r.channel_id, r.message_ts


def test_a_release_links_its_slack_thread_and_names_the_requester(public_bot, db, clock):
    public_bot.command(req(), user="U0DEV")
    public_bot.deliver()
    channel, ts = thread_of(db)
    assert channel and ts
    clock.advance(minutes=1)
    httpx.get(url_for(public_bot))  # the first render learns the workspace's address and the names
    clock.advance(minutes=1)
    rel = events(httpx.get(url_for(public_bot, "U0QA")).content)["release-1@releasebot.example.com"]
    text = str(rel["DESCRIPTION"])
    assert f"Slack thread: https://emulated.slack.com/archives/{channel}/p{ts.replace('.', '')}" in text
    assert "Requested by u0dev" in text and "U0DEV" not in text  # the emulator's users have only a name
    assert len(public_bot.emulator.calls_to("auth.test")) == 1  # asked once, not per event or per render


def test_the_etag_moves_when_the_approval_message_is_posted(public_bot, db, clock):
    public_bot.emulator.fail_next("chat.postMessage", status=500)  # the send right after the commit
    public_bot.command(req(), user="U0DEV")
    assert thread_of(db) == (None, None)
    first = httpx.get(url_for(public_bot))
    assert "Slack thread" not in str(events(first.content)["release-1@releasebot.example.com"]["DESCRIPTION"])
    clock.advance(minutes=30)
    public_bot.deliver()
    assert thread_of(db)[1]
    again = httpx.get(url_for(public_bot, "U0QA"), headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 200
    assert "Slack thread: https://emulated.slack.com/archives/" in str(
        events(again.content)["release-1@releasebot.example.com"]["DESCRIPTION"])


def test_a_removed_blackout_is_cancelled_for_thirty_days_then_leaves_the_feed(public_bot, clock):
    public_bot.command('blackout add name="Close" start="2027-03-01 00:00" end="2027-03-02 00:00" tz=UTC',
                       user="U0RM")
    public_bot.command("blackout remove 1", user="U0RM")
    first = httpx.get(url_for(public_bot))
    assert str(events(first.content)["blackout-1@releasebot.example.com"]["STATUS"]) == "CANCELLED"
    clock.advance(days=29)
    later = events(httpx.get(url_for(public_bot, "U0QA")).content)
    assert str(later["blackout-1@releasebot.example.com"]["STATUS"]) == "CANCELLED"
    clock.advance(days=2)
    gone = httpx.get(url_for(public_bot, "U0EL"), headers={"If-None-Match": first.headers["ETag"]})
    assert gone.status_code == 200 and "blackout-1@releasebot.example.com" not in events(gone.content)


def test_names_are_looked_up_once_and_a_failed_lookup_shows_the_id(public_bot, clock):
    public_bot.command(req(), user="U0DEV")
    public_bot.command(req(service="ledger", start="2026-12-02 14:00"), user="U0EL")
    before = len(public_bot.emulator.calls_to("users.info"))  # the commands may have asked already

    def asked() -> list[str]:
        return [c.args.get("user") for c in public_bot.emulator.calls_to("users.info")[before:]]

    def requested_by(token_user: str) -> list[str]:
        evs = events(httpx.get(url_for(public_bot, token_user)).content)
        return [str(evs[f"release-{n}@releasebot.example.com"]["DESCRIPTION"]).split("Requested by ")[1]
                .split("\n")[0] for n in (1, 2)]

    public_bot.emulator.fail_next("users.info", status=500)
    # Slack failing: ids are shown, and the render asks no further (it holds a render slot)
    assert requested_by("U0DEV") == ["U0DEV", "U0EL"] and asked() == ["U0DEV"]
    clock.advance(hours=15)  # past midnight: the next day's feed is rendered, and the names asked for again
    assert requested_by("U0QA") == ["u0dev", "u0el"] and asked() == ["U0DEV", "U0DEV", "U0EL"]
    public_bot.command('blackout add name="Close" start="2026-12-20 00:00" end="2026-12-21 00:00" tz=UTC',
                       user="U0RM")
    assert requested_by("U0EL") == ["u0dev", "u0el"] and len(asked()) == 3  # rendered again, from the cache
    assert b"Blackout: Close" in httpx.get(url_for(public_bot, "U0EL")).content  # (it was a new render)
