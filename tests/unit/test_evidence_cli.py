"""`releasebot evidence` and `releasebot audit`: read-only, the packet in each format, and the population,
against a seeded month where every deployment (and every one reported without an approved release) appears
exactly once."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, func, select

from bot import cli
from storage.db import transaction
from storage.models import AuditEvent, Deployment, NonConformance, Release, UnmatchedDeployment, Vote, Waiver
from test_evidence_packet import through_retrospective

UTC = timezone.utc


def run(monkeypatch, capsys, db_url, *args):
    monkeypatch.setenv("DATABASE_URL", db_url)
    capsys.readouterr()
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def events(db) -> int:
    with Session(db) as s:
        return s.exec(select(func.count()).select_from(AuditEvent)).one()


@pytest.mark.parametrize("fmt", ["html", "json", "md"])
def test_the_packet_in_each_format_to_a_file(db, db_url, clock, policy, monkeypatch, capsys, tmp_path, fmt):
    rid = through_retrospective(db, clock, policy)
    before = events(db)
    out = tmp_path / f"packet.{fmt}"
    code, stdout, err = run(monkeypatch, capsys, db_url, "evidence", f"REL-{rid}", "--format", fmt, "-o", str(out))
    assert code == 0 and stdout == "" and f"wrote {out}" in err
    text = out.read_text()
    assert "What happened after" in text and "How it was validated" in text
    if fmt == "json":
        assert json.loads(text)["schema_version"] == "1.0"
    assert events(db) == before  # reading is not an event


def test_the_packet_defaults_to_html_on_standard_output(db, db_url, clock, policy, monkeypatch, capsys):
    rid = through_retrospective(db, clock, policy)
    code, out, _ = run(monkeypatch, capsys, db_url, "evidence", f"REL-{rid}")
    assert code == 0 and out.startswith("<!DOCTYPE html>")


def test_bad_evidence_arguments_are_answered(db, db_url, monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, db_url, "evidence", "REL-1", "--format", "csv")
    assert code == 2 and "html or json or md" in err
    code, _, err = run(monkeypatch, capsys, db_url, "evidence")
    assert code == 2 and "either a release" in err
    code, _, err = run(monkeypatch, capsys, db_url, "evidence", "--from", "2026-11-01", "--to", "yesterday")
    assert code == 1 and "dates like 2026-10-01" in err
    code, _, err = run(monkeypatch, capsys, db_url, "evidence", "REL-99")
    assert code == 1 and "REL-99" in err


def test_it_never_creates_or_migrates_a_database(monkeypatch, capsys, tmp_path):
    path = tmp_path / "none.db"
    code, _, err = run(monkeypatch, capsys, f"sqlite:///{path}", "evidence", "REL-1")
    assert code == 2 and "releasebot migrate" in err and not path.exists()
    code, _, err = run(monkeypatch, capsys, f"sqlite:///{path}", "audit", "REL-1")
    assert code == 2 and not path.exists()


def test_audit_reads_as_text_with_test_evidence_waivers_and_non_conformances(db, db_url, clock, policy,
                                                                             monkeypatch, capsys):
    from commands import nonconformance
    from commands.release import load
    rid = through_retrospective(db, clock, policy)
    with transaction(db) as s:
        s.add(Waiver(release_id=rid, item="phase:performance", reason="no load change", by="U0RM", at=clock.now()))
        nonconformance.record(s, load(s, rid), kind="late_followup", subject=f"REL-{rid}", detail="follow-up late",
                              actor="releasebot", now=clock.now(), policy=policy)
    code, out, _ = run(monkeypatch, capsys, db_url, "audit", f"REL-{rid}")
    assert code == 0 and not out.lstrip().startswith("{")
    assert "[PRESENT] Test evidence: integration: passed" in out
    assert "[EXCEPTION (waiver)] Waiver: phase:performance: by U0RM" in out
    assert "[EXCEPTION (nonconformance)] Non-conformance NC-" in out and "follow-up late" in out
    assert "Audit trail" in out and "deployment_started" in out
    code, out, _ = run(monkeypatch, capsys, db_url, "audit", f"REL-{rid}", "--format", "json")
    record = json.loads(out)
    # every result on the record, oldest first: the package's passes (tests/unit/unit_support.ready_to_deploy),
    # then the CI run the packet names for integration
    from commands.validation import required_phases
    from unit_support import release
    assert [t["phase"] for t in record["test_results"]] == [*required_phases(policy, release(db, rid)),
                                                            "integration"]
    assert [w["item"] for w in record["waivers"]] == ["phase:performance"]
    assert [n["kind"] for n in record["nonconformances"]] == ["late_followup"]


# ---- the population ----

NOV = datetime(2026, 11, 1, tzinfo=UTC)


def seed_month(db) -> dict:
    """November 2026: a production deployment every day (some approved, some not closed, one with a
    non-conformance), a few to staging, some just outside the month, and deployments reported without an
    approved release."""
    seeded = {"production": 0, "staging": 0, "unmatched_production": 0, "unmatched_staging": 0}
    with transaction(db) as s:
        def release(n, env, start):
            r = Release(service=f"svc{n % 4}", version=f"1.{n}.0", environment=env, requested_type="minor",
                        derived_type="minor", effective_type="minor", answers={"feature": True},
                        required_roles={"release_manager": 1, "qa_lead": 1}, start_at=start,
                        end_at=start + timedelta(hours=1), tz="UTC", duration_minutes=60, summary=f"change {n}",
                        requester_id="U0DEV", state="closed", created_at=start - timedelta(days=3),
                        updated_at=start)
            s.add(r)
            s.flush()
            s.add(Vote(release_id=r.id, round=1, voter_id="U0RM", role="release_manager", decision="go",
                       decided_at=start - timedelta(days=1)))
            s.add(AuditEvent(release_id=r.id, actor="U0QA", action="approved", at=start - timedelta(days=1),
                             before={}, after={}))
            d = Deployment(release_id=r.id, deployer_id="U0OPS", pipeline="deploy", checklist={}, started_at=start,
                           finished_at=start + timedelta(minutes=20), outcome="success")
            s.add(d)
            s.flush()
            return r, d
        n = 0
        for day in range(-2, 32):  # two days before November and a day after it
            start = NOV + timedelta(days=day, hours=10)
            n += 1
            r, d = release(n, "production", start)
            if NOV <= start < NOV + timedelta(days=30):
                seeded["production"] += 1
            if day % 7 == 3:
                n += 1
                release(n, "staging", start + timedelta(hours=2))
                seeded["staging"] += 1 if NOV <= start < NOV + timedelta(days=30) else 0
            if day == 5:
                s.add(NonConformance(release_id=r.id, deployment_id=d.id, kind="forced_deployment",
                                     subject=f"dep:{d.id}", detail="gate skipped", reported_by="releasebot", at=start))
        for i, (env, day) in enumerate([("production", 0), ("production", 29), ("staging", 10), ("production", 30)]):
            s.add(UnmatchedDeployment(external_id=f"gh:{i}", source="github", environment=env, status="success",
                                      service="svc9", tag=f"v9.{i}", actor="octocat", pipeline="gh-actions",
                                      reported_at=NOV + timedelta(days=day, hours=23, minutes=59), details={}))
            if day < 30:
                seeded[f"unmatched_{env}"] += 1
    return seeded


def test_the_population_of_a_month_lists_every_deployment_once(db, db_url, monkeypatch, capsys):
    seeded = seed_month(db)
    code, out, _ = run(monkeypatch, capsys, db_url, "evidence", "--from", "2026-11-01", "--to", "2026-11-30")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    deployments = [r for r in rows if r["kind"] == "deployment"]
    unmatched = [r for r in rows if r["kind"] == "unmatched"]
    assert len(deployments) == seeded["production"] + seeded["staging"] == 34
    assert len(unmatched) == seeded["unmatched_production"] + seeded["unmatched_staging"] == 3
    assert len({r["release"] for r in deployments}) == len(deployments)  # nothing doubled
    assert all(r["started_at"].startswith("2026-11-") for r in rows)
    first = deployments[0]
    assert first["approvers"] == "U0RM (release_manager)" and first["deployer"] == "U0OPS"
    assert first["pipeline"] == "deploy" and first["outcome"] == "success" and first["approved_at"]
    assert first["record_complete"] == "no" and "Release notes" in first["missing"]  # named, not just "no"
    # judged by the policy in force, as the packet and the gate are: a minor release needs no rollback plan
    assert "Rollback plan" not in first["missing"]
    assert [r["nonconformances"] for r in deployments if r["nonconformances"]] == ["NC-1"]
    assert all(r["record_complete"] == "no" and r["missing"] == "an approved release" for r in unmatched)


def test_the_population_for_one_environment_as_json(db, db_url, monkeypatch, capsys):
    seeded = seed_month(db)
    code, out, _ = run(monkeypatch, capsys, db_url, "evidence", "--from", "2026-11-01", "--to", "2026-11-30",
                       "--environment", "production", "--format", "json")
    body = json.loads(out)
    assert code == 0 and body["schema_version"] == "1.0" and body["environment"] == "production"
    assert body["count"] == len(body["rows"]) == seeded["production"] + seeded["unmatched_production"] == 32
    assert {r["environment"] for r in body["rows"]} == {"production"}


def test_a_csv_cell_cannot_become_a_formula(db, db_url, clock, policy, monkeypatch, capsys):
    with transaction(db) as s:
        s.add(UnmatchedDeployment(external_id="x", source="api", environment="production", status="success",
                                  actor="=HYPERLINK(\"http://evil\")", reported_at=NOV, details={}))
    code, out, _ = run(monkeypatch, capsys, db_url, "evidence", "--from", "2026-11-01", "--to", "2026-11-01")
    row = next(csv.DictReader(io.StringIO(out)))
    assert code == 0 and row["deployer"].startswith("'=")
