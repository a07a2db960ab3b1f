"""calendars.ics: reading a subscribed calendar (recurrences expanded, RECURRENCE-ID overrides applied,
cancelled instances dropped, all-day events read in a zone) and writing the published feed, which is
read back here with icalendar itself."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from icalendar import Calendar

from calendars import ics
from calendars.ics import CalendarError, FeedEvent, ImportedEvent, feed, occurrences
from commands import agenda
from commands.blackout import add_blackout, remove_blackout
from commands.release import cancel_release
from conftest import START, actor
from unit_support import new_release

UTC = timezone.utc
STAMP = datetime(2026, 11, 23, 9, tzinfo=UTC)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def vcalendar(*events: str) -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//test//EN\r\n" + "".join(events)
            + "END:VCALENDAR\r\n")


def vevent(*lines: str) -> str:
    return "BEGIN:VEVENT\r\nDTSTAMP:20260101T000000Z\r\n" + "".join(f"{l}\r\n" for l in lines) + "END:VEVENT\r\n"


# Weekly Friday 16:00–18:00 London, six times from 2 October 2026 (across the 25 October change);
# the 16 October one moved to 12:00–13:00 and renamed; the 23 October one cancelled.
WEEKLY = [
    vevent("UID:weekly@test", "DTSTART;TZID=Europe/London:20261002T160000",
           "DTEND;TZID=Europe/London:20261002T180000", "RRULE:FREQ=WEEKLY;COUNT=6", "SUMMARY:Weekly freeze"),
    vevent("UID:weekly@test", "RECURRENCE-ID;TZID=Europe/London:20261016T160000",
           "DTSTART;TZID=Europe/London:20261016T120000", "DTEND;TZID=Europe/London:20261016T130000",
           "SUMMARY:Moved freeze"),
    vevent("UID:weekly@test", "RECURRENCE-ID;TZID=Europe/London:20261023T160000",
           "DTSTART;TZID=Europe/London:20261023T160000", "DTEND;TZID=Europe/London:20261023T180000",
           "STATUS:CANCELLED", "SUMMARY:Weekly freeze"),
]


# --- in -----------------------------------------------------------------------------------------------------------

def test_recurrence_with_override_and_cancelled_instance():
    got = occurrences(vcalendar(*WEEKLY), utc(2026, 1, 1), utc(2027, 1, 1))
    assert got == [
        ImportedEvent("weekly@test", "Weekly freeze", utc(2026, 10, 2, 15), utc(2026, 10, 2, 17)),  # BST
        ImportedEvent("weekly@test", "Weekly freeze", utc(2026, 10, 9, 15), utc(2026, 10, 9, 17)),
        ImportedEvent("weekly@test", "Moved freeze", utc(2026, 10, 16, 11), utc(2026, 10, 16, 12)),  # override
        # 23 October: cancelled, dropped
        ImportedEvent("weekly@test", "Weekly freeze", utc(2026, 10, 30, 16), utc(2026, 10, 30, 18)),  # GMT
        ImportedEvent("weekly@test", "Weekly freeze", utc(2026, 11, 6, 16), utc(2026, 11, 6, 18)),
    ]


def test_exdate_drops_an_instance():
    text = vcalendar(vevent("UID:x@test", "DTSTART:20261201T100000Z", "DTEND:20261201T110000Z",
                            "RRULE:FREQ=DAILY;COUNT=3", "EXDATE:20261202T100000Z", "SUMMARY:Daily"))
    assert [e.start for e in occurrences(text, utc(2026, 1, 1), utc(2027, 1, 1))] == [utc(2026, 12, 1, 10),
                                                                                       utc(2026, 12, 3, 10)]


def test_a_wholly_cancelled_event_is_dropped():
    text = vcalendar(vevent("UID:c@test", "DTSTART:20261201T100000Z", "DTEND:20261201T110000Z", "STATUS:CANCELLED",
                            "SUMMARY:Off"),
                     vevent("UID:k@test", "DTSTART:20261201T120000Z", "DTEND:20261201T130000Z", "SUMMARY:On"))
    assert [e.uid for e in occurrences(text, utc(2026, 1, 1), utc(2027, 1, 1))] == ["k@test"]


def test_all_day_events_are_read_in_the_given_zone():
    text = vcalendar(
        vevent("UID:xmas@test", "DTSTART;VALUE=DATE:20261225", "DTEND;VALUE=DATE:20261227", "SUMMARY:Christmas"),
        vevent("UID:july@test", "DTSTART;VALUE=DATE:20260704", "SUMMARY:Fourth"),  # no DTEND: one day
    )
    ny = occurrences(text, utc(2026, 1, 1), utc(2027, 1, 1), "America/New_York")
    assert ny == [ImportedEvent("july@test", "Fourth", utc(2026, 7, 4, 4), utc(2026, 7, 5, 4)),  # EDT midnight
                  ImportedEvent("xmas@test", "Christmas", utc(2026, 12, 25, 5), utc(2026, 12, 27, 5))]  # EST
    london = occurrences(text, utc(2026, 1, 1), utc(2027, 1, 1), "Europe/London")
    assert [(e.start, e.end) for e in london] == [(utc(2026, 7, 3, 23), utc(2026, 7, 4, 23)),
                                                  (utc(2026, 12, 25), utc(2026, 12, 27))]


def test_an_all_day_event_spanning_a_dst_change_ends_at_local_midnight():
    text = vcalendar(vevent("UID:w@test", "DTSTART;VALUE=DATE:20261024", "DTEND;VALUE=DATE:20261027",
                            "SUMMARY:Long weekend"))
    [e] = occurrences(text, utc(2026, 1, 1), utc(2027, 1, 1), "Europe/London")
    assert (e.start, e.end) == (utc(2026, 10, 23, 23), utc(2026, 10, 27))
    assert e.end - e.start == timedelta(days=3, hours=1)


def test_floating_times_are_read_in_the_zone_and_duration_is_used():
    text = vcalendar(vevent("UID:f@test", "DTSTART:20260701T090000", "DURATION:PT2H30M", "SUMMARY:Floating"))
    [e] = occurrences(text, utc(2026, 1, 1), utc(2027, 1, 1), "Europe/London")
    assert (e.start, e.end) == (utc(2026, 7, 1, 8), utc(2026, 7, 1, 10, 30))


def test_events_without_length_or_start_are_skipped_and_summary_defaults():
    text = vcalendar(vevent("UID:i@test", "DTSTART:20261201T100000Z", "SUMMARY:Instant"),  # a DATE-TIME, no end
                     vevent("UID:n@test", "DTSTART:20261201T100000Z", "DTEND:20261201T110000Z"))
    assert occurrences(text, utc(2026, 1, 1), utc(2027, 1, 1)) == [
        ImportedEvent("n@test", "event", utc(2026, 12, 1, 10), utc(2026, 12, 1, 11))]


def test_only_events_overlapping_the_range_are_returned():
    got = occurrences(vcalendar(*WEEKLY), utc(2026, 10, 9, 16), utc(2026, 10, 30, 16))
    # the 9 October one is still running at the start; the 30 October one starts as the range ends
    assert [e.start for e in got] == [utc(2026, 10, 9, 15), utc(2026, 10, 16, 11)]


@pytest.mark.parametrize("text", ["hello", "", "BEGIN:VEVENT\r\nUID:x\r\nEND:VEVENT\r\n"])
def test_not_a_calendar_is_a_calendar_error(text):
    with pytest.raises(CalendarError, match="not an iCalendar file"):
        occurrences(text, utc(2026, 1, 1), utc(2027, 1, 1))


def test_a_broken_rrule_is_a_calendar_error():
    text = vcalendar(vevent("UID:b@test", "DTSTART:20261201T100000Z", "DTEND:20261201T110000Z",
                            "RRULE:FREQ=SOMETIMES", "SUMMARY:Bad"))
    ics.parse(text)  # it parses...
    with pytest.raises(CalendarError, match="cannot expand"):  # ...but cannot be expanded
        occurrences(text, utc(2026, 1, 1), utc(2027, 1, 1))


# --- out ----------------------------------------------------------------------------------------------------------

def events_by_uid(body: bytes) -> dict:
    cal = Calendar.from_ical(body)
    return {str(e["UID"]): e for e in cal.walk("VEVENT")}


FEED = [
    FeedEvent(uid="release-1@releasebot", summary="REL-1 payments 2.3.1 (minor, pending)", description="Refunds",
              start_local=datetime(2026, 12, 1, 14), end_local=datetime(2026, 12, 1, 15), tz="Europe/London",
              sequence=3, stamp=STAMP, categories=("release", "production")),
    FeedEvent(uid="blackout-2@releasebot", summary="Blackout: Weekend", description="",
              start_local=datetime(2026, 11, 27, 16), end_local=datetime(2026, 11, 30, 8), tz="America/New_York",
              sequence=1, stamp=STAMP, cancelled=True, rrule="RRULE:FREQ=WEEKLY;BYDAY=FR", categories=("blackout",)),
    FeedEvent(uid="release-3@releasebot", summary="REL-3", description="", start_local=datetime(2026, 7, 1, 9),
              end_local=datetime(2026, 7, 1, 10), tz="Europe/London", sequence=0, stamp=STAMP),
]


def test_feed_has_uid_sequence_status_and_zoned_times():
    body = feed(FEED)
    evs = events_by_uid(body)
    assert set(evs) == {"release-1@releasebot", "blackout-2@releasebot", "release-3@releasebot"}
    rel = evs["release-1@releasebot"]
    assert int(rel["SEQUENCE"]) == 3 and str(rel["STATUS"]) == "CONFIRMED"
    assert rel["DTSTART"].params["TZID"] == "Europe/London" and rel["DTEND"].params["TZID"] == "Europe/London"
    assert rel["DTSTART"].dt.replace(tzinfo=None) == datetime(2026, 12, 1, 14)  # local wall clock
    assert rel["DTSTART"].dt.astimezone(UTC) == utc(2026, 12, 1, 14)
    assert str(rel["SUMMARY"]) == "REL-1 payments 2.3.1 (minor, pending)" and str(rel["DESCRIPTION"]) == "Refunds"
    assert rel["DTSTAMP"].dt == STAMP
    assert [str(c) for c in rel["CATEGORIES"].cats] == ["release", "production"]
    bo = evs["blackout-2@releasebot"]
    assert int(bo["SEQUENCE"]) == 1 and str(bo["STATUS"]) == "CANCELLED"
    assert bo["DTSTART"].params["TZID"] == "America/New_York"
    assert bo["DTSTART"].dt.astimezone(UTC) == utc(2026, 11, 27, 21)
    assert bo["RRULE"]["FREQ"] == ["WEEKLY"] and bo["RRULE"]["BYDAY"] == ["FR"]
    assert "DESCRIPTION" not in bo  # empty descriptions are left out
    summer = evs["release-3@releasebot"]
    assert summer["DTSTART"].dt.astimezone(UTC) == utc(2026, 7, 1, 8)


def test_feed_has_a_vtimezone_for_every_tzid_and_no_method():
    cal = Calendar.from_ical(feed(FEED))
    assert "METHOD" not in cal
    assert str(cal["VERSION"]) == "2.0" and str(cal["PRODID"]) == ics.PRODID
    tzids = {str(e[p].params["TZID"]) for e in cal.walk("VEVENT") for p in ("DTSTART", "DTEND")}
    vtimezones = [str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")]
    assert sorted(vtimezones) == sorted(tzids) == ["America/New_York", "Europe/London"]
    assert b"METHOD" not in feed(FEED)


def test_feed_in_utc_needs_no_vtimezone():
    cal = Calendar.from_ical(feed([FeedEvent("u@releasebot", "x", "", datetime(2026, 12, 1, 14),
                                             datetime(2026, 12, 1, 15), "UTC", 0, STAMP)]))
    [ev] = cal.walk("VEVENT")
    assert ev["DTSTART"].dt == utc(2026, 12, 1, 14)
    assert all("TZID" not in ev[p].params or str(ev[p].params["TZID"]) in {str(t["TZID"]) for t in
                                                                         cal.walk("VTIMEZONE")}
               for p in ("DTSTART", "DTEND"))


def test_feed_uids_are_stable_and_a_new_version_bumps_sequence():
    first = events_by_uid(feed(FEED[:1]))
    moved = FeedEvent(**{**FEED[0].__dict__, "start_local": datetime(2026, 12, 2, 14),
                         "end_local": datetime(2026, 12, 2, 15), "sequence": 4})
    second = events_by_uid(feed([moved]))
    assert set(first) == set(second) == {"release-1@releasebot"}
    assert int(second["release-1@releasebot"]["SEQUENCE"]) == 4


def test_feed_round_trips_through_import_across_dst():
    weekly = FeedEvent("b@releasebot", "Blackout: Friday", "", datetime(2026, 10, 16, 16), datetime(2026, 10, 16, 18),
                       "Europe/London", 0, STAMP, rrule="FREQ=WEEKLY;COUNT=3")
    got = occurrences(feed([weekly]).decode(), utc(2026, 1, 1), utc(2027, 1, 1))
    assert [(e.uid, e.start, e.end) for e in got] == [
        ("b@releasebot", utc(2026, 10, 16, 15), utc(2026, 10, 16, 17)),
        ("b@releasebot", utc(2026, 10, 23, 15), utc(2026, 10, 23, 17)),
        ("b@releasebot", utc(2026, 10, 30, 16), utc(2026, 10, 30, 18)),  # still 16:00 London, after the change
    ]


def test_feed_with_no_events_is_a_valid_empty_calendar():
    cal = Calendar.from_ical(feed([], name="Empty"))
    assert cal.walk("VEVENT") == [] and str(cal["X-WR-CALNAME"]) == "Empty"


# --- the bot's feed (commands.agenda.feed_events) --------------------------------------------------------------------

BLACKOUT = {"name": "Weekend", "start": "2026-11-27 16:00", "end": "2026-11-30 08:00", "tz": "Europe/London",
            "repeat": "FREQ=WEEKLY;BYDAY=FR"}


def test_bot_feed_releases_and_blackouts(db, clock, policy):
    rid = new_release(db, clock, policy)
    add_blackout(db, actor("U0RM"), BLACKOUT, clock, policy)
    cal = Calendar.from_ical(feed(agenda.feed_events(db, START)))
    evs = {str(e["UID"]): e for e in cal.walk("VEVENT")}
    assert set(evs) == {f"release-{rid}@releasebot", "blackout-1@releasebot"}
    rel = evs[f"release-{rid}@releasebot"]
    assert str(rel["STATUS"]) == "CONFIRMED" and int(rel["SEQUENCE"]) == 0
    assert rel["DTSTART"].params["TZID"] == "Europe/London"
    assert rel["DTSTART"].dt.astimezone(UTC) == utc(2026, 12, 1, 14)
    assert str(rel["SUMMARY"]) == "REL-1 payments 2.3.1 (minor, pending)"
    bo = evs["blackout-1@releasebot"]
    assert bo["RRULE"]["BYDAY"] == ["FR"] and str(bo["STATUS"]) == "CONFIRMED"
    assert "METHOD" not in cal


def test_bot_feed_cancellations_keep_the_uid_and_raise_the_sequence(db, clock, policy):
    rid = new_release(db, clock, policy)
    add_blackout(db, actor("U0RM"), BLACKOUT, clock, policy)
    cancel_release(db, actor("U0RM"), rid, "not needed", clock)
    remove_blackout(db, actor("U0RM"), 1, clock)
    evs = {str(e["UID"]): e for e in Calendar.from_ical(feed(agenda.feed_events(db, START))).walk("VEVENT")}
    rel, bo = evs[f"release-{rid}@releasebot"], evs["blackout-1@releasebot"]
    assert (str(rel["STATUS"]), int(rel["SEQUENCE"])) == ("CANCELLED", 1)
    assert (str(bo["STATUS"]), int(bo["SEQUENCE"])) == ("CANCELLED", 1)


# --- hostile calendars: nothing quoted, expansion capped ---------------------------------------------------------

@pytest.mark.parametrize("text", ["DB_PASSWORD=secret\r\n", "BEGIN:VCALENDAR\r\nX-SECRET:secret\r\nBROKEN secret",
                                  "<html>secret</html>"])
def test_what_is_not_a_calendar_is_never_quoted(text):
    with pytest.raises(CalendarError) as err:
        occurrences(text, utc(2026, 1, 1), utc(2027, 1, 1))
    assert str(err.value) == "not an iCalendar file"


def test_a_broken_rrule_is_not_quoted_either():
    text = vcalendar(vevent("UID:b@test", "DTSTART:20261201T100000Z", "DTEND:20261201T110000Z",
                            "RRULE:FREQ=SOMETIMES;X-SECRET=secret", "SUMMARY:Bad"))
    with pytest.raises(CalendarError) as err:
        occurrences(text, utc(2026, 1, 1), utc(2027, 1, 1))
    assert "secret" not in str(err.value).lower() and "SOMETIMES" not in str(err.value)


def test_a_minutely_billion_count_rule_is_cut_at_the_cap():
    text = vcalendar(vevent("UID:flood@test", "DTSTART:20261201T000000Z", "DTEND:20261201T000100Z",
                            "RRULE:FREQ=MINUTELY;COUNT=1000000000", "SUMMARY:Flood"),
                     vevent("UID:offsite@test", "DTSTART;VALUE=DATE:20270301", "SUMMARY:Offsite"))
    got = ics.expand_calendar(text, utc(2026, 11, 1), utc(2027, 12, 31))
    assert len(got.events) == ics.MAX_OCCURRENCES == 5000
    assert got.cut_short
    assert got.events[0].start == utc(2026, 12, 1) and got.events[-1].start == utc(2026, 12, 1) + timedelta(minutes=4999)
    assert [e.start for e in got.events] == sorted(e.start for e in got.events)  # the earliest are kept


def test_a_dense_rule_from_long_ago_is_dropped_without_walking_its_past():
    # dateutil walks a rule from DTSTART: every minute since 1990 before reaching the horizon
    text = vcalendar(vevent("UID:old@test", "DTSTART:19900101T000000Z", "DTEND:19900101T000100Z",
                            "RRULE:FREQ=MINUTELY", "SUMMARY:Old flood"),
                     vevent("UID:every-second@test", "DTSTART:20261201T000000Z", "DTEND:20261201T000001Z",
                            "RRULE:FREQ=SECONDLY", "SUMMARY:Seconds"),
                     vevent("UID:ok@test", "DTSTART:20261202T100000Z", "DTEND:20261202T110000Z", "SUMMARY:Fine"))
    got = ics.expand_calendar(text, utc(2026, 11, 1), utc(2027, 12, 31))
    assert [e.summary for e in got.events] == ["Fine"] and got.cut_short


def test_a_calendar_within_the_caps_is_not_cut_short_and_the_horizon_bounds_it():
    text = vcalendar(vevent("UID:daily@test", "DTSTART:20261201T100000Z", "DTEND:20261201T110000Z",
                            "RRULE:FREQ=DAILY", "SUMMARY:Forever"))
    got = ics.expand_calendar(text, utc(2026, 12, 1), utc(2027, 1, 1))
    assert len(got.events) == 31 and not got.cut_short
    assert occurrences(text, utc(2026, 12, 1), utc(2027, 1, 1)) == got.events


def test_an_event_summary_with_nul_or_control_characters_is_stored_clean(db, clock, policy):
    """A subscribed event's name reaches the database and Slack: NUL (which PostgreSQL refuses in text),
    unpaired surrogates and other control characters are dropped, so the refresh cannot fail on them."""
    text = vcalendar(vevent("UID:nul@test", "DTSTART:20261201T100000Z", "DTEND:20261201T110000Z",
                            "SUMMARY:Pay\\nroll\x00 freeze\x07"))
    [ev] = occurrences(text, utc(2026, 1, 1), utc(2027, 1, 1))
    assert "\x00" not in ev.summary and "\x07" not in ev.summary and ev.summary.startswith("Pay")
    from storage.db import transaction
    from sqlmodel import select
    from storage.models import BlackoutOccurrence, Blackout
    from commands.blackout import materialize
    from calendars.recurrence import Occurrence
    with transaction(db) as s:  # stored as is, on SQLite and PostgreSQL alike
        b = Blackout(name="Payroll", start_local=datetime(2000, 1, 1), end_local=datetime(2000, 1, 2), tz="UTC",
                     services=[], environments=[], created_by="U0RM", created_at=clock.now())
        s.add(b)
        s.flush()
        materialize(s, b, clock.now(), policy, occurrences=[(Occurrence(ev.start, ev.end), ev.summary)])
        assert len(list(s.exec(select(BlackoutOccurrence)))) == 1
