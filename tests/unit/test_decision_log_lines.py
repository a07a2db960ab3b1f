"""What the decision log says for each decision: the real audit actions commands/ records, in people's words."""
from __future__ import annotations

from datetime import datetime, timezone

from commands.decision_log import _PLAIN, describe
from storage.models import AuditEvent

AT = datetime(2026, 12, 15, 10, 0, tzinfo=timezone.utc)


def line(action, after=None, reason=None) -> str:
    return describe(AuditEvent(actor="U0PL", action=action, release_id=1, at=AT, after=after or {}, reason=reason))


def test_a_deferred_step_names_the_step_and_how_late_it_was():
    assert line("deferred_step_recorded", {"step": "change_request", "label": "formal change request",
                                           "late": True, "late_by_minutes": 1565}) == (
        "Deferred step recorded: formal change request, 1d 2h05m late")
    assert line("deferred_step_recorded", {"step": "docs", "label": "release notes and runbook", "late": False,
                                           "late_by_minutes": 0}) == (
        "Deferred step recorded: release notes and runbook, in time")


def test_the_deployment_outcomes_as_deploy_records_them_read_plainly():
    # commands/deploy.py records f"deployment_{outcome}" with outcome success | rolled_back | failed
    assert line("deployment_success", reason=None) == "Deployed successfully"
    assert line("deployment_rolled_back") == "Deployment rolled back"
    assert line("deployment_failed") == "Deployment failed"
    assert line("vote_go", {"vote": {"role": "cab", "voter": "U0CAB1"}}) == "Go as cab"
    assert line("emergency_validated", reason="incident resolved") == "Validated: incident resolved"


def test_no_plain_name_is_for_an_action_nobody_records():
    assert "deployment_finished" not in _PLAIN
    from pathlib import Path
    source = "\n".join(p.read_text() for p in (Path(__file__).resolve().parents[2] / "commands").glob("*.py") if p.name != "decision_log.py")
    recorded = {a for a in _PLAIN if f'"{a}"' in source}
    dynamic = {"vote_go", "vote_nogo", "deployment_success", "deployment_rolled_back", "deployment_failed"}
    assert set(_PLAIN) - recorded - dynamic == set()
