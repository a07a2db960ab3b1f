"""calendars.ics writes VEVENTs as text; icalendar, the reference, must read them exactly as it reads the feed
icalendar itself wrote (tests/unit/ics_reference.py), and the text must be well-formed RFC 5545: CRLF lines of
at most 75 octets, folded between characters and never inside a backslash escape."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from icalendar import Calendar

from calendars.ics import FeedEvent, escape_text, feed, fold
from ics_reference import reference_feed

UTC = timezone.utc
ZONES = ("Europe/London", "America/New_York", "Asia/Kolkata", "UTC", "Australia/Lord_Howe", "Asia/Tokyo",
         "America/Sao_Paulo", "Europe/Moscow", "Pacific/Chatham", "Etc/UTC")
RULES = (None, None, None, "FREQ=WEEKLY;BYDAY=FR", "RRULE:FREQ=MONTHLY;BYMONTHDAY=-1",
         "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;UNTIL=20270301T000000Z", "FREQ=DAILY;COUNT=10", "FREQ=YEARLY")
# Pieces of text chosen to land on fold points in every way: escapes, multi-byte characters (2, 3, 4 octets),
# line breaks of each kind, runs of backslashes.
PIECES = ("a", "release", " ", ";", ",", "\\", "\\\\\\", "\n", "\r\n", "\r", "é", "ß", "€", "日本", "🚀", "x" * 70,
          ":", '"', "<!channel>", "&amp;")
STAMP = datetime(2026, 11, 20, 9, 30, 15, 123456, tzinfo=UTC)


def text(rng: random.Random, most: int = 60) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randrange(most)))


def calendar(seed: int, n: int = 150) -> list[FeedEvent]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        start = datetime(2026, 1, 1) + timedelta(minutes=15 * rng.randrange(4 * 24 * 500))
        out.append(FeedEvent(
            uid=f"release-{i}@releasebot.example.com", summary=text(rng, 30) or "x", description=text(rng),
            start_local=start, end_local=start + timedelta(minutes=rng.choice((30, 90, 600, 3000))),
            tz=rng.choice(ZONES), sequence=rng.randrange(5), stamp=STAMP + timedelta(seconds=rng.randrange(10**6)),
            cancelled=rng.random() < 0.2, rrule=rng.choice(RULES),
            categories=tuple(rng.sample(("release", "blackout", "production", "a,b", "x;y", "é"), rng.randrange(3)))))
    return out


def props(component) -> list:
    """Every property as icalendar reads it: name, serialised value, parameters."""
    return [(name, [v.to_ical() for v in (value if isinstance(value, list) else [value])],
             sorted(dict(getattr(value, "params", {}) or {}).items()))
            for name, value in sorted(component.property_items(recursive=False, sorted=True)[1:-1])]


def physical_lines(body: bytes) -> list[bytes]:
    assert body.endswith(b"\r\n") and b"\n" not in body.replace(b"\r\n", b"")
    return body[:-2].split(b"\r\n")


@pytest.mark.parametrize("seed", range(6))
def test_icalendar_reads_the_fast_feed_as_it_reads_its_own(seed):
    events = [e for e in calendar(seed) if "\\N" not in e.summary + e.description]  # see the last test
    horizon = datetime(2027, 12, 1, tzinfo=UTC)
    ours = Calendar.from_ical(feed(events, name="Releases: a;b,c", refresh=timedelta(hours=4), horizon=horizon))
    ref = Calendar.from_ical(reference_feed(events, name="Releases: a;b,c", refresh=timedelta(hours=4),
                                            horizon=horizon))
    assert props(ours) == props(ref)
    assert [tz.to_ical() for tz in ours.walk("VTIMEZONE")] == [tz.to_ical() for tz in ref.walk("VTIMEZONE")]
    ours_ev, ref_ev = ours.walk("VEVENT"), ref.walk("VEVENT")
    assert len(ours_ev) == len(ref_ev) == len(events)
    for a, b in zip(ours_ev, ref_ev):
        assert props(a) == props(b)
        for p in ("DTSTART", "DTEND", "DTSTAMP"):
            assert a[p].dt == b[p].dt and a[p].dt.utcoffset() == b[p].dt.utcoffset()


@pytest.mark.parametrize("seed", range(6))
def test_the_fast_feed_is_folded_and_round_trips_every_text(seed):
    events = calendar(seed)
    body = feed(events)
    lines = physical_lines(body)
    for line, after in zip(lines, lines[1:] + [b""]):
        assert len(line) <= 75
        line.decode()  # each physical line is whole UTF-8: no character was cut in two
        if after.startswith(b" "):  # folded here: the piece does not end with the first half of an escape
            assert (len(line) - len(line.rstrip(b"\\"))) % 2 == 0
    assert any(line.startswith(b" ") for line in lines)  # the calendar does fold
    by_uid = {str(e["UID"]): e for e in Calendar.from_ical(body).walk("VEVENT")}

    def same(s: str) -> str:
        return s.replace("\r\n", "\n").replace("\r", "\n")

    for e in events:
        got = by_uid[e.uid]
        assert str(got["SUMMARY"]) == same(e.summary)
        assert str(got.get("DESCRIPTION", "")) == same(e.description)
        assert [str(c) for c in got["CATEGORIES"].cats] == list(e.categories) if e.categories else \
            "CATEGORIES" not in got


def test_fold_cuts_at_75_octets_and_never_inside_a_character_or_an_escape():
    assert fold("X" * 75) == b"X" * 75 + b"\r\n"
    assert fold("X" * 76) == b"X" * 75 + b"\r\n X\r\n"
    assert fold("X" * 74 + "é") == b"X" * 74 + b"\r\n \xc3\xa9\r\n"  # é is two octets: it moves whole
    assert fold("X" * 74 + "\\n") == b"X" * 74 + b"\r\n \\n\r\n"  # the escape stays together
    assert fold("X" * 73 + "\\\\") == b"X" * 73 + b"\\\\\r\n"  # an escaped backslash that fits is not split
    assert fold("X" * 73 + "\\\\Y") == b"X" * 73 + b"\\\\\r\n Y\r\n"


def test_text_escaping_is_rfc_5545_and_keeps_a_typed_backslash_n():
    assert escape_text("a;b,c\\d\ne\r\nf\rg") == "a\\;b\\,c\\\\d\\ne\\nf\\ng"
    assert escape_text("plain text") == "plain text"
    # icalendar's own writer turns a typed "\N" into a line break; ours keeps what was typed
    body = feed([FeedEvent("u@h", "C:\\New folder", "", datetime(2026, 12, 1, 14), datetime(2026, 12, 1, 15),
                           "UTC", 0, STAMP)])
    assert str(Calendar.from_ical(body).walk("VEVENT")[0]["SUMMARY"]) == "C:\\New folder"
