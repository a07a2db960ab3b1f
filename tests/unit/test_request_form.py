"""The request form's pickers: Slack refuses the whole form over one bad initial_date or initial_time, so only a
real YYYY-MM-DD and HH:mm are given, and what was typed is kept in a hint."""
from __future__ import annotations

import json

import pytest

from bot.messages.modal import picker_start, request_modal
from commands.classification import Answers
from commands.policy import Policy

POLICY = Policy.from_mapping({}, source="t")


def element(view, block_id) -> dict:
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)["element"]


@pytest.mark.parametrize("text, expected", [
    ("2026-12-01 14:00", ("2026-12-01", "14:00")), (" 2026-12-01 09:05 ", ("2026-12-01", "09:05")),
    ("tomorrow 14:00", None), ("2026-12-01 9:00", None), ("9:00", None), ("2026-02-30 10:00", None),
    ("2026-12-01 24:00", None), ("2026-12-01", None), ("", None), (None, None), ("2026-12-01  14:00", None),
])
def test_only_a_real_date_and_time_reach_the_pickers(text, expected):
    assert picker_start(text) == expected


def test_a_start_the_pickers_cannot_show_is_kept_in_a_hint_not_in_the_pickers():
    view = request_modal(POLICY, {"start": "tomorrow 14:00"}, Answers(), "C1")
    assert "initial_date" not in element(view, "start_date") and "initial_time" not in element(view, "start_time")
    assert 'You typed start \\"tomorrow 14:00\\"' in json.dumps(view)


def test_the_hint_is_escaped_kept_short_and_survives_a_redraw():
    typed = "<!channel> " + "x" * 4000
    view = request_modal(POLICY, {"start": ""}, Answers(), "C1", start_hint=f'You typed start "{typed}"')
    hint = next(b for b in view["blocks"] if b["type"] == "context" and "You typed" in json.dumps(b))
    text = hint["elements"][0]["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text and len(text) <= 3000
    assert len(view["private_metadata"]) <= 3000  # Slack refuses a longer one
    assert json.loads(view["private_metadata"])["start_hint"].startswith("You typed start")
    assert len(view["blocks"]) <= 100  # a modal's limit


def test_a_valid_start_fills_both_pickers_and_adds_no_hint():
    view = request_modal(POLICY, {"start": "2026-12-01 14:00"}, Answers(), "C1")
    assert element(view, "start_date")["initial_date"] == "2026-12-01"
    assert element(view, "start_time")["initial_time"] == "14:00"
    assert "You typed" not in json.dumps(view)
