"""The feed as three calendar libraries read it: icalendar (from our VTIMEZONE, not its own zone
database), ics (0.7.3) and vobject (0.9.9) must each give every event the UTC instant zoneinfo
gives it, in London, New York, Sydney and Kolkata, on both sides of both DST changes. The
VTIMEZONEs icalendar writes for zoneinfo zones (a 1970 STANDARD and RDATE lists) made vobject read
London in December as +01:00 and Sydney as +10:00."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import ics
import pytest
import vobject
from icalendar import Calendar

from calendars.ics import FeedEvent, feed

UTC = timezone.utc
STAMP = datetime(2026, 12, 1, tzinfo=UTC)

# The local dates of each zone's 2027 changes (Kolkata has none: London's dates are used).
CHANGES = {
    "Europe/London": [(2027, 3, 28), (2027, 10, 31)],
    "America/New_York": [(2027, 3, 14), (2027, 11, 7)],
    "Australia/Sydney": [(2027, 4, 4), (2027, 10, 3)],
    "Asia/Kolkata": [(2027, 3, 28), (2027, 10, 31)],
}


def local_times(tz: str) -> list[datetime]:
    """Noon the day before and after each change, an hour across the midnight before it and one early on
    the morning after it (every change is between 01:00 and 03:00 local, so neither is a skipped or
    repeated local time); and December and June."""
    out = [datetime(2026, 12, 15, 12), datetime(2027, 6, 15, 12)]
    for y, m, d in CHANGES[tz]:
        day = datetime(y, m, d)
        out += [day - timedelta(hours=12), day - timedelta(minutes=30), day + timedelta(hours=5),
                day + timedelta(hours=36)]
    return out


def events(times: dict[str, list[datetime]]) -> list[FeedEvent]:
    return [FeedEvent(uid=f"{tz}-{i}@test", summary="x", description="", start_local=t,
                      end_local=t + timedelta(hours=1), tz=tz, sequence=0, stamp=STAMP)
            for tz, ts in times.items() for i, t in enumerate(ts)]


AROUND_2027 = {tz: local_times(tz) for tz in CHANGES}


def expected(evs: list[FeedEvent]) -> dict[str, tuple[datetime, datetime]]:
    return {e.uid: (e.start_local.replace(tzinfo=ZoneInfo(e.tz)).astimezone(UTC),
                    e.end_local.replace(tzinfo=ZoneInfo(e.tz)).astimezone(UTC)) for e in evs}


def read_icalendar(body: bytes) -> dict[str, tuple[datetime, datetime]]:
    cal = Calendar.from_ical(body)
    # lookup_tzid=False: the zone is built from the feed's VTIMEZONE, not looked up by name.
    zones = {str(vtz["TZID"]): vtz.to_tz(lookup_tzid=False) for vtz in cal.walk("VTIMEZONE")}

    def instant(prop) -> datetime:
        local = prop.dt.replace(tzinfo=None)
        z = zones[str(prop.params["TZID"])]
        return (z.localize(local) if hasattr(z, "localize") else local.replace(tzinfo=z)).astimezone(UTC)

    return {str(e["UID"]): (instant(e["DTSTART"]), instant(e["DTEND"])) for e in cal.walk("VEVENT")}


def read_ics(body: bytes) -> dict[str, tuple[datetime, datetime]]:
    return {e.uid: (e.begin.datetime.astimezone(UTC), e.end.datetime.astimezone(UTC))
            for e in ics.Calendar(body.decode()).events}


def read_vobject(body: bytes) -> dict[str, tuple[datetime, datetime]]:
    # vobject keeps the first VTIMEZONE it read for a TZID for the rest of the process: forget the
    # previous test's, so each feed is read with its own.
    registry = vars(vobject.icalendar)["__tzidMap"]
    for tzid in [t for t in registry if t != "UTC"]:
        del registry[tzid]
    cal = vobject.readOne(body.decode())
    return {e.uid.value: (e.dtstart.value.astimezone(UTC), e.dtend.value.astimezone(UTC))
            for e in cal.vevent_list}


READERS = {"icalendar": read_icalendar, "ics": read_ics, "vobject": read_vobject}


def renamed(body: bytes) -> bytes:
    """The feed with every TZID renamed to one no zone database knows, so that a reader has only the
    feed's own VTIMEZONEs to go by."""
    return re.sub(rb"TZID([=:])([A-Za-z_]+)/([A-Za-z_]+)", rb"TZID\1X-RELEASEBOT-\2-\3", body)


def read(reader: str, body: bytes) -> dict[str, tuple[datetime, datetime]]:
    """What `reader` makes of the feed as it is; icalendar and vobject must read the same from the
    VTIMEZONEs alone. (ics 0.7.3 parses VEVENTs before VTIMEZONEs, so it always looks a TZID up in
    dateutil's zone database and never reads ours.)"""
    as_is = READERS[reader](body)
    if reader != "ics":
        assert READERS[reader](renamed(body)) == as_is
    return as_is


