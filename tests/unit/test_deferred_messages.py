"""What the emergency aftercare says in Slack (bot.messages.aftercare): deferred-step reminders, the
non-conformance in the release channel, the validation button and form. Hostile text stays text, the bot's own
mentions work, and every message keeps within Slack's limits."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from commands.policy import Policy
from commands.reminders import Notice
from storage.models import Release

from bot.messages import aftercare
from bot.messages.common import BLOCK_LIMIT, TEXT_LIMIT

UTC = timezone.utc
NOW = datetime(2026, 12, 11, 16, 35, tzinfo=UTC)
EVIL = "<!channel> <@U0VP> <http://evil.example|x>"
POLICY = Policy.from_mapping({"roles": {"release_manager": ["U0RM", "S0RMS"], "qa_lead": ["U0QA"]}})


def emergency(**kw) -> Release:
    return Release(id=7, service="payments", version="1.2.4", environment="production", requested_type="emergency",
                   derived_type="emergency", effective_type="emergency", start_at=NOW, end_at=NOW, tz="UTC",
                   duration_minutes=60, summary="s", requester_id="U0DEV", state="stabilising",
                   created_at=NOW, updated_at=NOW, **kw)


def within_limits(text: str, blocks: list[dict] | None) -> None:
    assert len(blocks or []) <= BLOCK_LIMIT
    for b in blocks or []:
        if b["type"] == "section":
            assert len(b["text"]["text"]) <= TEXT_LIMIT
        for e in b.get("elements", []):
            if e.get("type") == "button":
                assert len(e["text"]["text"]) <= 75


@pytest.mark.parametrize("what, users, roles, says", [
    ("deferred_soon", ("U0DEV",), (), "is due"),
    ("deferred_due", (), ("qa_lead",), "is due now"),
    ("deferred_escalation", (), ("release_manager",), "Escalated to the release managers"),
])
def test_a_deferred_step_reminder_names_the_step_its_deadline_and_who_owes_it(what, users, roles, says):
    notice = Notice(emergency(), what, users=users, roles=roles,
                    detail={"due_at": NOW + timedelta(hours=4), "step": "change_request",
                            "label": "formal change request"})
    text, blocks = aftercare.reminder(notice, POLICY)
    assert "formal change request" in text and says in text and "REL-7" in text
    assert f"<!date^{int((NOW + timedelta(hours=4)).timestamp())}^" in text  # read in each reader's zone
    shown = json.dumps(blocks)
    for u in users:
        assert f"<@{u}>" in shown
    if "release_manager" in roles:
        assert "<@U0RM>" in shown and "<!subteam^S0RMS>" in shown
    within_limits(text, blocks)


def test_the_non_conformance_in_the_release_channel_mentions_the_release_managers_and_escapes_its_detail():
    text = aftercare.nonconformance_note({"event": "nonconformance", "ref": "REL-7", "detail": EVIL,
                                          "roles": ["release_manager"]}, POLICY)
    assert text.startswith("<@U0RM> <!subteam^S0RMS>\n") and "REL-7" in text
    assert "<!channel>" not in text and "<@U0VP>" not in text and "<http://evil" not in text
    assert "&lt;!channel&gt;" in text


def test_a_recorded_step_says_how_late_it_was():
    text, _ = aftercare.thread_note("deferred_step_recorded", emergency(),
                                    {"by": "U0DEV", "step": "formal change request", "late_by_minutes": 130})
    assert text == "The formal change request of REL-7 was recorded by <@U0DEV>, 2h10m after its deadline."
    on_time, _ = aftercare.thread_note("deferred_step_recorded", emergency(),
                                       {"by": "U0DEV", "step": EVIL, "late_by_minutes": 0})
    assert "after its deadline" not in on_time and "<!channel>" not in on_time


def test_only_an_emergency_success_carries_the_validation_button():
    text, blocks = aftercare.thread_note("deployment_success", emergency(), {})
    [button] = blocks[1]["elements"]
    assert (button["action_id"], button["value"]) == (aftercare.VALIDATE_ACTION, "7")
    assert "/release validate REL-7" in text
    within_limits(text, blocks)
    minor = emergency()
    minor.effective_type = "minor"
    assert aftercare.thread_note("deployment_success", minor, {})[1] is None


def test_the_validation_form_asks_for_the_note():
    view = aftercare.task_modal("validate", emergency(), "C1")
    assert view["callback_id"] == aftercare.VALIDATE_CALLBACK and len(view["title"]["text"]) <= 24
    [field] = [b for b in view["blocks"] if b["type"] == "input"]
    assert field["block_id"] == "note" and not field["optional"] and len(field["label"]["text"]) <= 2000
    assert json.loads(view["private_metadata"]) == {"release": 7, "channel": "C1"}
