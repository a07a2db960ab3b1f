"""What people type as a start, read against a fixed clock in the planning zone (2026: London springs forward
29 Mar, falls back 25 Oct). Each phrase is pinned to the instant it must mean."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from bot.times import iso_times
from calendars.timeparse import TimeInputError, needs_locale, parse_start
from commands.errors import FieldErrors
from commands.policy import Policy
from bot.messages.common import outcome_text, window_echo
from commands.request import start_prefill, validate

UTC = timezone.utc
LONDON = "Europe/London"
# Tuesday 1 December 2026, 10:30 in London (GMT, so UTC too)
NOW = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize("text, expected", [
    ("tomorrow 14:00", utc(2026, 12, 2, 14, 0)),
    ("next monday 9am", utc(2026, 12, 7, 9, 0)),
    ("in 2 days", utc(2026, 12, 3, 10, 30)),
    ("2pm", utc(2026, 12, 1, 14, 0)),              # later today
    ("9:00", utc(2026, 12, 2, 9, 0)),              # already past today: the next one
    ("dec 24", utc(2026, 12, 24, 0, 0)),
    ("dec 24 10:00", utc(2026, 12, 24, 10, 0)),
    ("friday 3pm", utc(2026, 12, 4, 15, 0)),
    ("in 3 hours", utc(2026, 12, 1, 13, 30)),
    ("2026-12-05 14:00", utc(2026, 12, 5, 14, 0)),  # what worked before still does
    ("2026-12-05T14:00", utc(2026, 12, 5, 14, 0)),
    ("  tomorrow   14:00 ", utc(2026, 12, 2, 14, 0)),
])
def test_phrases_against_a_fixed_clock(text, expected):
    got = parse_start(text, LONDON, NOW, "en-GB")
    assert got.at == expected and got.at.tzinfo is UTC
    assert got.note is None


def test_relative_dates_are_anchored_in_the_planning_zone_not_utc():
    # 23:30 UTC on 1 Dec is already 2 Dec in Sydney: "tomorrow 09:00" there is 3 Dec 09:00 AEDT (22:00 UTC on 2 Dec).
    late = utc(2026, 12, 1, 23, 30)
    assert parse_start("tomorrow 09:00", "Australia/Sydney", late).at == utc(2026, 12, 2, 22, 0)
    assert parse_start("tomorrow 09:00", "America/New_York", late).at == utc(2026, 12, 2, 14, 0)


def test_day_and_month_follow_the_readers_locale_and_say_so():
    us = parse_start("12/03 14:00", LONDON, NOW, "en-US")
    gb = parse_start("12/03 14:00", LONDON, NOW, "en-GB")
    assert us.at == utc(2026, 12, 3, 14, 0)
    assert gb.at == utc(2027, 3, 12, 14, 0)  # March 2027, BST not yet: still GMT
    assert "3 December" in us.note and "month first" in us.note and "en-US" in us.note
    assert "12 March" in gb.note and "day first" in gb.note and "en-GB" in gb.note


def test_an_unambiguous_numeric_date_needs_no_locale():
    assert not needs_locale("13/03 10:00") and not needs_locale("03/03") and needs_locale("12/03")
    assert parse_start("13/03 10:00", LONDON, NOW).at == utc(2027, 3, 13, 10, 0)


def test_an_ambiguous_date_without_a_locale_is_refused_not_guessed():
    with pytest.raises(TimeInputError, match="day/month or month/day"):
        parse_start("12/03 14:00", LONDON, NOW, None)


# --- across the DST changes ------------------------------------------------------------------------------------

def test_tomorrow_across_the_spring_change_keeps_the_wall_clock():
    saturday = utc(2026, 3, 28, 10, 0)  # GMT; Sunday is BST
    assert parse_start("tomorrow 14:00", LONDON, saturday).at == utc(2026, 3, 29, 13, 0)
    assert parse_start("in 2 days", LONDON, saturday).at == utc(2026, 3, 30, 9, 0)  # 10:00 BST


def test_in_hours_is_elapsed_time_across_the_change():
    just_before = utc(2026, 3, 29, 0, 30)  # 00:30 GMT; at 01:00 the clocks jump to 02:00
    got = parse_start("in 3 hours", LONDON, just_before)
    assert got.at == utc(2026, 3, 29, 3, 30) and got.local == datetime(2026, 3, 29, 4, 30)


def test_a_time_the_clocks_skip_is_refused():
    with pytest.raises(TimeInputError, match="does not exist"):
        parse_start("tomorrow 01:30", LONDON, utc(2026, 3, 28, 10, 0))


def test_tomorrow_across_the_autumn_change():
    assert parse_start("tomorrow 9am", LONDON, utc(2026, 10, 24, 10, 0)).at == utc(2026, 10, 25, 9, 0)  # GMT again


# --- refused with the accepted forms -----------------------------------------------------------------------------

@pytest.mark.parametrize("text, says", [
    ("soon", "tomorrow 14:00"), ("14", "tomorrow 14:00"), ("", "tomorrow 14:00"),
    ("1 hour", 'write "in 1 hour"'), ("90min", "duration"),
    ("tomorrow 14:00 UTC", "tz="), ("14:00 BST", "tz="),
])
def test_unreadable_starts_name_the_accepted_forms(text, says):
    with pytest.raises(TimeInputError, match=says):
        parse_start(text, LONDON, NOW, "en-GB")


def test_last_friday_is_not_mistaken_for_a_zone_and_is_refused_as_past_by_validation():
    raw = {"service": "payments", "version": "2.3.1", "type": "minor", "start": "last friday", "tz": LONDON,
           "duration": "1 hour", "summary": "x"}
    with pytest.raises(FieldErrors) as err:
        validate(raw, None, Policy.from_mapping({}, source="t"), NOW, classify=False)
    said = iso_times(err.value.errors["start"])
    assert "in the past" in said and "(2026-11-27 00:00 Europe/London)" in said


# --- the request path and the form agree ------------------------------------------------------------------------

def test_validate_reads_natural_start_and_duration_and_keeps_the_note():
    raw = {"service": "payments", "version": "2.3.1", "type": "minor", "start": "12/03 14:00", "tz": LONDON,
           "duration": "90min", "summary": "x"}
    d = validate(raw, None, Policy.from_mapping({}, source="t"), NOW, classify=False, locale="en-US")
    assert d.start_at == utc(2026, 12, 3, 14, 0) and d.end_at == utc(2026, 12, 3, 15, 30)
    assert "3 December" in d.note


def test_prefill_gives_the_pickers_the_reading_and_keeps_the_typed_text():
    value, hint = start_prefill("tomorrow 14:00", LONDON, NOW)
    assert value == "2026-12-02 14:00"
    assert 'You typed start "tomorrow 14:00"' in hint and "Wed 02 Dec 14:00 Europe/London" in hint
    value, hint = start_prefill("whenever", LONDON, NOW)
    assert value is None and '"whenever"' in hint and "Pick the date and time" in hint


def test_the_echo_is_a_date_token_with_the_planning_zone():
    text = window_echo(utc(2026, 7, 1, 13, 0), utc(2026, 7, 1, 14, 30), LONDON)
    assert text.startswith("<!date^1782910800^{date_short_pretty} {time}|2026-07-01 14:00 Europe/London>–")
    assert "<!date^1782916200^{time}|2026-07-01 15:30 Europe/London>" in text
    assert text.endswith("(Wed 01 Jul 14:00–15:30 Europe/London)")
    overnight = window_echo(utc(2026, 7, 1, 22, 0), utc(2026, 7, 2, 1, 0), LONDON)
    assert "^{date_short_pretty} {time}|2026-07-02 02:00 Europe/London>" in overnight


def test_the_reply_escapes_the_message_and_adds_the_window_and_the_reading():
    text = outcome_text("REL-1 requested: <!channel>.", {"window": (utc(2026, 12, 3, 14, 0), utc(2026, 12, 3, 15, 0),
                                                                    LONDON), "reading": "read 12/03 as 3 December"})
    assert text.startswith("REL-1 requested: &lt;!channel&gt;. Window: <!date^")
    assert text.endswith("(Thu 03 Dec 14:00–15:00 Europe/London). (read 12/03 as 3 December.)")
    assert outcome_text("Nothing moved.", {}) == "Nothing moved."


def test_a_long_typed_start_keeps_the_hint_short():
    value, hint = start_prefill("x" * 3000, LONDON, NOW)
    assert value is None and len(hint) < 200
    value, hint = start_prefill("12/03 14:00", LONDON, NOW)  # no locale: say why the pickers are empty
    assert value is None and "day/month or month/day" in hint
