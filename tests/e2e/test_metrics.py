"""Metrics end to end: `/release metrics` answers with the figures and uploads the chart; the weekly review
is posted once across a restart; the monthly report is frozen, so an incident linked later through the
incidents API changes the live figures but not the snapshot `releasebot metrics --snapshot` reprints."""
from __future__ import annotations

import argparse
import io
import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from sqlmodel import Session, select

from bot import metrics_cadence
from bot.cli_metrics import run as cli_run
from commands.metrics import compute
from commands.metrics_review import frozen
from conftest import CHANNEL, serving, start_bot
from metrics_history import deployed
from slack_emulator import dm_of
from storage.models import AuditEvent, MetricSnapshot, Outbox

UTC = timezone.utc
TOKEN = "inc-0123456789abcdef0123"
TOKENS = f"incident-tool={TOKEN}"
PNG = b"\x89PNG\r\n\x1a\n"


def november(db, failures: int = 0) -> list[int]:
    """Six successful deployments of payments in November's last weeks; the first `failures` of them failed."""
    return [deployed(db, started=datetime(2026, 11, 16 + 2 * i, 10, tzinfo=UTC),
                     outcome="failed" if i < failures else "success") for i in range(6)]


def stop(running) -> None:
    for _ in serving(running):  # serving() yields the bot once, then stops it
        pass


def cli(db, policy, clock, **kw) -> str:
    args = argparse.Namespace(start=None, end=None, period=None, service=None, format="text", explain=False,
                              snapshot=None)
    for k, v in kw.items():
        setattr(args, k, v)
    out = io.StringIO()
    assert cli_run(db, policy, args, clock.now(), out) == 0
    return out.getvalue()


def test_release_metrics_answers_with_the_figures_and_uploads_the_chart(bot, db, clock):
    november(db, failures=1)
    clock.set(datetime(2026, 12, 1, 12, tzinfo=UTC))
    bot.command("metrics 2026-11 payments", user="U0RM")
    said = bot.emulator.said_to("U0RM")
    assert said and "Release metrics, 2026-11" in said[-1]
    shared = bot.emulator.uploaded(dm_of("U0RM"))
    assert len(shared) == 1 and shared[0]["data"].startswith(PNG)
    assert shared[0]["filename"].endswith(".png")
    # the figures and their samples are in the blocks the person saw
    answer = [c for c in bot.emulator.calls if c.method == "response_url"][-1].args
    text = json.dumps(answer.get("blocks"))
    assert "Change failure rate" in text and "16.7% (1 of 6)" in text and "target < 10%" in text


def test_release_metrics_with_a_bad_period_says_the_right_form_and_uploads_nothing(bot, db, clock):
    bot.command("metrics 2026-13 payments", user="U0RM")
    assert "is not a period" in bot.emulator.said_to("U0RM")[-1]
    assert bot.emulator.uploaded() == []


def test_the_weekly_review_is_posted_once_across_a_restart(db, clock, policy, emulator):
    november(db)
    clock.set(datetime(2026, 11, 30, 8, 59, tzinfo=UTC))  # Monday, a minute before the review time
    first = start_bot(db, clock, policy, emulator)
    try:
        assert metrics_cadence.tick(first.svc) == []  # nothing due yet (November's report is due 1 December)
        clock.advance(minutes=2)
        assert metrics_cadence.tick(first.svc) == ["metrics-weekly:2026-W48"]
        assert metrics_cadence.tick(first.svc) == []
    finally:
        stop(first)
    clock.advance(minutes=30)
    again = start_bot(db, clock, policy, emulator)  # a restart: a new process on the same database
    try:
        assert metrics_cadence.tick(again.svc) == []
        again.deliver()
    finally:
        stop(again)
    posts = emulator.uploaded(CHANNEL)
    assert len(posts) == 1 and posts[0]["data"].startswith(PNG)
    assert "Weekly metrics review, 2026-W48" in posts[0]["initial_comment"]
    assert "Deployment frequency" in posts[0]["initial_comment"]
    with Session(db) as s:
        assert len(s.exec(select(MetricSnapshot).where(MetricSnapshot.kind == "weekly")).all()) == 1
        assert len(s.exec(select(Outbox).where(Outbox.key.like("metrics-weekly:%"))).all()) == 1


@pytest.fixture
def incident_bot(db, clock, policy, emulator):
    yield from serving(start_bot(db, clock, policy, emulator, env_overrides={"RELEASEBOT_API_TOKENS": TOKENS}))


