"""commands.agenda's feed: UIDs qualified with the host, descriptions with the Slack thread and names,
removed blackouts aging out, and a revision that moves whenever any of that changes."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlmodel import Session

from commands import agenda
from commands.agenda import FeedContext, feed_events, feed_people, feed_revision, thread_link
from commands.blackout import add_blackout, remove_blackout
from conftest import START, actor
from storage.models import Release
from unit_support import new_release

BLACKOUT = {"name": "Close", "start": "2026-12-10 00:00", "end": "2026-12-11 00:00", "tz": "UTC"}
def utc(*a) -> datetime:
    return datetime(*a, tzinfo=timezone.utc)


CONTEXT = FeedContext(host="releasebot.example.com", workspace_url="https://acme.slack.com/",
                      names={"U0DEV": "Dana Dev"})


def posted(db, rid: int, ts: str, channel: str = "C0REL") -> None:
    with Session(db) as s:
        r = s.get(Release, rid)
        r.channel_id, r.message_ts = channel, ts
        s.add(r)
        s.commit()


def by_uid(db, now, context=CONTEXT) -> dict:
    return {e.uid: e for e in feed_events(db, now, context=context)}


def test_thread_link_is_slacks_permalink_form():
    assert thread_link("https://acme.slack.com/", "C0REL", "1700000000.000100") == \
        "https://acme.slack.com/archives/C0REL/p1700000000000100"
    assert thread_link(None, "C0REL", "1.2") is None and thread_link("https://acme.slack.com", None, None) is None


def test_uids_carry_the_host_and_the_description_links_the_thread_with_names(db, clock, policy):
    rid = new_release(db, clock, policy)
    add_blackout(db, actor("U0RM"), BLACKOUT, clock, policy)
    posted(db, rid, "1700000000.000100")
    evs = by_uid(db, START)
    assert set(evs) == {f"release-{rid}@releasebot.example.com", "blackout-1@releasebot.example.com"}
    text = evs[f"release-{rid}@releasebot.example.com"].description
    assert "Requested by Dana Dev" in text and "U0DEV" not in text
    assert "Slack thread: https://acme.slack.com/archives/C0REL/p1700000000000100" in text
    # a person Slack could not name is shown by id; without the workspace's address, no link
    bare = by_uid(db, START, FeedContext(host="h"))[f"release-{rid}@h"].description
    assert "Requested by U0DEV" in bare and "Slack thread" not in bare


def test_feed_people_are_the_requesters_in_the_window(db, clock, policy):
    new_release(db, clock, policy)
    new_release(db, clock, policy, start="2026-12-02 14:00", requester=actor("U0EL"))
    assert feed_people(db, START) == {"U0DEV", "U0EL"}
    assert feed_people(db, START, service="ledger") == set()


def test_the_revision_moves_when_the_approval_message_is_posted_and_when_it_is_posted_again(db, clock, policy):
    rid = new_release(db, clock, policy)
    before = feed_revision(db, START).fingerprint
    posted(db, rid, "1700000000.000100")
    first = feed_revision(db, START).fingerprint
    posted(db, rid, "1700000500.000100")  # the message was deleted and posted again
    assert len({before, first, feed_revision(db, START).fingerprint}) == 3


def test_a_removed_blackout_is_cancelled_for_the_policy_time_then_gone(db, clock, policy):
    add_blackout(db, actor("U0RM"), BLACKOUT, clock, policy)
    remove_blackout(db, actor("U0RM"), 1, clock)
    removed = clock.now()
    keep = timedelta(days=30)
    day = removed.replace(hour=0, minute=0)
    assert by_uid(db, day)["blackout-1@releasebot.example.com"].cancelled
    last = day + timedelta(days=30)  # removed mid-morning: still inside the 30 days at this midnight
    assert by_uid(db, last)["blackout-1@releasebot.example.com"].cancelled
    assert "blackout-1@releasebot.example.com" not in by_uid(db, last + timedelta(days=1))
    # a shorter policy time drops it sooner
    assert by_uid(db, day + timedelta(days=8), FeedContext(host="h", keep_cancelled=timedelta(days=7))) == {}
    # the revision's count of blackouts shown changes the day it leaves (not only the date)
    shown_then = feed_revision(db, last, keep_cancelled=keep).fingerprint[-1]
    shown_after = feed_revision(db, last + timedelta(days=1), keep_cancelled=keep).fingerprint[-1]
    assert (shown_then, shown_after) == ("1", "0")


def test_a_blackout_still_in_force_never_ages_out(db, clock, policy):
    add_blackout(db, actor("U0RM"), BLACKOUT, clock, policy)
    later = START + timedelta(days=60)  # long after keep_cancelled; inside the horizon (it ended 50 days ago)
    assert not by_uid(db, later)["blackout-1@releasebot.example.com"].cancelled
    assert agenda.feed_revision(db, later).fingerprint[-1] == "1"


def uids(db, now, **horizon) -> set[str]:
    return {e.uid.split("@")[0] for e in feed_events(db, now, context=FeedContext(host="h", **horizon))}


def test_the_feed_keeps_to_its_horizon_of_ninety_days_back_and_a_year_ahead(db, clock, policy):
    rid = new_release(db, clock, policy)  # 2026-12-01 14:00-15:00 UTC
    add_blackout(db, actor("U0RM"), BLACKOUT, clock, policy)  # one-off, ends 2026-12-11 00:00 UTC
    add_blackout(db, actor("U0RM"), {"name": "Sprint", "start": "2026-11-27 16:00", "end": "2026-11-27 18:00",
                                     "tz": "Europe/London", "repeat": "FREQ=WEEKLY;BYDAY=FR;COUNT=5"},
                 clock, policy)  # last occurrence 2026-12-25 16:00-18:00 UTC
    add_blackout(db, actor("U0RM"), {"name": "Friday", "start": "2026-11-27 16:00", "end": "2026-11-27 18:00",
                                     "tz": "Europe/London", "repeat": "FREQ=WEEKLY;BYDAY=FR"}, clock, policy)
    everything = {f"release-{rid}", "blackout-1", "blackout-2", "blackout-3"}
    assert uids(db, START) == everything
    # each leaves 90 days after it ended; a rule that goes on never does, though it began long before
    assert uids(db, utc(2027, 3, 1)) == everything  # the release ended 89 days before
    assert uids(db, utc(2027, 3, 2)) == everything - {f"release-{rid}"}
    assert uids(db, utc(2027, 3, 11)) == {"blackout-2", "blackout-3"}
    assert uids(db, utc(2027, 3, 26)) == {"blackout-3"}
    assert uids(db, utc(2030, 1, 1)) == {"blackout-3"}
    assert feed_people(db, utc(2027, 3, 2)) == set() and feed_people(db, utc(2027, 3, 1)) == {"U0DEV"}
    # ahead: what starts later than that is not in the feed yet; policy sets both
    assert uids(db, START, ahead=timedelta(days=7)) == {"blackout-2", "blackout-3"}
    assert uids(db, utc(2026, 12, 20), past=timedelta(days=7)) == {"blackout-2", "blackout-3"}


def test_the_revision_keeps_to_the_same_horizon(db, clock, policy):
    rid = new_release(db, clock, policy)
    later = utc(2027, 3, 2)  # the release ended more than 90 days before
    before = feed_revision(db, later).fingerprint
    posted(db, rid, "1700000000.000100")  # a change to a release outside the horizon does not move it
    assert feed_revision(db, later).fingerprint == before
    assert feed_revision(db, START).fingerprint != feed_revision(db, START, past=timedelta(days=30)).fingerprint
    assert feed_revision(db, START).fingerprint != feed_revision(db, START, ahead=timedelta(days=30)).fingerprint
