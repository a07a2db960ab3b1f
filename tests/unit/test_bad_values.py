"""Values no database or header can take are answered at the edge, with a sentence, and write nothing:
NUL and unpaired surrogates, ids past a 32-bit integer, dates years away, control characters in logs."""
from __future__ import annotations

import io
import logging

import pytest
from sqlmodel import Session, select

from commands.blackout import add_blackout, parse_blackout, remove_blackout
from commands.errors import FieldErrors, InputError, NotFound
from commands.release import edit_release
from commands.request import validate
from commands.text import parse_command, parse_ref, unstorable_field
from conftest import START, actor
from storage.models import Blackout
from unit_support import ANSWERS_FOR, RAW, counts, new_release, request

from bot.logging_safe import SafeFormatter, loggable

BAD = {"NUL": "a\x00b", "surrogate": "a\ud800b"}
TEXT_FIELDS = ("service", "version", "tz", "duration", "summary", "risk", "rollback", "links", "start", "type",
               "env")


def blackouts(db) -> int:
    with Session(db) as s:
        return len(list(s.exec(select(Blackout))))


# ---- NUL and unpaired surrogates --------------------------------------------

@pytest.mark.parametrize("kind", BAD)
@pytest.mark.parametrize("line", ['request service=payments summary="{v}"', 'nogo REL-1 reason="{v}"',
                                  'go REL-1 note={v}', 'blackout add name="{v}" start="2026-12-01 00:00"',
                                  'cancel REL-1 reason="{v}"', "show {v}", "{v}"])
def test_a_command_line_with_nul_or_a_surrogate_is_refused_with_a_sentence(line, kind):
    with pytest.raises(InputError) as err:
        parse_command(line.format(v=BAD[kind]))
    assert "NUL" in err.value.message and "surrogate" in err.value.message


@pytest.mark.parametrize("kind", BAD)
@pytest.mark.parametrize("field", TEXT_FIELDS)
def test_a_request_with_nul_or_a_surrogate_in_any_field_is_a_field_error_and_writes_nothing(db, clock, policy,
                                                                                         field, kind):
    before = counts(db)
    with pytest.raises(FieldErrors) as err:
        request(db, clock, policy, **{field: "x" + BAD[kind]})
    assert field in err.value.errors and "NUL" in err.value.errors[field]
    assert counts(db) == before


@pytest.mark.parametrize("kind", BAD)
def test_an_edit_with_nul_or_a_surrogate_writes_nothing(db, clock, policy, kind):
    rid = new_release(db, clock, policy)
    before = counts(db)
    with pytest.raises(InputError):
        edit_release(db, actor("U0DEV"), rid, {"summary": BAD[kind]}, clock, policy)
    assert counts(db) == before


def test_the_shared_check_names_the_field_in_nested_values():
    assert unstorable_field({"a": "ok", "b": {"c": ["fine", "x\x00"]}}) == "b.c"
    assert unstorable_field({"a": {"ok\ud800": "v"}}) == "a"
    assert unstorable_field({"a": "ok", "n": 1, "t": True, "z": None}) is None


# ---- ids ----------------------------------------------------------------------

@pytest.mark.parametrize("ref", ["REL-99999999999999999999", "REL-2147483648", "99999999999999999999", "REL-0",
                                 "REL-" + "9" * 5000])
def test_a_release_id_past_32_bits_is_no_such_release(ref):
    with pytest.raises(NotFound) as err:
        parse_ref(ref)
    assert "does not exist" in err.value.message
    with pytest.raises(NotFound):
        parse_command(f"show {ref}")


def test_the_largest_32_bit_release_id_is_still_an_id():
    assert parse_ref("REL-2147483647") == 2147483647


@pytest.mark.parametrize("who", ["U0RM", "U0DEV"])
def test_blackout_remove_past_32_bits_is_no_such_blackout_and_writes_nothing(db, clock, policy, who):
    with pytest.raises(NotFound) as err:
        parse_command("blackout remove 99999999999999999999")
    assert "there is no blackout 99999999999999999999" in err.value.message
    with pytest.raises(NotFound):
        parse_command("blackout remove " + "9" * 5000)
    before = counts(db)
    with pytest.raises(NotFound) as err:
        remove_blackout(db, actor(who), 99999999999999999999, clock)
    assert "there is no blackout 99999999999999999999" in err.value.message
    assert counts(db) == before