def post(bot, body, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{bot.url}/api/v1/incidents", json=body, headers=headers, timeout=10)


INCIDENT = {"id": "INC-7", "service": "payments", "opened_at": "2026-11-16T10:40:00Z",
            "resolved_at": "2026-11-16T11:10:00Z", "severity": "P2", "caused_by": None}


def test_the_monthly_report_is_frozen_when_an_incident_is_linked_later(incident_bot, db, clock, policy):
    ids = november(db)
    clock.set(datetime(2026, 12, 1, 9, 1, tzinfo=UTC))  # Tuesday 1 December, the first working day
    assert "metrics-monthly:2026-11" in metrics_cadence.tick(incident_bot.svc)
    report = [f for f in incident_bot.emulator.uploaded(CHANNEL) if "Monthly KPI report" in f["initial_comment"]]
    assert len(report) == 1 and "0% (0 of 6)" in report[0]["initial_comment"]
    printed = cli(db, policy, clock, snapshot="2026-11")
    stored, row = frozen(db, "2026-11")
    digest = row.digest

    clock.advance(hours=3)
    r = post(incident_bot, {**INCIDENT, "caused_by": f"REL-{ids[0]}"})
    assert r.status_code == 201, r.text
    live = compute(db, stored.start, stored.end, policy=policy).figure("change_failure_rate")
    assert live.text == "16.7% (1 of 6)"  # the record changed ...
    assert cli(db, policy, clock, snapshot="2026-11") == printed  # ... the report did not
    assert frozen(db, "2026-11")[1].digest == digest
    assert frozen(db, "2026-11")[0].figure("change_failure_rate").text == "0% (0 of 6)"
    with Session(db) as s:
        snap = s.exec(select(AuditEvent).where(AuditEvent.action == "metrics_snapshot")).all()
        assert {e.after["period"] for e in snap} == {"2026-11", "2026-W48"}
        assert next(e for e in snap if e.after["period"] == "2026-11").after["digest"] == digest
    assert metrics_cadence.tick(incident_bot.svc) == []  # and it is not posted again


def test_an_incident_re_posted_with_another_cause_is_relinked_and_audited(incident_bot, db, clock):
    ids = november(db)
    assert post(incident_bot, {**INCIDENT, "caused_by": f"REL-{ids[0]}"}).status_code == 201
    again = post(incident_bot, {**INCIDENT, "caused_by": f"REL-{ids[0]}"})
    assert again.status_code == 200 and again.json()["changed"] is False
    moved = post(incident_bot, {**INCIDENT, "caused_by": f"REL-{ids[1]}"})
    assert moved.status_code == 200 and moved.json()["incident"]["caused_by"] == f"REL-{ids[1]}"
    with Session(db) as s:
        events = s.exec(select(AuditEvent).where(AuditEvent.action.like("incident_%")).order_by(AuditEvent.id)).all()
    assert [(e.action, e.release_id) for e in events] == [
        ("incident_recorded", ids[0]), ("incident_relinked", ids[1]), ("incident_relinked", ids[0])]
    assert events[1].actor == "pipeline:incident-tool"


@pytest.mark.parametrize("body, status, says", [
    ({**INCIDENT, "priority": "high"}, 400, "unknown field priority"),
    ({k: v for k, v in INCIDENT.items() if k != "opened_at"}, 400, "opened_at is required"),
    ({**INCIDENT, "opened_at": "yesterday"}, 400, "opened_at must be an ISO 8601 time"),
    ({**INCIDENT, "opened_at": "2026-11-16T10:40:00"}, 400, "with its zone"),
    ({**INCIDENT, "resolved_at": "2026-11-16T09:00:00Z"}, 400, "resolved_at is before opened_at"),
    ({**INCIDENT, "caused_by": "RELEASE-1"}, 400, "is not a release id"),
    ({**INCIDENT, "caused_by": "REL-999"}, 404, "REL-999 does not exist"),
    ({**INCIDENT, "caused_by": 3}, 400, "caused_by is a release id"),
    ({**INCIDENT, "service": "pay ments"}, 400, "service is required"),
    ({**INCIDENT, "id": ""}, 400, "id is required"),
    ({**INCIDENT, "service": "search", "caused_by": "REL-1"}, 400, "is a release of payments, not search"),
])
def test_the_incidents_api_refuses_bad_input_and_writes_nothing(incident_bot, db, body, status, says):
    november(db)
    r = post(incident_bot, body)
    assert r.status_code == status and says in r.json()["error"], r.text
    with Session(db) as s:
        assert s.exec(select(AuditEvent).where(AuditEvent.action.like("incident_%"))).all() == []


def test_the_incidents_api_needs_a_token_and_post(incident_bot):
    assert post(incident_bot, INCIDENT, token=None).status_code == 401
    assert post(incident_bot, INCIDENT, token="wrong-token-000000000000").status_code == 401
    r = httpx.get(f"{incident_bot.url}/api/v1/incidents", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert r.status_code == 405


def test_no_review_is_made_of_a_period_before_the_record_began(db, clock, policy):
    from bot.messages.metrics import review_text
    from commands import metrics_review
    now = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)  # both reviews are due
    assert metrics_review.tick(db, now, policy, CHANNEL, review_text) == []  # a new, empty database
    today = datetime(2026, 12, 1, 9, 10, tzinfo=UTC)
    deployed(db, started=today, requested=today - timedelta(minutes=5))  # the record begins after both periods
    assert metrics_review.tick(db, now, policy, CHANNEL, review_text) == []
    deployed(db, started=datetime(2026, 11, 27, 10, tzinfo=UTC))
    assert metrics_review.tick(db, now, policy, CHANNEL, review_text) == [
        "metrics-weekly:2026-W48", "metrics-monthly:2026-11"]