@pytest.mark.parametrize("reader", READERS)
def test_every_client_reads_every_event_at_its_instant_across_both_dst_changes(reader):
    evs = events(AROUND_2027)
    want = expected(evs)
    # the instants really are on both sides of each change (not all one offset)
    assert len({s - e.start_local.replace(tzinfo=UTC) for e, (s, _) in zip(evs, want.values())}) > 4
    got = read(reader, feed(evs))
    wrong = {uid: (got.get(uid), w) for uid, w in want.items() if got.get(uid) != w}
    assert wrong == {}


# A zone whose rules changed inside the feed's span: New York before and after the 2007 US change
# (first Sunday of April / last Sunday of October, then second Sunday of March / first of November),
# and São Paulo, which stopped daylight time in 2019.
ZONE_TIMES = {
    "America/New_York": [datetime(2006, 4, 1, 12), datetime(2006, 4, 3, 12), datetime(2006, 10, 28, 12),
                         datetime(2006, 10, 30, 12), datetime(2007, 3, 10, 12), datetime(2007, 3, 12, 12),
                         datetime(2007, 10, 30, 12), datetime(2007, 11, 5, 12), datetime(2008, 7, 1, 12)],
    "America/Sao_Paulo": [datetime(2018, 2, 1, 12), datetime(2018, 3, 1, 12), datetime(2018, 11, 10, 12),
                          datetime(2019, 1, 15, 12), datetime(2019, 3, 1, 12), datetime(2019, 12, 1, 12),
                          datetime(2020, 1, 15, 12)],
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("tz", ZONE_TIMES)
def test_a_zone_whose_rules_changed_in_the_span_is_read_right(reader, tz):
    evs = events({tz: ZONE_TIMES[tz]})
    assert read(reader, feed(evs)) == expected(evs)


def _vtimezone(body: bytes, tzid: str):
    [vtz] = [v for v in Calendar.from_ical(body).walk("VTIMEZONE") if str(v["TZID"]) == tzid]
    return vtz


def test_vtimezones_are_rules_not_date_lists():
    body = feed(events(AROUND_2027))
    assert b"RDATE" not in body
    london = _vtimezone(body, "Europe/London")
    parts = [(c.name, c["TZOFFSETFROM"].to_ical(), c["TZOFFSETTO"].to_ical(), c["RRULE"].to_ical().decode())
             for c in london.subcomponents]
    assert sorted(parts) == [("DAYLIGHT", "+0000", "+0100", "FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3"),
                             ("STANDARD", "+0100", "+0000", "FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10")]
    sydney = {c.name: c for c in _vtimezone(body, "Australia/Sydney").subcomponents}
    assert sydney["DAYLIGHT"]["RRULE"].to_ical() == b"FREQ=YEARLY;BYDAY=1SU;BYMONTH=10"
    assert sydney["DAYLIGHT"]["DTSTART"].dt.time().hour == 2  # 02:00 standard time
    assert sydney["STANDARD"]["DTSTART"].dt.time().hour == 3  # 03:00 daylight time
    [kolkata] = _vtimezone(body, "Asia/Kolkata").subcomponents  # no DST: one STANDARD
    assert kolkata.name == "STANDARD" and kolkata["TZOFFSETTO"].to_ical() == "+0530"


def test_a_rule_that_ended_in_the_span_is_closed_with_until_in_utc():
    body = feed(events({"America/New_York": ZONE_TIMES["America/New_York"]}))
    rules = sorted((c["DTSTART"].dt, c["RRULE"].to_ical().decode())
                   for c in _vtimezone(body, "America/New_York").subcomponents)
    # Each rule from the year it began (the October one is older than 1970, where the data is cut).
    assert rules == [(datetime(1970, 10, 25, 2), "FREQ=YEARLY;UNTIL=20061029T060000Z;BYDAY=-1SU;BYMONTH=10"),
                     (datetime(1987, 4, 5, 2), "FREQ=YEARLY;UNTIL=20060402T070000Z;BYDAY=1SU;BYMONTH=4"),
                     (datetime(2007, 3, 11, 2), "FREQ=YEARLY;BYDAY=2SU;BYMONTH=3"),
                     (datetime(2007, 11, 4, 2), "FREQ=YEARLY;BYDAY=1SU;BYMONTH=11")]


def test_a_zone_that_stopped_daylight_time_has_no_open_ended_daylight_rule():
    body = feed(events({"America/Sao_Paulo": ZONE_TIMES["America/Sao_Paulo"]}))
    daylight = [c for c in _vtimezone(body, "America/Sao_Paulo").subcomponents if c.name == "DAYLIGHT"]
    assert daylight and all("RRULE" not in c or "UNTIL" in c["RRULE"] for c in daylight)
