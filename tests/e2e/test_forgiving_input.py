"""Forgiving input (issue 9, items 3, 5, 6): the form opens after any typed start, natural dates and durations
are read in the requester's zone and locale and echoed back, and a near miss is answered with what was meant.
The clock is Monday 23 Nov 2026, 09:00 UTC (09:00 in London, the emulator's users.info zone)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from sqlmodel import Session, select

from storage.models import AuditEvent, Outbox, Release

UTC = timezone.utc


def reply(bot) -> str:
    return bot.emulator.calls_to("response_url")[-1].args["text"]


def answer(bot, r) -> str:
    return r.json()["text"] if r.headers.get("content-type", "").startswith("application/json") else reply(bot)


def releases(db) -> list[Release]:
    with Session(db) as s:
        return list(s.exec(select(Release)))


def count(db, model) -> int:
    with Session(db) as s:
        return len(list(s.exec(select(model))))


def element(view, block_id) -> dict:
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)["element"]


# --- item 3: the form opens after any typed start ----------------------------------------------------------------

@pytest.mark.parametrize("typed, day, time", [
    ("tomorrow 14:00", "2026-11-24", "14:00"),
    ("9:30", "2026-11-23", "09:30"),
    ("dec 24 10:00", "2026-12-24", "10:00"),
])
def test_the_form_opens_with_pickers_set_to_the_reading_of_a_natural_start(bot, db, typed, day, time):
    bot.command(f'request service=payments start="{typed}"', user="U0DEV")
    [opened] = bot.emulator.calls_to("views.open")
    assert opened.ok, opened.response  # Slack refuses "tomorrow 14:00" as an initial_date
    view = opened.args["view"]
    assert element(view, "start_date")["initial_date"] == day
    assert element(view, "start_time")["initial_time"] == time
    assert f'You typed start \\"{typed}\\"' in json.dumps(view)  # the typed text is kept in a hint
    assert bot.emulator.calls_to("response_url") == []  # no "took over 3 seconds"
    assert releases(db) == []


def test_a_start_nobody_can_read_leaves_the_pickers_empty_and_says_so(bot, db):
    bot.command('request service=payments start="after lunch"', user="U0DEV")
    [opened] = bot.emulator.calls_to("views.open")
    assert opened.ok, opened.response
    view = opened.args["view"]
    assert "initial_date" not in element(view, "start_date") and "initial_time" not in element(view, "start_time")
    assert 'You typed start \\"after lunch\\"' in json.dumps(view)


def test_the_emulator_refuses_pickers_slack_would_refuse(bot):
    # The emulator answers like Slack, so the tests above would fail against the old prefill.
    view = {"type": "modal", "title": {"type": "plain_text", "text": "x"}, "blocks": [
        {"type": "input", "block_id": "d", "label": {"type": "plain_text", "text": "d"},
         "element": {"type": "datepicker", "action_id": "d", "initial_date": "tomorrow"}},
        {"type": "input", "block_id": "t", "label": {"type": "plain_text", "text": "t"},
         "element": {"type": "timepicker", "action_id": "t", "initial_time": "9:00"}}]}
    import httpx
    r = httpx.post(f"{bot.emulator.api_url}views.open", headers={"Authorization": "Bearer xoxb-test"},
                   json={"trigger_id": "1.2.x", "view": view}).json()
    assert r["ok"] is False and r["error"] == "invalid_arguments"
    assert any("/view/blocks/0/element/initial_date" in m for m in r["response_metadata"]["messages"])
    assert any("/view/blocks/1/element/initial_time" in m for m in r["response_metadata"]["messages"])


def test_when_slack_refuses_the_form_the_requester_hears_slacks_reason(bot, db):
    bot.emulator.fail_next("views.open", error="invalid_arguments")
    bot.command("request service=payments", user="U0DEV")
    text = reply(bot)
    assert "Slack refused the form: invalid_arguments" in text
    assert "3 seconds" not in text
    assert "/release request service=" in text  # the one-line form is the way round it


def test_an_expired_trigger_is_still_explained_as_the_3_second_limit(bot):
    bot.emulator.fail_next("views.open", error="expired_trigger_id")
    bot.command("request service=payments", user="U0DEV")
    assert "3 seconds" in reply(bot) and "expired_trigger_id" in reply(bot)


# --- item 5: natural dates and durations, echoed back --------------------------------------------------------------

LINE = ('request service=payments version=2.3.1 type=minor flags=feature tz=Europe/London '
        'summary="Add refunds" start="{start}" duration="{duration}"')


def test_a_one_line_request_with_a_natural_start_and_duration_is_echoed_with_its_zone(bot, db):
    bot.command(LINE.format(start="next monday 9am", duration="1 hour"), user="U0DEV")
    [r] = releases(db)
    assert r.start_at == datetime(2026, 11, 30, 9, 0, tzinfo=UTC) and r.end_at == datetime(2026, 11, 30, 10, 0,
                                                                                          tzinfo=UTC)
    text = reply(bot)
    assert f"<!date^{int(r.start_at.timestamp())}^" in text and f"<!date^{int(r.end_at.timestamp())}^" in text
    assert "(Mon 30 Nov 09:00–10:00 Europe/London)" in text


@pytest.mark.parametrize("locale, day, says", [("en-US", datetime(2026, 12, 3, 14, 0, tzinfo=UTC), "3 December"),
                                               ("en-GB", datetime(2027, 3, 12, 14, 0, tzinfo=UTC), "12 March")])
def test_a_numeric_date_is_read_in_the_requesters_locale_and_the_reading_is_said(bot, db, locale, day, says):
    bot.emulator.locales["U0DEV"] = locale
    bot.command(LINE.format(start="12/03 14:00", duration="90min"), user="U0DEV")
    [r] = releases(db)
    assert r.start_at == day and r.duration_minutes == 90
    assert f"read 12/03 as {says}" in reply(bot) and locale in reply(bot)


def test_reschedule_reads_the_same_phrases_and_echoes_the_new_window(bot, db):
    bot.command(LINE.format(start="2026-12-01 14:00", duration="60m"), user="U0DEV")
    bot.command('reschedule REL-1 start="tomorrow 14:00" duration="2 hours"', user="U0DEV")
    [r] = releases(db)
    assert r.start_at == datetime(2026, 11, 24, 14, 0, tzinfo=UTC) and r.duration_minutes == 120
    assert "Window: <!date^" in reply(bot) and "(Tue 24 Nov 14:00–16:00 Europe/London)" in reply(bot)


def test_an_unreadable_start_writes_nothing_and_names_the_accepted_forms(bot, db):
    before = (count(db, Release), count(db, AuditEvent), count(db, Outbox))
    bot.command(LINE.format(start="after lunch", duration="1 hour"), user="U0DEV")
    assert "tomorrow 14:00" in reply(bot) and "next monday 9am" in reply(bot)
    assert (count(db, Release), count(db, AuditEvent), count(db, Outbox)) == before


# --- item 6: did you mean ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, says", [
    ("approve REL-1", "Did you mean `/release go REL-1`"),
    ("reqeust service=payments", "Did you mean `/release request service=payments`"),
    ("service=payments version=2.3.1", "Did you mean `/release request service=payments version=2.3.1`"),
    ('request service=payments summary=Add refunds now', 'summary="Add refunds now"'),
    ("go REL-1 nott=fine", "Did you mean `note=`"),
    ("list pendnig", "Did you mean `pending`"),
    ("blackout ad", "Did you mean `add`"),
])
def test_a_near_miss_is_answered_with_what_was_meant_and_nothing_is_written(bot, db, text, says):
    before = (count(db, Release), count(db, AuditEvent), count(db, Outbox))
    text_back = answer(bot, bot.command(text, user="U0RM"))
    assert says in text_back
    assert (count(db, Release), count(db, AuditEvent), count(db, Outbox)) == before


def test_a_misspelt_release_type_suggests_the_nearest(bot, db):
    bot.command('request service=payments version=1 type=minr flags=none start="2026-12-01 14:00" tz=UTC '
                'duration=1h summary=x', user="U0DEV")
    assert "Did you mean `minor`?" in reply(bot)
    assert releases(db) == []


def test_the_form_and_the_line_say_the_window_back_the_same_way(bot, db):
    from test_request_modal import META, values
    bot.submit("release_request", values(duration={"duration": {"type": "plain_text_input", "value": "90min"}}),
               user="U0DEV", private_metadata=META)
    [r] = releases(db)
    assert r.duration_minutes == 90
    said = bot.emulator.calls_to("chat.postEphemeral")[-1].args["text"]
    assert f"Window: <!date^{int(r.start_at.timestamp())}^" in said
    assert "(Tue 01 Dec 14:00–15:30 Europe/London)" in said


def test_a_blackout_takes_natural_dates_and_is_echoed_with_its_zone(bot, db):
    bot.emulator.locales["U0RM"] = "en-GB"
    bot.command('blackout add name="Peak trading" start="friday 16:00" end="12/03 08:00" tz=Europe/London',
                user="U0RM")
    text = reply(bot)
    assert "Blackout 1 'Peak trading' added. Window: <!date^" in text
    assert "(Fri 27 Nov 16:00 – Fri 12 Mar 08:00 Europe/London)" in text
