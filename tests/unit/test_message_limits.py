"""Nothing is cut off: the largest record the bot accepts, on every renderer in bot/messages/, stays within
Slack's limits (checked by slack_sdk's Block Kit models, whose to_dict() validates lengths, and 50 blocks),
long text is split over blocks (never inside a <!date^…> token or an &amp; entity), free text stays whole on
`show`, and long lists are paged with a "More" button."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from calendars.recurrence import Occurrence
from commands.agenda import Item
from commands.approval import ApprovalStatus, CastVote, RoleStatus
from commands.bridge import BridgeView
from commands.classification import Answers
from commands.policy import Policy
from commands.record import ReleaseRecord
from commands.reminders import Notice
from commands.request import _LIMITS
from commands.text import when
from storage.models import (AuditEvent, Blackout, Deployment, Emergency, NonConformance, Release, ReleaseFlag, SignOff,
                            Task, Vote)

from bot.messages import aftercare, bridge, calendar, modal
from bot.messages import release as render
from bot.messages.common import BLOCK_LIMIT, TEXT_LIMIT, esc, split
from bot.messages.ids import MORE_ACTION, parse_more

UTC = timezone.utc
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
INPUT_MAX = 3000  # a Slack text input's most; the fields without a limit of their own (notes, reasons) get this
FILLS = {"words": "Fix & <b> and more words ", "ampersands": "&"}  # the second has no place to break but entities
ROLES = {"release_manager": ["U0RM"], "qa_lead": ["U0QA", "S0QALEADS"]}


def fill(kind: str, n: int) -> str:
    return (FILLS[kind] * n)[:n]


def largest(kind: str, state: str = "pending", rid: int = 7) -> Release:
    return Release(id=rid, service="s" * 80, version=fill(kind, _LIMITS["version"]), environment="production",
                   requested_type="minor", derived_type="major", effective_type="major", misclassified=True,
                   misclassification_accepted_by="U0RM", misclassification_reason=fill(kind, INPUT_MAX),
                   start_at=NOW + timedelta(days=3), end_at=NOW + timedelta(days=3, hours=1),
                   tz="America/Argentina/ComodRivadavia", duration_minutes=60, summary=fill(kind, _LIMITS["summary"]),
                   risk=fill(kind, _LIMITS["risk"]), rollback_plan=fill(kind, _LIMITS["rollback"]),
                   links=fill(kind, _LIMITS["links"]), requester_id="U0DEV", state=state, round=2,
                   cancel_reason=fill(kind, INPUT_MAX), created_at=NOW, updated_at=NOW)


def deployment(kind: str) -> Deployment:
    return Deployment(release_id=7, deployer_id="U0PL", pipeline=fill(kind, 200), artifact=fill(kind, 1000),
                      commit=fill(kind, 80), started_at=NOW, finished_at=NOW, outcome="success",
                      note=fill(kind, 2000), rollback_decided_at=NOW, rollback_decided_by="U0PL", restored_at=NOW,
                      stabilisation_ends_at=NOW)


def status(kind: str) -> ApprovalStatus:
    return ApprovalStatus(roles=(RoleStatus("qa_lead", 1, ("U0QA",)), RoleStatus("release_manager", 1, ())),
                          nogos=tuple(CastVote(f"U0CAB{i}", "cab", "nogo", fill(kind, INPUT_MAX)) for i in range(3)))


def flags(kind: str) -> list[ReleaseFlag]:
    detail = f"falls in blackout '{fill(kind, 200)}' ({when(NOW)}–{when(NOW + timedelta(days=1))})"
    return [ReleaseFlag(release_id=7, kind="blackout", detail=detail, raised_at=NOW),
            ReleaseFlag(release_id=7, kind="blackout", detail=detail, raised_at=NOW, overridden_by="U0EXEC",
                        override_reason=fill(kind, INPUT_MAX), overridden_at=NOW)]


def record(kind: str) -> ReleaseRecord:
    return ReleaseRecord(
        release=largest(kind), status=status(kind),
        votes=[Vote(release_id=7, round=1, voter_id=f"U0CAB{i}", role="cab", decision="go",
                    note=fill(kind, INPUT_MAX), decided_at=NOW) for i in range(5)],
        trail=[AuditEvent(actor="U0RM", action="planning_checked", at=NOW + timedelta(minutes=i),
                          reason=fill(kind, INPUT_MAX)) for i in range(40)],
        deployment=deployment(kind),
        signoffs=[SignOff(release_id=7, role="qa_lead", user_id="U0QA", at=NOW)],
        tasks=[Task(release_id=7, kind="followup", due_at=NOW, done_at=NOW, done_by="U0OPS")],
        nonconformances=[NonConformance(kind="emergency_frequency", detail=fill(kind, INPUT_MAX), reported_by="U0RM",
                                        at=NOW)],
        flags=flags(kind))


def blackouts(kind: str, n: int = 1):
    return [(Blackout(id=i + 1, name=fill(kind, 200), start_local=NOW.replace(tzinfo=None),
                      end_local=NOW.replace(tzinfo=None), tz="America/Argentina/ComodRivadavia",
                      rrule="FREQ=WEEKLY;BYDAY=FR", services=["s" * 80] * 10, environments=["production"],
                      created_by="U0RM", created_at=NOW),
             [Occurrence(NOW, NOW + timedelta(hours=1)), Occurrence(NOW + timedelta(days=7), NOW + timedelta(days=8))])
            for i in range(n)]


def _reminder(kind: str, what: str):
    n = Notice(release=largest(kind), what=what, users=("U0PL",), roles=("qa_lead", "release_manager"),
               detail={"due_at": NOW, "window_end": NOW, "state": "deploying",
                       "needed": ["qa_lead", "operations", "release_manager"], "missing": {"qa_lead": 1, "cab": 2}})
    return aftercare.reminder(n, Policy.from_mapping({"roles": ROLES}, source="t"))


def _note(kind: str, event: str):
    return aftercare.thread_note(event, largest(kind), {
        "deployer": "U0PL", "by": "U0RM", "reason": fill(kind, INPUT_MAX), "detail": fill(kind, INPUT_MAX),
        "name": fill(kind, 200), "other": "REL-8", "details": [fill(kind, 400)] * 5,
        "start": NOW.isoformat(), "end": NOW.isoformat(), "how": "moved"})


def bridge_card(kind: str):
    """The pinned bridge card of the largest emergency: every text at its limit, every step owed, crowded roles."""
    e = Emergency(release_id=7, incident=fill(kind, _LIMITS["incident"]), security=True, opened_at=NOW,
                  opened_by="U0DEV", bridge_key="bridge-open:7", bridge_kind="thread",
                  bridge_fallback_reason=fill(kind, 300), blast_radius=fill(kind, 2000), blast_radius_by="U0EL",
                  rollback_option=fill(kind, 2000), rollback_option_by="U0EL", validated_at=NOW,
                  validated_by="U0OPS", approver_set=fill(kind, 200), closed_at=NOW, closed_by="U0RM")
    steps = [Task(release_id=7, kind=k, due_at=NOW, done_at=NOW, done_by="U0DEV", owner_id="U0DEV")
             for k in ("change_request", "planning", "testing", "approval", "retrospective", "root_cause")]
    roles = ("release_manager", "qa_lead", "operations", "platform_lead", "engineering_lead", "security")
    members = {role: tuple(f"U0{role[:3].upper()}{i:03d}" for i in range(60)) for role in roles}
    v = BridgeView(largest(kind), e, status(kind), deployment(kind), steps, roles, 999)
    return bridge.card(v, members)


def renderers(kind: str) -> dict:
    items = [Item(NOW + timedelta(hours=i), NOW + timedelta(hours=i + 1), "release", release=largest(kind))
             for i in range(0, 24 * 92, 6)]
    items += [Item(NOW, NOW + timedelta(hours=2), "blackout", name=fill(kind, 200), blackout_id=1)] * 50
    return {
        "approval_message": lambda: render.approval_message(largest(kind), status(kind), deployment(kind),
                                                            calendar.flags_block(flags(kind), [NOW] * 10)),
        "bridge card": lambda: bridge_card(kind),
        "approval_message cancelled": lambda: render.approval_message(largest(kind, "cancelled"), status(kind)),
        **{f"record_messages {i}": (lambda i=i: (None, (render.record_messages(record(kind)) + [[]] * 4)[i]))
           for i in range(4)},
        "list_message": lambda: (None, render.list_message([largest(kind, rid=i) for i in range(1, 22)], "mine",
                                                           more=True)),
        "error_text": lambda: (render.error_text(fill(kind, INPUT_MAX), "/release help"), None),
        "blackout_warning": lambda: calendar.blackout_warning(
            {"name": fill(kind, 200), "start": NOW, "end": NOW + timedelta(days=1),
             "releases": [(f"REL-{i}", "s" * 80, fill(kind, 200), "production", "approved", NOW)
                          for i in range(500)]}),
        "agenda": lambda: (None, calendar.agenda(items, 92, "s" * 80, "https://bot.example/feed/" + "t" * 60)),
        "blackout_list": lambda: (None, calendar.blackout_list(blackouts(kind, 25), {1: fill(kind, 2000)})),
        "flags_block": lambda: (None, calendar.flags_block(flags(kind) * 5, [NOW] * 20)),
        "channel_note": lambda: (calendar.channel_note({"event": "x", "name": fill(kind, 200),
                                                        "error": fill(kind, 2000), "has_copy": True}), None),
        "checklist_modal": lambda: (None, aftercare.checklist_modal(largest(kind), "C1")),
        "task_modal": lambda: (None, aftercare.task_modal("followup", largest(kind), "C1")),
        "nogo_modal": lambda: (None, modal.nogo_modal("REL-7", 7, "C1")),
        "request_modal": lambda: (None, modal.request_modal(
            Policy.from_mapping({"roles": ROLES}, source="t"),
            {"service": "s" * 80, "version": fill(kind, _LIMITS["version"]), "type": "minor", "env": "production",
             "start": "2026-12-01 14:00", "tz": "America/Argentina/ComodRivadavia", "duration": "60m",
             **{f: fill(kind, _LIMITS[f]) for f in ("summary", "risk", "rollback", "links")}},
            Answers(), "C1")),
        **{f"reminder {what}": (lambda what=what: _reminder(kind, what)) for what in aftercare._REMINDER_TEXT},
        **{f"thread_note {event}": (lambda event=event: _note(kind, event))
           for event in (*aftercare.THREAD_NOTES, *calendar.REPLAN_NOTES)},
    }


CASES = [(kind, name) for kind in FILLS for name in renderers(kind)]
_TOKEN_OR_ENTITY = re.compile(r"<[^<>]*>|&(?:amp|lt|gt);")


def _texts(blocks: list[dict]):
    for b in blocks:
        if b.get("text"):
            yield b["text"]["text"]
        for el in b.get("elements", []):
            if el.get("type") in ("mrkdwn", "plain_text"):
                yield el["text"]


def _broken(text: str) -> bool:
    """An unfinished token or entity at either end of a piece: it was cut inside one."""
    rest = _TOKEN_OR_ENTITY.sub("", text)
    return "<" in rest or ">" in rest or re.search(r"&[a-z]{0,3}$|^[a-z]{0,3};", text) is not None


@pytest.mark.parametrize("kind,name", CASES)
def test_the_largest_record_renders_within_slacks_limits(kind, name):
    text, blocks = renderers(kind)[name]()
    if isinstance(blocks, dict):  # a modal: the View model validates its title, blocks and their texts
        View(**blocks).to_dict()
        blocks = blocks["blocks"]
    if text is not None:
        assert len(text) <= 40_000  # chat.postMessage's text
        assert "\ufdd0" not in text and not _broken(text)
    for block in blocks or []:
        Block.parse(block).to_dict()  # raises SlackObjectFormationError past a length limit
    assert len(blocks or []) <= BLOCK_LIMIT
    for piece in _texts(blocks or []):
        assert len(piece) <= TEXT_LIMIT and "\ufdd0" not in piece
        assert not _broken(piece), piece[-80:]


def _squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("kind", FILLS)
def test_show_keeps_every_free_text_whole(kind):
    rec = record(kind)
    shown = _squeezed("".join(t for blocks in render.record_messages(rec) for t in _texts(blocks)))
    r = largest(kind)
    for value in (r.summary, r.risk, r.rollback_plan, r.links, r.misclassification_reason,
                  *(v.note for v in rec.votes), *(v.note for v in rec.status.nogos), rec.deployment.note,
                  rec.nonconformances[0].detail, rec.flags[1].override_reason):
        assert _squeezed(esc(value)) in shown
    assert "…" not in shown


@pytest.mark.parametrize("kind", FILLS)
def test_the_approval_message_says_where_the_whole_rollback_plan_is(kind):
    _, blocks = render.approval_message(largest(kind), status(kind))
    shown = "".join(_texts(blocks))
    assert "`/release show REL-7`" in shown
    short = render.approval_message(largest(kind).model_copy(update={"rollback_plan": "Redeploy 2.3.0."}),
                                    status(kind))[1]
    assert "Redeploy 2.3.0." in json.dumps(short)


@pytest.mark.parametrize("kind", FILLS)
def test_the_bridge_card_drops_nothing_without_saying_where_it_is(kind):
    _, blocks = bridge_card(kind)
    shown = _squeezed("".join(_texts(blocks)))
    e, r = bridge_card_parts(kind)
    # the fix scope is previewed with where to read it whole; the rest is on the card whole
    assert "`/releaseshowREL-7`" in shown and _squeezed(esc(r.summary[:200])) in shown
    for value in (e.incident, e.blast_radius, e.rollback_option):
        assert _squeezed(esc(value)) in shown
    assert "<@U0SEC059>" in shown and "*Deferredsteps*" in shown and "rootcause" in shown
    assert "theCardgoeson" not in shown and "…" not in shown.replace("…(thewholetext", "").replace("text…`", "")


def bridge_card_parts(kind: str):
    return Emergency(release_id=7, incident=fill(kind, _LIMITS["incident"]), opened_at=NOW, opened_by="U0DEV",
                     bridge_key="k", blast_radius=fill(kind, 2000), rollback_option=fill(kind, 2000)), largest(kind)


def test_a_long_audit_trail_says_where_the_rest_is():
    messages = render.record_messages(record("ampersands"))
    assert len(messages) == render.RECORD_MESSAGES and all(len(m) <= BLOCK_LIMIT for m in messages)
    # the note points to the evidence packet (and the CLI), and the Evidence button that sends it ends the record
    assert "/release evidence REL-7" in json.dumps(messages[-1][-2]) and "releasebot audit REL-7" in \
        json.dumps(messages[-1][-2])
    assert messages[-1][-1]["elements"][0]["action_id"] == "evidence_packet"
    assert len(render.record_messages(ReleaseRecord(release=largest("words"), status=status("words"), votes=[],
                                                    trail=[]))) == 1


def test_split_keeps_everything_and_never_cuts_a_token_or_an_entity():
    text = esc((f"x & <y> {when(NOW, 'Europe/London')} <!channel> ok " * 200) + "&" * 5000)
    for limit in (200, 777, TEXT_LIMIT):
        pieces = split(text, limit)
        assert all(len(p) <= limit and not _broken(p) for p in pieces)
        assert _squeezed("".join(pieces)) == _squeezed(text)


def _button_values(blocks: list[dict]) -> list[str]:
    return [el["value"] for b in blocks if b["type"] == "actions" for el in b["elements"]
            if el["action_id"] == MORE_ACTION]


def test_the_blackout_list_pages_with_more_so_every_id_can_be_found():
    rows = blackouts("words", 25)
    seen, offset, pages = [], 0, 0
    while offset is not None:
        blocks = calendar.blackout_list(rows, {}, offset)
        pages += 1
        shown = json.dumps(blocks)
        seen += [b.id for b, _ in rows if f'*{b.id}* ' in shown]
        [offset] = [parse_more(v)[2] for v in _button_values(blocks)] or [None]
    assert pages == 3 and seen == list(range(1, 26))


def test_a_short_list_has_no_more_button():
    assert _button_values(calendar.blackout_list(blackouts("words", 10), {})) == []
    assert _button_values(render.list_message([largest("words")], None)) == []


@pytest.mark.parametrize("value", ["", "releases", "releases:mine:x", "other:all:1", "blackouts:all:9999999", 7])
def test_a_more_value_the_bot_did_not_make_is_nothing(value):
    assert parse_more(value) is None
