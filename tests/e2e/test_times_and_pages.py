"""Through Slack (signed HTTP, the emulator) and the Pipeline API: replies show times as <!date^…> in the
reader's zone (ISO 8601 UTC for a pipeline), and long lists page with a "More" button whose next page is
shown to the person who clicked, only to them."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import httpx
import pytest

from bot.messages.ids import MORE_ACTION
from conftest import start_bot, serving
from package_steps import form_values, ready

TOKEN = "dp-0123456789abcdef0123"


def blackout(n: int) -> str:
    return (f'blackout add name="Freeze {n}" start="2027-0{1 + n // 28}-{1 + n % 28:02d} 00:00" '
            f'end="2027-0{1 + n // 28}-{1 + n % 28:02d} 06:00" tz=Europe/London')


def request(n: int) -> str:
    return (f'request service=svc{n} version=1.0.{n} type=minor flags=feature start="2026-12-{1 + n % 28:02d} 14:00" '
            f'tz=UTC duration=60m summary="Change {n}"')


def answers(bot) -> list:
    return bot.emulator.calls_to("response_url")


def more_values(blocks) -> list[str]:
    return [el["value"] for b in blocks or [] if b["type"] == "actions" for el in b["elements"]
            if el["action_id"] == MORE_ACTION]


def test_blackout_added_says_when_in_the_readers_zone(bot):
    bot.command(blackout(0), user="U0RM")
    text = answers(bot)[-1].args["text"]
    # the window is said back by bot.messages.common.window_echo, in each reader's zone and the planning zone's
    assert "Blackout 1 'Freeze 0' added. Window: <!date^" in text and "(Fri 01 Jan 00:00–06:00 Europe/London)" in text
    assert "\ufdd0" not in text and " UTC;" not in text


def test_a_typed_marker_is_refused_not_shown_as_a_date(bot):
    answer = bot.command('blackout add name="\ufdd01796133600;dt;\ufdd1" start="2027-01-01 00:00" '
                         'end="2027-01-02 00:00" tz=UTC', user="U0RM")
    text = answer.json()["text"]  # refused in the ack, before anything is written
    assert "noncharacter" in text and "<!date" not in text


def test_the_blackout_list_pages_with_more_and_each_page_is_for_the_clicker(bot):
    for n in range(12):
        bot.command(blackout(n), user="U0RM")
    bot.command("blackout list", user="U0DEV")
    first = answers(bot)[-1].args
    shown = json.dumps(first["blocks"])
    assert "*1* Freeze 0" in shown and "*10* Freeze 9" in shown and "*11* " not in shown
    [value] = more_values(first["blocks"])
    bot.click(MORE_ACTION, value, user="U0DEV")
    second = answers(bot)[-1]
    page = json.dumps(second.args["blocks"])
    assert "*11* Freeze 10" in page and "*12* Freeze 11" in page and "*1* Freeze 0" not in page
    assert second.args.get("response_type") == "ephemeral" and second.args.get("replace_original") is False
    assert more_values(second.args["blocks"]) == []


def test_list_pages_with_more_so_no_release_is_dropped(bot):
    for n in range(23):
        bot.command(request(n), user="U0DEV")
    bot.command("list mine", user="U0DEV")
    first = answers(bot)[-1].args["blocks"]
    refs = [f"*REL-{i}*" for i in range(1, 24)]
    assert sum(ref in json.dumps(first) for ref in refs) == 20
    [value] = more_values(first)
    bot.click(MORE_ACTION, value, user="U0DEV")
    second = json.dumps(answers(bot)[-1].args["blocks"])
    assert all(f"*REL-{i}* " in second for i in (1, 2, 3)) and "*REL-23* " not in second
    assert more_values(answers(bot)[-1].args["blocks"]) == []


def test_a_forged_more_value_shows_nothing_of_the_lists(bot):
    bot.click(MORE_ACTION, "blackouts:all:abc", user="U0DEV")
    assert "no longer available" in answers(bot)[-1].args["text"]


DATE = r"<!date\^\d+\^[^|>]+\|[^>]+>"  # a Slack date token, which each reader sees in their own zone
ALL_CHECKED = {"checklist": {"checklist": {"selected_options": [{"value": "monitoring"}, {"value": "rollback"},
                                                                 {"value": "oncall"}]}}, **form_values("svc14:1.0.14")}


def approved(bot):
    bot.command(request(14), user="U0DEV")  # 2026-12-15 14:00-15:00 UTC
    bot.command("go REL-1", user="U0RM")
    bot.command("go REL-1", user="U0QA")
    ready(bot, 1, artifact="svc14:1.0.14")


def test_the_gate_refusal_says_now_and_the_window_as_slack_dates(bot):
    approved(bot)
    bot.command("deploy REL-1", user="U0PL")  # the clock is at 2026-11-23 09:00, weeks before the window
    text = answers(bot)[-1].args["text"]
    assert re.search(rf"now \({DATE}\) is outside the planned window {DATE}–{DATE}", text), text
    assert "\ufdd0" not in text and "2026-12-15 14:00:00" not in text and "T14:00" not in text


def test_stabilisation_runs_until_a_slack_date(bot, clock):
    approved(bot)
    clock.set(datetime(2026, 12, 15, 14, 5, tzinfo=timezone.utc))
    bot.command("deploy REL-1", user="U0PL")
    view = bot.emulator.calls_to("views.open")[-1].args["view"]
    bot.submit("deploy_checklist", ALL_CHECKED, user="U0PL", private_metadata=view["private_metadata"])
    bot.command("done REL-1 outcome=success", user="U0PL")
    text = answers(bot)[-1].args["text"]
    assert re.search(rf"Stabilisation runs until {DATE}; then the sign-offs", text), text
    assert "\ufdd0" not in text and "+00:00" not in text


@pytest.fixture
def api_bot(db, clock, policy, emulator):
    yield from serving(start_bot(db, clock, policy, emulator,
                                 env_overrides={"RELEASEBOT_API_TOKENS": f"deploy-pipeline={TOKEN};act_for=people"}))


def test_the_gate_gives_a_pipeline_iso_8601_utc(api_bot):
    api_bot.command('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-15 10:00" tz=UTC '
                    'duration=60m summary="Add refunds"', user="U0DEV")
    with httpx.Client(base_url=api_bot.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as api:
        body = api.get("/api/v1/releases/REL-1/gate", params={"actor": "U0PL"}).json()
    [window] = [r for r in body["reasons"] if "outside the planned window" in r]
    assert window.startswith("now (2026-11-23T09:00:00Z) is outside the planned window "
                             "2026-12-15T10:00:00Z–2026-12-15T11:00:00Z;")
    assert "\ufdd0" not in json.dumps(body, ensure_ascii=False)
