"""The feed as it was written before calendars.ics wrote VEVENTs as text: every property built and
serialised by icalendar. Kept as the reference the fast writer is compared with (test_feed_writer.py)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterable

from icalendar import Calendar, Event, vDuration, vRecur

from calendars.ics import PRODID, FeedEvent
from calendars.timeparse import zone
from calendars.vtimezone import vtimezone

UTC = timezone.utc


def reference_feed(events: Iterable[FeedEvent], name: str = "Releases", refresh: timedelta = timedelta(hours=1),
                   horizon: datetime | None = None) -> bytes:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", name)
    cal.add("refresh-interval", refresh, parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", vDuration(refresh))
    spans: dict[str, list[datetime]] = {}
    for fe in events:
        z = zone(fe.tz)
        ev = Event()
        ev.add("uid", fe.uid)
        ev.add("dtstamp", fe.stamp.astimezone(UTC))
        start, end = fe.start_local.replace(tzinfo=z), fe.end_local.replace(tzinfo=z)
        ev.add("dtstart", start)
        ev.add("dtend", end)
        ev.add("summary", fe.summary)
        if fe.description:
            ev.add("description", fe.description)
        ev.add("sequence", fe.sequence)
        ev.add("status", "CANCELLED" if fe.cancelled else "CONFIRMED")
        if fe.categories:
            ev.add("categories", list(fe.categories))
        if fe.rrule:
            ev.add("rrule", vRecur.from_ical(fe.rrule.removeprefix("RRULE:")))
        cal.add_component(ev)
        span = spans.setdefault(fe.tz, [start.astimezone(UTC), end.astimezone(UTC)])
        far = max(end.astimezone(UTC), horizon or end) if fe.rrule else end.astimezone(UTC)
        span[0], span[1] = min(span[0], start.astimezone(UTC)), max(span[1], far)
    cal.subcomponents[:0] = [vtimezone(tzid, *spans[tzid]) for tzid in sorted(cal.get_used_tzids())]
    return cal.to_ical()
