"""Parsing the /release command line."""
from __future__ import annotations

import pytest

from commands.errors import InputError
from commands.text import ParsedCommand, parse_command, parse_ref
from commands.usage import USAGE

LINE = ('request service=payments version=2.3.1 type=minor start="2026-12-01 14:00" tz=Europe/London '
        'duration=60m summary="Add refunds"')


def bad(text: str) -> InputError:
    with pytest.raises(InputError) as info:
        parse_command(text)
    return info.value


def test_full_request_line():
    cmd = parse_command(LINE)
    assert cmd == ParsedCommand("request", None, {
        "service": "payments", "version": "2.3.1", "type": "minor", "start": "2026-12-01 14:00",
        "tz": "Europe/London", "duration": "60m", "summary": "Add refunds"}, ())


@pytest.mark.parametrize("text", ["", "   ", None])
def test_empty_is_help(text):
    assert parse_command(text) == ParsedCommand("help")


def test_subcommand_and_keys_are_case_insensitive():
    cmd = parse_command('GO rel-7 NOTE=fine Role=qa_lead')
    assert (cmd.name, cmd.release_id, cmd.args) == ("go", 7, {"note": "fine", "role": "qa_lead"})


def test_single_quotes_and_equals_inside_a_value():
    cmd = parse_command("request summary='a=b and c' risk=\"x = y\"")
    assert cmd.args == {"summary": "a=b and c", "risk": "x = y"}


def test_quoted_whole_token():
    cmd = parse_command('nogo REL-3 "reason=db migration is not reversible"')
    assert cmd.args == {"reason": "db migration is not reversible"}


def test_hash_is_not_a_comment():
    cmd = parse_command("request summary=fix#123 links=https://example.com/a#b")
    assert cmd.args == {"summary": "fix#123", "links": "https://example.com/a#b"}


def test_curly_double_quotes_from_phones():
    cmd = parse_command('nogo REL-12 reason=“tests are red”')
    assert cmd.args == {"reason": "tests are red"}
    cmd = parse_command('request summary=„Add refunds”')
    assert cmd.args == {"summary": "Add refunds"}


def test_curly_single_quotes_from_phones():
    cmd = parse_command("nogo REL-12 reason=‘tests are red’")
    assert cmd.args == {"reason": "tests are red"}


def test_apostrophe_inside_curly_double_quotes():
    cmd = parse_command("nogo REL-12 reason=“it’s broken”")
    assert cmd.args == {"reason": "it's broken"}


def test_slack_escaping_is_undone():
    cmd = parse_command('request summary="R&amp;D: a &lt; b &gt; c" links=&lt;https://x.test&gt;')
    assert cmd.args == {"summary": "R&D: a < b > c", "links": "<https://x.test>"}


def test_unescaping_happens_once():
    # The person typed "&lt;" literally; Slack sent "&amp;lt;".
    cmd = parse_command('request summary="&amp;lt;tag&amp;gt;"')
    assert cmd.args["summary"] == "&lt;tag&gt;"


def test_values_are_stripped():
    assert parse_command('go REL-1 note="  ok  "').args == {"note": "ok"}


def test_unknown_subcommand():
    err = bad("launch REL-1")
    assert "'launch' is not a /release command" in err.message
    assert err.form == USAGE["help"]
    for name in ("request", "go", "nogo", "list"):
        assert name in err.message


def test_unknown_key():
    err = bad("go REL-1 reason=nope")
    assert err.field == "reason"
    assert err.form == USAGE["go"]
    assert "'reason' is not a field of /release go" in err.message
    assert "note" in err.message and "role" in err.message


def test_key_on_a_command_without_fields():
    err = bad("list status=pending")
    assert err.field == "status"
    assert "none" in err.message
    assert err.form == USAGE["list"]


def test_duplicate_key():
    err = bad("request summary=a summary=b")
    assert err.field == "summary"
    assert "twice" in err.message
    assert err.form == USAGE["request"]


def test_duplicate_key_differing_in_case():
    err = bad("request Summary=a summary=b")
    assert err.field == "summary" and "twice" in err.message


def test_environment_is_an_alias_of_env():
    assert parse_command("request environment=staging").args == {"env": "staging"}
    assert parse_command("request env=staging").args == {"env": "staging"}


def test_env_and_environment_together_is_a_duplicate_not_a_silent_drop():
    err = bad("request env=staging environment=production")
    assert err.field in ("env", "environment")
    assert "twice" in err.message


@pytest.mark.parametrize("name", ["go", "nogo", "withdraw", "show", "cancel", "edit", "accept"])
def test_missing_release_id(name):
    err = bad(name)
    assert "needs a release id like REL-12" in err.message
    assert err.form == USAGE[name]


def test_missing_release_id_when_only_keys_given():
    err = bad('cancel reason="no longer needed"')
    assert "needs a release id" in err.message
    assert err.form == USAGE["cancel"]


