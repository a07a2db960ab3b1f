"""The register's messages (bot/messages/nonconformance.py) within Slack's limits, whole, and escaped:
the largest NC over several messages with nothing cut, a long list paged with what it leaves out counted
and pointed to, and hostile text never becoming a mention."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from slack_sdk.models.blocks import Block

from commands.nonconformance_register import Entry, Notice
from commands.policy import Policy
from commands.text import when
from storage.models import NonConformance

from bot.messages import aftercare, nonconformance as render
from bot.messages.common import BLOCK_LIMIT, TEXT_LIMIT, esc

from test_message_limits import FILLS, INPUT_MAX, _broken, _texts, fill

UTC = timezone.utc
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
POLICY = Policy.from_mapping({"roles": {"release_manager": ["U0RM", "S0RMS"]}})
EVIL = "<!channel> <@U0EVIL> &amp; *bold* `x`"


def largest(kind: str, nc_id: int = 7, detail: int = 12_000) -> NonConformance:
    return NonConformance(id=nc_id, release_id=3, service="s" * 120, kind="deployment_without_approval",
                          subject="x", detail=fill(kind, detail), reported_by="U0DEV via pipeline:" + "p" * 80,
                          at=NOW, state="actioned", due_at=NOW + timedelta(days=7), owner_id="U0DEV",
                          action=fill(kind, INPUT_MAX), planned_by="U0RM", planned_at=NOW,
                          evidence=fill(kind, INPUT_MAX), actioned_by="U0DEV", actioned_at=NOW,
                          repeat=True, repeat_of=2, root_cause=fill(kind, INPUT_MAX), escalated_at=NOW)


def within_limits(blocks: list[dict]) -> None:
    assert 0 < len(blocks) <= BLOCK_LIMIT
    for block in blocks:
        Block.parse(block).to_dict()
    for piece in _texts(blocks):
        assert len(piece) <= TEXT_LIMIT and "\ufdd0" not in piece
        assert not _broken(piece), piece[-80:]


def _squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("kind", FILLS)
def test_show_keeps_the_largest_nc_whole_over_several_messages(kind):
    nc = largest(kind, detail=200_000)  # a long pipeline detail: more than 50 sections' worth
    messages = render.show_messages(Entry(nc, "REL-3", overdue=False))
    assert len(messages) > 1
    for blocks in messages:
        within_limits(blocks)
    shown = _squeezed("".join(t for blocks in messages for t in _texts(blocks)))
    for value in (nc.detail, nc.action, nc.evidence, nc.root_cause):
        assert _squeezed(esc(value)) in shown
    assert "*Repeat*ofNC-2" in shown and "*Owner:*<@U0DEV>" in shown


@pytest.mark.parametrize("kind", FILLS)
def test_a_long_list_shows_one_page_and_says_what_it_leaves_out(kind):
    entries = [Entry(largest(kind, nc_id=i, detail=INPUT_MAX), None, overdue=i % 2 == 0) for i in range(1, 31)]
    blocks = render.list_message(entries, 45, "overdue")
    within_limits(blocks)
    text = "\n".join(_texts(blocks))
    assert "(45)" in text and text.count("*NC-") == render.LIST_PAGE
    assert "25 more not shown here" in text and "releasebot nc list overdue" in text
    assert "/release nc show NC-1" in text  # each line's detail is a preview that says where the rest is


def test_an_empty_list_says_so():
    [block] = render.list_message([], 0, "mine")
    assert block["text"]["text"] == "*Non-conformances you own* (0)\nNone."


def test_announcements_name_the_nc_its_kind_due_date_and_repeat():
    due = NOW + timedelta(days=7)
    payload = {"event": "nonconformance", "ref": "REL-3", "detail": EVIL, "roles": ["release_manager"],
               "nc": "NC-9", "kind": "deployment_without_approval", "due": when(due, "Europe/London"),
               "repeat_of": "NC-2"}
    for text in (render.channel_announcement(payload, POLICY), aftercare.nonconformance_note(payload, POLICY),
                 aftercare.thread_note("nonconformance", None, payload)[0]):  # type: ignore[arg-type]
        assert "*NC-9* · deployment without approval" in text
        assert f"<!date^{int(due.timestamp())}^" in text and "\ufdd0" not in text
        assert "*repeat* of NC-2" in text
        assert "<!channel>" not in text and "<@U0EVIL>" not in text and "&lt;!channel&gt;" in text
    assert render.channel_announcement(payload, POLICY).startswith("<@U0RM> <!subteam^S0RMS>")
    # a note queued before the register (no NC in its payload) still renders as it did
    old = render.channel_announcement({"ref": "REL-3", "detail": "d", "roles": ["release_manager"]}, POLICY)
    assert old.endswith("*Non-conformance (QMS 6.2)* on REL-3: d")


def test_reminders_mention_who_owes_the_action():
    nc = largest("words", detail=100)
    soon = Notice(nc, None, "nc_soon", users=("U0DEV",), tz="UTC")
    text, blocks = render.reminder(soon, POLICY)
    within_limits(blocks)
    assert text.startswith("NC-7: The corrective action of NC-7") and "is due <!date^" in text
    assert "<@U0DEV>" in blocks[0]["text"]["text"] and "<@U0RM>" not in blocks[0]["text"]["text"]
    nc.owner_id = None
    text, blocks = render.reminder(Notice(nc, None, "nc_due", roles=("release_manager",)), POLICY)
    assert "has no owner yet" in text and "<@U0RM>" in blocks[0]["text"]["text"]
    text, blocks = render.reminder(Notice(nc, None, "nc_escalation", roles=("release_manager",)), POLICY)
    assert "overdue" in text and "Escalated to the release managers" in text


@pytest.mark.parametrize("event", ["planned", "actioned", "verified", "closed"])
def test_change_notes_escape_what_people_typed(event):
    nc = largest("words", detail=100)
    payload = {"event": event, "nc": 7, "by": "U0RM", "owner": "U0DEV", "action": EVIL, "evidence": EVIL,
               "due": when(NOW)}
    text, blocks = render.change_note(payload, nc, POLICY)
    within_limits(blocks)
    assert "NC-7" in text and "<!channel>" not in text and "<@U0EVIL>" not in text and "\ufdd0" not in text
