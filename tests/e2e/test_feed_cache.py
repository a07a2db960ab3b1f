"""The calendar feed is cheap to ask again: validators from its own revision, 304s, one render per revision,
and a per-token rate limit."""
from __future__ import annotations

import httpx
import pytest

from icalendar import Calendar

import bot.feed as feed_module
from conftest import serving, start_bot
from test_calendar import allow_bot, calendar_host, req  # noqa: F401 - fixtures


@pytest.fixture
def renders(monkeypatch):
    count = {"n": 0}
    render = feed_module.feed

    def counted(*args, **kwargs):
        count["n"] += 1
        return render(*args, **kwargs)

    monkeypatch.setattr(feed_module, "feed", counted)
    return count


def url_for(bot, user="U0DEV", service=None):
    return (f"{bot.url}/calendar.ics?token={feed_module.token_for(bot.svc, user)}"
            + (f"&service={service}" if service else ""))


def test_the_feed_has_validators_and_answers_a_matching_etag_with_304(bot, clock, renders):
    bot.command(req(), user="U0DEV")
    first = httpx.get(url_for(bot))
    assert first.status_code == 200 and first.headers["ETag"] and first.headers["Last-Modified"]
    clock.advance(minutes=5)
    again = httpx.get(url_for(bot), headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == first.headers["ETag"]
    clock.advance(minutes=5)
    since = httpx.get(url_for(bot), headers={"If-Modified-Since": first.headers["Last-Modified"]})
    assert since.status_code == 304 and since.content == b""
    assert renders["n"] == 1


def test_a_repeated_fetch_is_served_from_the_cache_until_something_changes(bot, clock, renders):
    bot.command(req(), user="U0DEV")
    first = httpx.get(url_for(bot, "U0DEV"))
    second = httpx.get(url_for(bot, "U0QA"))  # another person, the same feed
    assert second.content == first.content and renders["n"] == 1
    clock.advance(minutes=5)
    bot.command("cancel REL-1 reason=\"not needed\"", user="U0DEV")
    clock.advance(minutes=5)
    third = httpx.get(url_for(bot, "U0DEV"), headers={"If-None-Match": first.headers["ETag"]})
    assert third.status_code == 200 and third.headers["ETag"] != first.headers["ETag"]
    assert b"CANCELLED" in third.content and renders["n"] == 2


def test_a_new_blackout_changes_the_revision(bot, clock):
    first = httpx.get(url_for(bot))
    bot.command('blackout add name="Close" start="2026-11-30 00:00" end="2026-11-30 23:00" tz=UTC', user="U0RM")
    clock.advance(minutes=5)
    again = httpx.get(url_for(bot), headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 200 and b"Close" in again.content


def test_a_service_feed_has_its_own_cache_entry(bot, renders):
    bot.command(req(service="payments"), user="U0DEV")
    everything = httpx.get(url_for(bot, "U0DEV"))
    ledger = httpx.get(url_for(bot, "U0QA", service="ledger"))
    assert everything.content != ledger.content and renders["n"] == 2
    assert everything.headers["ETag"] != ledger.headers["ETag"]


def test_a_token_fetching_too_often_gets_429_with_retry_after(bot, clock):
    answers = [httpx.get(url_for(bot)) for _ in range(feed_module.FEED_BURST + 1)]
    assert [a.status_code for a in answers[:-1]] == [200] * feed_module.FEED_BURST
    assert answers[-1].status_code == 429 and int(answers[-1].headers["Retry-After"]) > 0
    assert httpx.get(url_for(bot, "U0QA")).status_code == 200  # another person's token is not limited
    clock.advance(seconds=int(answers[-1].headers["Retry-After"]))
    assert httpx.get(url_for(bot)).status_code == 200


def test_a_wrong_token_is_still_404_and_not_rate_limited_state(bot):
    for _ in range(feed_module.FEED_BURST + 2):
        assert httpx.get(f"{bot.url}/calendar.ics?token=U0DEV.0000").status_code == 404


def refetch(bot, first, user="U0QA", **kw) -> httpx.Response:
    """The same feed asked again as a client holding `first` would: with its ETag."""
    return httpx.get(url_for(bot, user, **kw), headers={"If-None-Match": first.headers["ETag"]})


def test_a_release_edit_moves_the_revision_and_is_rendered_again(bot, clock, renders):
    bot.command(req(), user="U0DEV")
    first = httpx.get(url_for(bot))
    assert refetch(bot, first).status_code == 304  # nothing changed: no render
    clock.advance(minutes=5)
    bot.command('edit REL-1 version=1.0.1 reason="typo"', user="U0DEV")
    again = refetch(bot, first, "U0EL")
    assert again.status_code == 200 and b"payments 1.0.1" in again.content and b"payments 1.0.0" not in again.content
    assert renders["n"] == 2


def test_a_removed_blackout_moves_the_revision_at_once(bot, clock, renders):
    bot.command('blackout add name="Close" start="2026-11-30 00:00" end="2026-11-30 23:00" tz=UTC', user="U0RM")
    first = httpx.get(url_for(bot))
    assert b"STATUS:CONFIRMED" in first.content
    clock.advance(minutes=5)
    bot.command("blackout remove 1", user="U0RM")
    again = refetch(bot, first)
    assert again.status_code == 200 and b"STATUS:CANCELLED" in again.content and renders["n"] == 2
    # and a client that only knows Last-Modified is told too
    since = httpx.get(url_for(bot, "U0EL"), headers={"If-Modified-Since": first.headers["Last-Modified"]})
    assert since.status_code == 200 and since.headers["ETag"] == again.headers["ETag"]


def test_a_subscription_refresh_that_brings_new_events_moves_the_revision(allow_bot, clock, calendar_host, renders):
    allow_bot.command(f'blackout subscribe url={calendar_host.url} name="Payroll" tz=Europe/London', user="U0RM")
    first = httpx.get(url_for(allow_bot))
    assert b"Payroll run" in first.content and b"Quarter close" not in first.content
    calendar_host.body = calendar_host.body.replace("SUMMARY:Payroll run\nEND:VEVENT\nBEGIN:VEVENT\nUID:weekly@test\n"
                                                    "RECURRENCE-ID", "SUMMARY:Quarter close\nEND:VEVENT\nBEGIN:"
                                                    "VEVENT\nUID:weekly@test\nRECURRENCE-ID", 1)
    calendar_host.etag = '"v2"'
    clock.advance(hours=3)
    allow_bot.svc.refresh_calendars()
    again = refetch(allow_bot, first)
    assert again.status_code == 200 and b"Blackout: Quarter close" in again.content and renders["n"] == 2
    assert refetch(allow_bot, again, "U0EL").status_code == 304  # and then it holds still


def test_the_feed_keeps_to_the_policy_horizon(db, clock, emulator):
    from commands.policy import Policy

    started = serving(start_bot(db, clock, Policy.from_mapping({"calendar": {"feed_ahead": "7d"}}), emulator))
    running = next(started)
    try:
        running.command(req(), user="U0DEV")  # 2026-12-01: 8 days after the clock's now
        running.command(req(service="ledger", start="2026-11-27 14:00"), user="U0DEV")
        body = httpx.get(url_for(running)).content
        assert {str(e["UID"]).split("@")[0] for e in Calendar.from_ical(body).walk("VEVENT")} == {"release-2"}
    finally:
        next(started, None)