@pytest.mark.parametrize("ref", ["REL-", "REL-x", "RELEASE-12", "REL12", "12a", "-12", "REL--1"])
def test_bad_release_id(ref):
    err = bad(f"show {ref}")
    assert err.message == "a release id looks like REL-12"
    assert err.form == USAGE["show"]


@pytest.mark.parametrize("ref, rid", [("REL-12", 12), ("rel-12", 12), ("12", 12), ("REL-000012", 12),
                                      ("REL-999999999", 999999999)])
def test_good_release_id(ref, rid):
    assert parse_command(f"show {ref}").release_id == rid


def test_release_id_may_come_after_the_keys():
    cmd = parse_command('nogo reason="red tests" REL-4')
    assert cmd.release_id == 4 and cmd.args == {"reason": "red tests"}


def test_extra_positional_words_are_refused():
    err = bad("go REL-1 looks good")
    assert "'looks' is not understood here" in err.message
    assert err.form == USAGE["go"]


def test_positional_on_request_is_refused():
    err = bad("request payments")
    assert "'payments' is not understood here" in err.message
    assert err.form == USAGE["request"]


def test_commands_without_ref_take_no_id():
    assert parse_command("help").release_id is None
    assert parse_command("request service=x").release_id is None
    err = bad("help REL-1")
    assert err.form == USAGE["help"]


@pytest.mark.parametrize("text, positional", [
    ("list", ()), ("list pending", ("pending",)), ("list UPCOMING", ("upcoming",)), ("list Mine", ("mine",)),
])
def test_list_filters(text, positional):
    cmd = parse_command(text)
    assert cmd.name == "list" and cmd.positional == positional and cmd.release_id is None


@pytest.mark.parametrize("text", ["list approved", "list pending mine", "list REL-1"])
def test_bad_list_filter(text):
    err = bad(text)
    assert err.message == "list takes pending, upcoming or mine"
    assert err.form == USAGE["list"]


def test_unclosed_quote_is_an_input_error_with_the_form():
    err = bad('request service=payments summary="Add refunds')
    assert "quote is not closed" in err.message
    assert err.form, "the person should be shown the form of the command they were typing"
    assert "/release request" in err.form


def test_unclosed_curly_quote():
    err = bad("nogo REL-1 reason=“tests are red")
    assert "quote is not closed" in err.message
    assert err.form and "/release nogo" in err.form


def test_a_ten_digit_id_within_32_bits_is_an_id_like_any_other():
    assert parse_command("show REL-1234567890").release_id == 1234567890


def test_parse_ref():
    assert parse_ref(" REL-42 ") == 42
    assert parse_ref("42") == 42
    with pytest.raises(InputError):
        parse_ref("REL 42")


def test_usage_has_a_form_for_every_subcommand():
    for name, form in USAGE.items():
        assert form.startswith(f"/release {name}")


# --- did you mean ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("line, says", [
    ("approve REL-12", "Did you mean `/release go REL-12`?"),
    ("reject REL-12", "Did you mean `/release nogo REL-12`?"),
    ("reqest service=payments", "Did you mean `/release request service=payments`?"),
    ("sho REL-3", "Did you mean `/release show REL-3`?"),
    ("service=payments version=2.3.1 flags=none", "Did you mean `/release request service=payments version=2.3.1 "
                                                  "flags=none`?"),
    ("go REL-1 nte=fine", "Did you mean `note=`?"),
    ("request servce=payments", "Did you mean `service=`?"),
    ("blackout remvoe 3", "Did you mean `remove`?"),
    ("blackout add nme=x", "Did you mean `name=`?"),
    ("list upcomming", "Did you mean `upcoming`?"),
])
def test_a_near_miss_names_what_was_meant(line, says):
    with pytest.raises(InputError) as err:
        parse_command(line)
    assert says in err.value.message


def test_nothing_near_suggests_nothing():
    with pytest.raises(InputError) as err:
        parse_command("xyzzy")
    assert "Did you mean" not in err.value.message and "Commands: request, " in err.value.message


@pytest.mark.parametrize("line, quoted", [
    ("request service=payments summary=Add refunds now", 'summary="Add refunds now"'),
    ("edit REL-2 summary=Fix 2 bugs", 'summary="Fix 2 bugs"'),
    ('blackout add name=Peak trading start="2026-12-18 16:00"', 'name="Peak trading"'),
])
def test_an_unquoted_value_with_spaces_is_shown_quoted(line, quoted):
    with pytest.raises(InputError) as err:
        parse_command(line)
    assert quoted in err.value.message and err.value.field == quoted.split("=")[0]


def test_a_release_id_after_the_fields_is_still_the_release_id():
    assert parse_command("go note=fine REL-4").release_id == 4
