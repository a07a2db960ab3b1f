"""Every message the bot renders, fed hostile user and calendar text: neither the notification `text` nor any
block may carry a <!channel>, a mention or a link from the input. Mentions the bot makes itself still work."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from calendars.recurrence import Occurrence
from commands.agenda import Item
from commands.approval import ApprovalStatus, CastVote, RoleStatus
from commands.policy import Policy
from commands.record import ReleaseRecord
from commands.reminders import Notice
from storage.models import AuditEvent, Blackout, Deployment, NonConformance, Release, ReleaseFlag, Vote

from bot.messages import aftercare, calendar, modal, validation
from bot.messages import release as render

UTC = timezone.utc
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
EVIL = "<!channel> <@U0VP> <http://evil.example|click here> <!here> <!subteam^S0EVIL> <!date^1^x|y>"
FORBIDDEN = ("<!channel>", "<!here>", "<@U0VP>", "<http://evil", "<!subteam^S0EVIL>", "<!date^1^x")
ROLES = {"release_manager": ["U0RM"], "qa_lead": ["U0QA", "S0QALEADS"]}


def hostile_release(state: str = "pending") -> Release:
    return Release(id=7, service=EVIL, version=EVIL, environment=EVIL, requested_type="minor", derived_type="major",
                   effective_type="major", misclassified=True, misclassification_accepted_by="U0RM",
                   misclassification_reason=EVIL, start_at=NOW + timedelta(days=3),
                   end_at=NOW + timedelta(days=3, hours=1), tz=EVIL, duration_minutes=60, summary=EVIL, risk=EVIL,
                   rollback_plan=EVIL, links=EVIL, requester_id=EVIL, state=state, round=2, cancel_reason=EVIL,
                   created_at=NOW, updated_at=NOW)


def hostile_deployment() -> Deployment:
    return Deployment(release_id=7, deployer_id="U0PL", pipeline=EVIL, artifact=EVIL, commit=EVIL, started_at=NOW,
                      finished_at=NOW, outcome=EVIL, note=EVIL, rollback_decided_at=NOW, rollback_decided_by=EVIL,
                      restored_at=NOW, stabilisation_ends_at=NOW)


def status() -> ApprovalStatus:
    return ApprovalStatus(roles=(RoleStatus("qa_lead", 1, ("U0QA",)),),
                          nogos=(CastVote("U0RM", "release_manager", "nogo", EVIL),))


def flags() -> list[ReleaseFlag]:
    return [ReleaseFlag(release_id=7, kind=EVIL, detail=EVIL, raised_at=NOW),
            ReleaseFlag(release_id=7, kind="blackout", detail=EVIL, raised_at=NOW, overridden_by="U0EXEC",
                        override_reason=EVIL, overridden_at=NOW)]


def _approval():
    return render.approval_message(hostile_release(), status(), hostile_deployment(),
                                   calendar.flags_block(flags(), [NOW]))


def _cancelled():
    return render.approval_message(hostile_release("cancelled"), status())


def _record():
    rec = ReleaseRecord(release=hostile_release(), status=status(),
                        votes=[Vote(release_id=7, round=1, voter_id="U0QA", role="qa_lead", decision="go", note=EVIL,
                                    decided_at=NOW)],
                        trail=[AuditEvent(actor=EVIL, action=EVIL, at=NOW, reason=EVIL)],
                        deployment=hostile_deployment(),
                        nonconformances=[NonConformance(kind=EVIL, detail=EVIL, reported_by=EVIL, at=NOW)],
                        flags=flags())
    return None, render.record_message(rec)


def _blackout_warning():
    return calendar.blackout_warning({"name": EVIL, "start": NOW, "end": NOW + timedelta(days=1),
                                      "releases": [("REL-7", EVIL, EVIL, EVIL, "approved", NOW)]})


def _agenda():
    items = [Item(NOW, NOW + timedelta(hours=1), "release", release=hostile_release()),
             Item(NOW, NOW + timedelta(hours=2), "blackout", name=EVIL, blackout_id=1)]
    return None, calendar.agenda(items, 14, EVIL, None)


def _blackout_list():
    b = Blackout(id=1, name=EVIL, start_local=NOW.replace(tzinfo=None), end_local=NOW.replace(tzinfo=None), tz=EVIL,
                 rrule=EVIL, services=[EVIL], environments=[EVIL], created_by="U0RM", created_at=NOW)
    return None, calendar.blackout_list([(b, [Occurrence(NOW, NOW + timedelta(hours=1))])], {1: EVIL})


def _reminder(what: str):
    def build():
        n = Notice(release=hostile_release(), what=what, users=("U0PL",), roles=("qa_lead",),
                   detail={"due_at": NOW, "window_end": NOW, "state": EVIL, "needed": ["qa_lead"],
                           "missing": {"qa_lead": 1}})
        return aftercare.reminder(n, Policy.from_mapping({"roles": ROLES}, source="t"))
    return build


def _thread_note(event: str):
    def build():
        return aftercare.thread_note(event, hostile_release(), {
            "deployer": EVIL, "by": EVIL, "reason": EVIL, "detail": EVIL, "name": EVIL, "other": EVIL,
            "details": [EVIL], "start": NOW.isoformat(), "end": NOW.isoformat(), "how": "moved"})
    return build


def _channel_note(event: str):
    return lambda: (calendar.channel_note({"event": event, "name": EVIL, "error": EVIL, "limit": 5, "days": 9}), None)


RENDERERS = {
    "approval_message": _approval,
    "approval_message cancelled": _cancelled,
    "record_message": _record,
    "list_message": lambda: (None, render.list_message([hostile_release()], "mine")),
    "error_text": lambda: (render.error_text(EVIL, EVIL), None),
    "blackout_warning": _blackout_warning,
    "agenda": _agenda,
    "blackout_list": _blackout_list,
    "checklist_modal": lambda: (None, aftercare.checklist_modal(hostile_release(), "C1")["blocks"]),
    "task_modal": lambda: (None, aftercare.task_modal("followup", hostile_release(), "C1")["blocks"]),
    "record_modal": lambda: (None, validation.record_modal(hostile_release(), "C1")["blocks"]),
    "nogo_modal": lambda: (None, modal.nogo_modal("REL-7", 7, "C1")["blocks"]),
    **{f"reminder {what}": _reminder(what) for what in aftercare._REMINDER_TEXT},
    **{f"thread_note {event}": _thread_note(event)
       for event in (*aftercare.THREAD_NOTES, *calendar.REPLAN_NOTES, "some_new_event")},
    **{f"channel_note {event}": _channel_note(event) for event in ("subscription_cut_short", "subscription_failed")},
}


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_no_renderer_echoes_a_mention_or_link_from_its_input(name):
    text, blocks = RENDERERS[name]()
    for where, value in (("text", text), ("blocks", json.dumps(blocks, ensure_ascii=False) if blocks else None)):
        if value is None:
            continue
        leaked = [f for f in FORBIDDEN if f in value]
        assert not leaked, f"{name}: {where} carries {leaked}: {value[:400]}"


def test_the_blackout_warning_text_is_escaped_but_readable():
    text, _ = _blackout_warning()
    assert text == ("Blackout &lt;!channel&gt; &lt;@U0VP&gt; &lt;http://evil.example|click here&gt; &lt;!here&gt; "
                    "&lt;!subteam^S0EVIL&gt; &lt;!date^1^x|y&gt; starts soon")


def test_the_bots_own_mentions_still_work_among_hostile_text():
    _, blocks = _reminder("signoff_request")()
    shown = json.dumps(blocks)
    assert "<@U0PL>" in shown and "<!subteam^S0QALEADS>" in shown and "<@U0QA>" in shown
    assert "<!date^" in json.dumps(_approval()[1])
    text, _ = _thread_note("cancelled")()
    assert text.startswith("REL-7 was cancelled: &lt;!channel&gt;")
