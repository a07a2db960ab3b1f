"""Every time a person reads is Slack's <!date^…> (their own zone), in plain-text replies too: commands/
marks a time with commands.text.when(); the bot renders it after escaping, the API and CLI as ISO 8601 UTC."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from calendars import ics
from commands.errors import InputError
from commands.text import check_text, parse_command, when

from bot.messages.common import esc
from bot.messages.modal import field_errors
from bot.times import iso_all, iso_times

UTC = timezone.utc
AT = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
EPOCH = int(AT.timestamp())
COMMANDS = Path(__file__).resolve().parents[2] / "commands"
# Formatting a time for a person: strftime(), or inside an f-string a format spec like {x:%H:%M}, .isoformat(),
# str(…), or a time put in as it is ({now}, {r.start_at}, {t.due_at!s}): the last three print
# "2026-12-01 14:00:00+00:00" or its ISO form, UTC, where the reader should see their own zone.
_FORMATS = re.compile(r"\{[^{}\n]*:%[^{}\n]*\}|\{[^{}\n]*\.isoformat\(\)[^{}\n]*\}|\{\s*str\([^{}\n]*\)[^{}\n]*\}"
                      r"|\{[\w.]*(?:_at|_until|start|end|now|due|deadline)(?:![sr])?\}")
_FSTRING = re.compile(r"""(?<!\w)[rR]?[fF][rR]?("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')""")  # one line's f-strings


def formats_a_time(line: str) -> bool:
    return ".strftime(" in line or any(_FORMATS.search(m.group(1)) for m in _FSTRING.finditer(line))


# The one left: the edit form's prefill, a value fed back into the parser in the release's own zone.
# values fed back into the parser, not text for a person: the edit form's prefill, a slot button's start
_NOT_FOR_PEOPLE = {("release.py", '.strftime("%Y-%m-%d %H:%M"), "tz": release.tz'),
                   ("replan.py", 'local = start.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M")'),
                   # the request form's picker value, and its hint: plain text under the pickers, where Slack
                   # renders no dates, so it names the zone it read the typed start in
                   ("request.py", 'local = f"{start.local:%Y-%m-%d %H:%M}"'),
                   ("request.py", 'read as {start.local:%a %d %b %H:%M} {tz}{note}.'),
                   ("emergency.py", '"start": now.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M"), "tz": "UTC",'),
                   # outbox keys: stable identities for idempotency (one warning per occurrence, one failure
                   # note per failure), compared by the database and never shown to anyone
                   ("blackout.py", 'key = f"blackout-warning:{blackout.id}:{occ.start.isoformat()}"'),
                   ("blackout.py", 'key=f"subscription-failed:{sub.id}:{now.isoformat()}"'),
                   # the signed audit checkpoint: its text is pasted back verbatim and its signature checked, so
                   # its time is ISO 8601 (a Slack date would not survive the copy); and its period key
                   ("audit_checkpoint.py", 'return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")'),
                   ("audit_checkpoint.py", 'period=f"manual:{now.astimezone(timezone.utc).isoformat()}"')}


def test_commands_no_longer_format_times_for_people():
    found = []
    for path in sorted(COMMANDS.glob("*.py")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if formats_a_time(line) and not any(path.name == f and part in line for f, part in _NOT_FOR_PEOPLE):
                found.append(f"{path.name}: {line.strip()}")
            if re.search(r"\d UTC\b|\} UTC\b", line):
                found.append(f"{path.name}: {line.strip()}")
    assert not found, "times formatted for people in commands/ (use commands.text.when):\n" + "\n".join(found)


@pytest.mark.parametrize("line", [
    'f"until {ends.isoformat()}."', 'f"until {str(ends)}."', 'f"now ({now}) is outside"',
    'f"runs until {dep.stabilisation_ends_at}; then"', 'f"due {t.due_at!s}"', 'f"at {d.now:%H:%M}"',
    'x.strftime("%H:%M")', 'f"typed \\"{shown}\\": read as {start}"'])
def test_the_check_catches_a_time_printed_as_it_is(line):
    assert formats_a_time(line)


@pytest.mark.parametrize("line", ['f"{release.ref} is {release.state}"', 'f"until {when(ends)}"',
                                  'payload={"start": occ.start.isoformat()}', 'f"{len(rows)} rows"'])
def test_the_check_leaves_other_text_alone(line):
    assert not formats_a_time(line)


def test_a_marked_time_is_a_slack_date_after_escaping():
    shown = esc(f"Stabilisation runs until {when(AT)}; <!channel> & co")
    assert shown == (f"Stabilisation runs until <!date^{EPOCH}^{{date_short_pretty}} {{time}}|2026-12-01 14:00 UTC>; "
                     "&lt;!channel&gt; &amp; co")


def test_time_only_date_only_and_the_planned_zone():
    assert esc(when(AT, show="t")) == f"<!date^{EPOCH}^{{time}}|14:00 UTC>"
    assert esc(when(AT, show="d")) == f"<!date^{EPOCH}^{{date_short_pretty}}|2026-12-01>"
    assert esc(when(AT, "America/New_York")).endswith("|2026-12-01 14:00 UTC> (2026-12-01 09:00 America/New_York)")
    assert esc(when(AT, "UTC")) == esc(when(AT))  # no "(… UTC)" after a UTC fallback


def test_the_api_and_cli_form_is_iso_8601_utc():
    assert iso_times(f"until {when(AT)}.") == "until 2026-12-01T14:00:00Z."
    assert iso_times(when(AT, "Asia/Kolkata")) == "2026-12-01T14:00:00Z (2026-12-01 19:30 Asia/Kolkata)"
    assert iso_times(when(AT, show="d")) == "2026-12-01"
    assert iso_all({"reasons": [f"at {when(AT)}"], "n": 1}) == {"reasons": ["at 2026-12-01T14:00:00Z"], "n": 1}
    assert field_errors({"start": f"by {when(AT, show='d')}"}) == {"start_date": "by 2026-12-01"}


def test_when_refuses_a_naive_time():
    with pytest.raises(ValueError):
        when(AT.replace(tzinfo=None))


@pytest.mark.parametrize("typed", [
    f"\ufdd0{EPOCH};dt;\ufdd1",  # the marker itself, pasted
    f"blackout add name=\"\ufdd0{EPOCH};dt;\ufdd1\" start=\"2026-12-01 00:00\" end=\"2026-12-02 00:00\" tz=UTC",
])
def test_a_typed_marker_is_refused_at_the_edge_so_it_never_becomes_a_date(typed):
    with pytest.raises(InputError) as info:
        parse_command(typed) if typed.startswith("blackout") else check_text(typed, "name")
    assert "noncharacter" in info.value.message


def test_a_typed_slack_date_stays_text():
    assert "<!date" not in esc(f"<!date^{EPOCH}^{{time}}|x>")


def test_a_broken_or_stray_marker_is_dropped_not_shown():
    assert esc("a \ufdd0123;zz;\ufdd1 b \ufdd1") == "a 123;zz; b "


def test_a_subscribed_calendars_event_name_cannot_carry_a_marker():
    text = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\nUID:m@t\r\n"
            "DTSTART:20261201T100000Z\r\nDTEND:20261201T110000Z\r\n"
            f"SUMMARY:Freeze \ufdd0{EPOCH};dt;\ufdd1\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    [ev] = ics.occurrences(text, datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert "<!date" not in esc(ev.summary) and ev.summary == f"Freeze {EPOCH};dt;"