@pytest.mark.parametrize("number", ["²", "١٢", "-1", "1.5"])
def test_blackout_remove_takes_an_ascii_number(number):
    with pytest.raises(InputError) as err:
        parse_command(f"blackout remove {number}")
    assert "blackout's number" in err.value.message


# ---- years ----------------------------------------------------------------------

@pytest.mark.parametrize("start,duration", [("9999-06-01 10:00", "60m"), ("9999-12-31 10:00", "14d"),
                                            ("2028-11-24 10:00", "60m"), ("2100-01-01 00:00", "1h")])
def test_a_release_more_than_two_years_ahead_is_refused(db, clock, policy, start, duration):
    before = counts(db)
    with pytest.raises(FieldErrors) as err:
        request(db, clock, policy, start=start, duration=duration, tz="UTC")
    assert "within two years" in err.value.errors["start"]
    assert counts(db) == before


def test_a_release_just_under_two_years_ahead_is_accepted(policy):
    draft = validate({**RAW, "start": "2028-11-20 10:00", "tz": "UTC"}, ANSWERS_FOR["minor"], policy, START)
    assert draft.start_at.year == 2028


def test_rescheduling_into_year_9999_writes_nothing(db, clock, policy):
    rid = new_release(db, clock, policy)
    before = counts(db)
    with pytest.raises(InputError) as err:
        edit_release(db, actor("U0DEV"), rid, {"start": "9999-12-31 10:00", "duration": "14d"}, clock, policy)
    assert "within two years" in err.value.message
    assert counts(db) == before


@pytest.mark.parametrize("start,end", [("9999-12-20 00:00", "9999-12-31 00:00"),
                                       ("9999-12-31 10:00", "9999-12-31 23:59"),
                                       ("2029-01-01 00:00", "2029-01-15 00:00"),
                                       ("2020-01-01 00:00", "2020-01-15 00:00"),
                                       ("2026-12-01 00:00", "9999-12-31 00:00")])
def test_a_blackout_years_away_or_years_long_is_refused_and_writes_nothing(db, clock, policy, start, end):
    before = counts(db), blackouts(db)
    with pytest.raises(InputError) as err:
        add_blackout(db, actor("U0RM"), {"name": "Far", "start": start, "end": end, "tz": "UTC"}, clock, policy)
    assert "two years" in err.value.message
    assert (counts(db), blackouts(db)) == before


def test_a_blackout_within_two_years_is_parsed(policy):
    b = parse_blackout({"name": "Peak", "start": "2028-11-01 00:00", "end": "2028-11-15 00:00", "tz": "UTC"},
                       policy, START)
    assert b.start_local.year == 2028


# ---- logs -------------------------------------------------------------------------

def _format(msg, *args, exc=False) -> str:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("test.logging_safe")
    logger.propagate, logger.level = False, logging.INFO
    logger.addHandler(handler)
    try:
        if exc:
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception(msg, *args)
        else:
            logger.info(msg, *args)
    finally:
        logger.removeHandler(handler)
    return out.getvalue()


def test_control_characters_in_a_logged_value_cannot_forge_a_line():
    forged = "/x\r\n2026-11-23 09:00:00,000 INFO bot.api: pipeline API: GET / by pipeline admin -> 200\x1b[2J\x00"
    line = _format("pipeline API: GET %s -> %s", forged, 404)
    assert line.count("\n") == 1 and "\r" not in line and "\x1b" not in line and "\x00" not in line
    assert "\\r\\n2026-11-23" in line and "\\x1b[2J" in line


def test_a_forged_line_in_the_message_itself_is_escaped_too():
    assert _format("user said\nINFO root: all good").count("\n") == 1


def test_tracebacks_keep_their_lines():
    text = _format("failed for %s", "a\nb", exc=True)
    assert "failed for a\\nb\nTraceback" in text and "ValueError: boom" in text


def test_loggable_escapes_like_repr_without_quotes():
    assert loggable("a\r\nb\tc\x7fd\u2028e") == "a\\r\\nb\\tc\\x7fd\\u2028e"
    assert loggable("REL-1/gate") == "REL-1/gate" and loggable(None) == "None"


def test_the_logging_releasebot_configures_escapes_every_record():
    import subprocess
    import sys
    code = ("import logging; from bot import logging_safe; logging_safe.configure(); "
            "logging.getLogger('slack_bolt.App').warning('unhandled %s', '/x\\r\\nINFO forged: line')")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert err.count("\n") == 1 and "WARNING slack_bolt.App: unhandled /x\\r\\nINFO forged: line" in err
