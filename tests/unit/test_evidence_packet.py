"""The evidence packet (commands.evidence, bot.evidence_render): a release that went through request,
approval, deployment, sign-off, follow-up and retrospective answers all six ISO questions; overrides,
waivers, misclassifications and non-conformances show as exceptions; old votes say honestly that role
holders were not recorded; every format escapes what people typed."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from sqlmodel import Session, select

from bot import evidence_render
from bot.times import iso_times
from commands import evidence, nonconformance
from commands.aftercare import record_task, sign_off
from commands.deploy import CHECKLIST, Deployer, finish_deployment, start_deployment
from commands.release import accept_misclassification, override_flags
from commands.outcome import Actor
from commands.validation import Recorder, record_result
from commands.vote import cast_vote
from conftest import actor
from storage.db import transaction
from storage.models import Deployment, Incident, Vote, Waiver
from unit_support import REQUESTER, new_release, ready_to_deploy

UTC = timezone.utc
WINDOW = dict(start="2026-12-09 10:00", tz="UTC", duration="60m")
IN_WINDOW = datetime(2026, 12, 9, 10, 5, tzinfo=UTC)
FINISHED = datetime(2026, 12, 9, 10, 30, tzinfo=UTC)
ALL_CHECKED = {key: True for key, _ in CHECKLIST}
DEPLOYER = "U0DEPL"
PIPELINE_DEPLOYER = Deployer(DEPLOYER, frozenset({"platform_lead"}), pipeline="deploy")
ARTIFACT = "payments:5.0.0"
MAJOR_VOTERS = ("U0CAB1", "U0CAB2", "U0RM", "U0SEC")
TITLES = [t for _, t in evidence.SECTIONS]


def members_of(group):
    return {"S0QALEADS": ["U0QAGROUP"]}.get(group)


def add(db, *rows):
    with transaction(db) as s:
        for r in rows:
            s.add(r)


def deployed(db, clock, policy, **fields) -> int:
    """A major release: requested with its package, approved by four, started through the pipeline."""
    rid = new_release(db, clock, policy, type="major", links="https://git.example/pr/7", risk="schema migration",
                      rollback="redeploy 4.0.9", **{"version": "5.0.0", **WINDOW, **fields})
    # the release package the gate asks for: every required phase passed for the artefact, the documents
    ready_to_deploy(db, clock, rid, policy, artifact=ARTIFACT)
    assert record_result(db, Recorder(Actor("pipeline:ci"), pipeline="ci"), rid, "integration", "passed",
                         "https://ci.example/run/1", None, ARTIFACT, clock, policy).changed  # the latest run
    for user in MAJOR_VOTERS:
        assert cast_vote(db, actor(user), rid, "go", clock, policy=policy, members_of=members_of).changed
    clock.set(IN_WINDOW)
    # through the pipeline: a start by hand in production is a non-conformance, not the normal path
    assert start_deployment(db, PIPELINE_DEPLOYER, rid, ALL_CHECKED, clock, policy, artifact=ARTIFACT,
                            commit="abc1234").changed
    return rid


def through_retrospective(db, clock, policy, **fields) -> int:
    """A major release: requested, approved by four, deployed, signed off, followed up, retrospected, closed."""
    rid = deployed(db, clock, policy, **fields)
    clock.set(FINISHED)
    assert finish_deployment(db, PIPELINE_DEPLOYER, rid, "success", clock, policy).changed
    clock.advance(hours=24)  # past a major release's stabilisation
    assert sign_off(db, actor("U0QA"), rid, clock, policy).changed
    assert sign_off(db, actor("U0OPS"), rid, clock, policy).changed
    assert record_task(db, actor(DEPLOYER), rid, "followup", {"evidence": "error rate flat", "actions": "none"},
                       clock, policy).changed
    assert record_task(db, actor(REQUESTER), rid, "retrospective", {"notes": "went fine", "actions": "automate X"},
                       clock, policy).changed
    assert sign_off(db, actor("U0RM"), rid, clock, policy).changed
    return rid


def items(p, key):
    return {i.label: i for i in next(s for s in p.sections if s.key == key).items}


def test_a_release_through_its_whole_life_answers_every_question(db, clock, policy):
    rid = through_retrospective(db, clock, policy)
    p = evidence.packet(db, rid, clock.now())
    assert [s.title for s in p.sections] == TITLES and p.schema_version == evidence.SCHEMA_VERSION

    auth = items(p, "authorisation")
    assert auth["Requested by"].text.startswith(REQUESTER)
    for user in MAJOR_VOTERS:
        assert auth[f"Vote of {user}"].mark == "present" and " go as " in auth[f"Vote of {user}"].text
    assert auth["Who held cab then"].text == "U0CAB1, U0CAB2, U0CAB3"  # the role's holders, not only the voter
    assert auth["Approval time"].mark == "present"
    assert auth["Policy in force (sha256 of the effective policy)"].text == policy.digest
    change = items(p, "change")
    assert change["Artefact"].text == ARTIFACT and change["Commit"].text == "abc1234"
    assert change["Links"].mark == "present" and change["Release notes"].mark == "present"
    risk = items(p, "risk")
    assert risk["Classification answers"].mark == "present" and "Breaking API" in risk["Classification answers"].text
    assert risk["Risk and impact"].text == "schema migration" and risk["Rollback plan"].text == "redeploy 4.0.9"
    assert risk["Planning checks"].mark == "present"
    val = items(p, "validation")
    assert all(val[f"Checklist: {t}"].mark == "present" for _, t in CHECKLIST)
    assert val["Test evidence: integration"].mark == "present" and "https://ci.example/run/1" in \
        val["Test evidence: integration"].text
    assert {k for k in val if k.startswith("Sign-off")} == {"Sign-off: qa_lead", "Sign-off: operations",
                                                            "Sign-off: release_manager"}
    dep = items(p, "deployment")
    # times are when() markers in the data, ISO 8601 UTC once rendered
    assert dep["Deployer"].text == DEPLOYER and iso_times(dep["Started"].text) == "2026-12-09T10:05:00Z"
    assert iso_times(dep["Finished"].text) == "2026-12-09T10:30:00Z" and dep["Outcome"].text == "success"
    after = items(p, "after")
    assert after["24-hour follow-up"].mark == "present" and "error rate flat" in after["24-hour follow-up"].text
    assert after["Retrospective"].mark == "present" and "automate X" in after["Retrospective"].text
    assert after["Stabilisation"].mark == "present" and after["Incidents"].mark == "present"
    assert p.counts["exception"] == 0
    # the trail: every event of the release, in order, ending with the closing sign-off
    assert [e.action for e in p.trail][0] == "requested" and len(p.trail) >= 12
    # the trail is the hash chain's: each event with its place and hash, and the chain verified
    assert all(e.seq is not None and e.hash for e in p.trail)
    assert p.chain.available and p.chain.ok and p.chain.text.startswith(f"verified: {p.chain.count} events")


def test_a_tampered_log_shows_in_the_packet_as_a_broken_chain(db, clock, policy):
    from sqlalchemy import text
    from storage import audit_triggers
    rid = through_retrospective(db, clock, policy)
    pg = db.dialect.name == "postgresql"
    with db.begin() as conn:  # the database owner, walking around the append-only triggers (and tidying up)
        for statement in audit_triggers.drop(pg):
            conn.exec_driver_sql(statement)
        conn.execute(text("UPDATE audit_event SET reason = 'nothing to see' WHERE seq = 3"))
        for statement in audit_triggers.create(pg):
            conn.exec_driver_sql(statement)
    p = evidence.packet(db, rid, clock.now())
    assert p.chain.available and p.chain.ok is False
    assert p.chain.text.startswith("BROKEN at seq 3") and "changed" in p.chain.text


def test_an_override_a_waiver_a_misclassification_and_a_non_conformance_are_exceptions(db, clock, policy):
    # requested as minor though the answers derive major; inside the lead time: a flag to override
    from commands.classification import Answers
    rid = new_release(db, clock, policy, type="minor", answers=Answers(breaking=True), start="2026-11-24 10:00",
                      tz="UTC", duration="60m")
    assert accept_misclassification(db, actor("U0RM"), rid, "the break is internal only", clock, policy).changed
    assert override_flags(db, actor("U0RM"), rid, "lead_time", "customer deadline", clock, policy).changed
    add(db, Waiver(release_id=rid, item="phase:performance", reason="no load change", by="U0RM", at=clock.now()))
    incident = Incident(key="INC-9", service="payments", opened_at=clock.now(), severity="sev2",
                        caused_by_release_id=rid, reported_by="pipeline:pd", recorded_at=clock.now(),
                        updated_at=clock.now())
    add(db, incident)
    with transaction(db) as s:
        from commands.release import load
        nonconformance.record(s, load(s, rid), kind="late_followup", subject=f"REL-{rid}", detail="follow-up late",
                              actor="releasebot", now=clock.now(), policy=policy)
    p = evidence.packet(db, rid, clock.now())
    auth, risk, val, after = (items(p, k) for k in ("authorisation", "risk", "validation", "after"))
    assert auth["Override of the lead_time check"].mark == "exception"
    assert auth["Override of the lead_time check"].exception == "override"
    assert "customer deadline" in auth["Override of the lead_time check"].text
    assert auth["Misclassification accepted"].exception == "misclassification"
    assert risk["Planning check: lead_time"].mark == "exception"
    assert val["Waiver: phase:performance"].exception == "waiver"
    nc = next(i for label, i in after.items() if label.startswith("Non-conformance NC-"))
    assert nc.mark == "exception" and nc.exception == "nonconformance" and "follow-up late" in nc.text
    assert after["Incident INC-9"].mark == "present"
    assert items(p, "deployment")["Deployment"].mark == "missing"  # never deployed, and says so
    assert p.counts["exception"] >= 5


def test_the_package_is_judged_against_what_the_type_requires(db, clock, policy):
    from commands.validation import required_phases, waive
    from unit_support import release
    rid2 = new_release(db, clock, policy, start="2026-12-16 10:00", tz="UTC", duration="60m", version="2.3.2")
    rid = through_retrospective(db, clock, policy)
    p = evidence.packet(db, rid, clock.now(), policy)
    val = items(p, "validation")
    for phase in required_phases(policy, release(db, rid)):
        assert val[f"Test evidence: {phase}"].mark == "present", phase
        assert val[f"Test evidence: {phase}"].text.startswith("required for a major release (QMS 4.3); passed")
    assert "required" not in val["Test evidence: integration"].text  # on the record, not asked for by major
    assert items(p, "change")["Release notes"].mark == items(p, "deployment")["Runbook"].mark == "present"
    assert items(p, "risk")["Rollback plan"].text == "redeploy 4.0.9"

    # a minor release with little recorded: what the gate asks for is missing, what it does not ask for is not
    assert record_result(db, Recorder(Actor("pipeline:ci"), pipeline="ci"), rid2, "security", "failed",
                         "https://ci.example/run/2", None, "payments:2.3.2", clock, policy).changed
    assert waive(db, actor("U0RM"), rid2, "document:runbook", "runbook unchanged since 2.3.1", clock, policy).changed
    p2 = evidence.packet(db, rid2, clock.now(), policy)
    val2, change2, risk2 = items(p2, "validation"), items(p2, "change"), items(p2, "risk")
    assert val2["Test evidence: performance"].mark == "missing"
    assert val2["Test evidence: performance"].text == ("required for a minor release (QMS 4.3); no passing result "
                                                       "recorded")
    assert val2["Test evidence: security"].mark == "missing" and "the latest result failed" in \
        val2["Test evidence: security"].text and "https://ci.example/run/2" in val2["Test evidence: security"].text
    assert change2["Release notes"].mark == "missing"
    assert "required for a minor release" in change2["Release notes"].text
    assert risk2["Rollback plan"].mark == "present"
    assert "not required for a minor release" in risk2["Rollback plan"].text
    runbook = items(p2, "deployment")["Runbook"]
    assert runbook.mark == "exception" and runbook.exception == "waiver" and "runbook unchanged" in runbook.text
    # the waiver is the runbook's own item, counted once: not repeated among the test evidence
    assert "the gate opened" in runbook.text and "Waiver: document:runbook" not in val2
    assert [i.exception for s in p2.sections for i in s.items if "runbook" in i.text] == ["waiver"]
    # without the policy nothing is taken as not required: a gap can be over-reported, never hidden
    assert items(evidence.packet(db, rid2, clock.now()), "risk")["Rollback plan"].mark == "missing"


def test_a_rollback_shows_when_it_was_decided_and_when_service_was_restored(db, clock, policy):
    from commands.rollback import RollbackTimes
    rid = deployed(db, clock, policy)
    clock.set(FINISHED)
    times = RollbackTimes(IN_WINDOW + timedelta(minutes=5), IN_WINDOW + timedelta(minutes=12))
    assert finish_deployment(db, PIPELINE_DEPLOYER, rid, "rolled_back", clock, policy, times=times).changed
    dep = items(evidence.packet(db, rid, clock.now(), policy), "deployment")
    assert dep["Outcome"].text.startswith("rolled_back") and dep["Rollback timings"].mark == "present"
    assert iso_times(dep["Rollback timings"].text) == (
        f"decided by {DEPLOYER} at 2026-12-09T10:10:00Z, restored at 2026-12-09T10:17:00Z; 7 min from decision "
        "to restored")


def test_a_non_conformance_shows_its_register_state(db, clock, policy):
    from commands import nonconformance_register
    from storage.models import NonConformance
    rid = deployed(db, clock, policy)
    with transaction(db) as s:
        from commands.release import load
        nonconformance.record(s, load(s, rid), kind="late_followup", subject=f"REL-{rid}", detail="follow-up late",
                              actor="releasebot", now=clock.now(), policy=policy)
    with Session(db) as s:
        nc = s.exec(select(NonConformance).where(NonConformance.release_id == rid)).one()
        ref, nc_id = nc.ref, nc.id
    label = f"Non-conformance {ref} (late_followup)"
    item = items(evidence.packet(db, rid, clock.now(), policy), "after")[label]
    assert item.mark == "exception" and "register state open" in item.text and "corrective action due " in item.text
    assert nonconformance_register.plan(db, actor("U0RM"), nc_id, {"owner": "U0DEV", "action": "add a reminder"},
                                        clock).changed
    item = items(evidence.packet(db, rid, clock.now(), policy), "after")[label]
    assert "register state action_planned, owner U0DEV" in item.text
    assert "corrective action: add a reminder" in item.text


def test_a_vote_from_before_role_holders_were_recorded_says_so(db, clock, policy):
    rid = new_release(db, clock, policy, **WINDOW)
    assert cast_vote(db, actor("U0RM"), rid, "go", clock).changed  # no policy: as a vote cast before this version
    p = evidence.packet(db, rid, clock.now())
    auth = items(p, "authorisation")
    held = auth["Who held release_manager then"]
    assert held.mark == "missing" and held.text.startswith("not recorded (votes before ")
    assert auth["Policy in force (sha256 of the effective policy)"].mark == "missing"


def test_a_vote_records_its_role_holders_and_the_policy(db, clock, policy):
    rid = new_release(db, clock, policy, **WINDOW)
    assert cast_vote(db, actor("U0QAGROUP"), rid, "go", clock, policy=policy, members_of=members_of).changed
    with Session(db) as s:
        v = s.exec(select(Vote).where(Vote.release_id == rid)).one()
        assert v.role == "qa_lead" and v.role_holders == ["U0QA", "U0QAGROUP"] and v.policy_hash == policy.digest
    # a group Slack cannot list stays in the record as the group, not silently dropped
    rid2 = new_release(db, clock, policy, **WINDOW, version="2.3.2")
    assert cast_vote(db, actor("U0QA"), rid2, "go", clock, policy=policy, members_of=lambda g: None).changed
    with Session(db) as s:
        v = s.exec(select(Vote).where(Vote.release_id == rid2)).one()
        assert v.role_holders == ["U0QA", "S0QALEADS"]
    assert "S0QALEADS" in items(evidence.packet(db, rid2, clock.now()), "authorisation")["Who held qa_lead then"].text


def test_a_deployment_records_the_policy_in_force(db, clock, policy):
    rid = through_retrospective(db, clock, policy)
    with Session(db) as s:
        assert s.exec(select(Deployment).where(Deployment.release_id == rid)).one().policy_hash == policy.digest


HOSTILE = "<script>alert(1)</script> <!channel> | *bold* & [x](javascript:y)"


def test_every_format_escapes_what_people_typed(db, clock, policy):
    rid = through_retrospective(db, clock, policy, summary=HOSTILE)
    p = evidence.packet(db, rid, clock.now())
    html = evidence_render.render(p, "html")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<!channel>" not in html and "&lt;!channel&gt;" in html
    md = evidence_render.render(p, "md")
    assert "<script>" not in md and "<!channel>" not in md and "&lt;script&gt;" in md
    assert "\\| \\*bold\\*" in md  # a table cell cannot be broken out of
    data = json.loads(evidence_render.render(p, "json"))
    assert data["release"]["summary"] == HOSTILE  # JSON keeps the text exactly; its consumer escapes
    assert data["schema_version"] == evidence.SCHEMA_VERSION


def test_the_formats_carry_the_same_sections_and_the_trail(db, clock, policy):
    rid = through_retrospective(db, clock, policy)
    p = evidence.packet(db, rid, clock.now())
    html, md = evidence_render.render(p, "html"), evidence_render.render(p, "md")
    data = json.loads(evidence_render.render(p, "json"))
    for n, title in enumerate(TITLES, 1):
        assert f"<h2>{n}. {title}</h2>" in html and f"## {n}. {title}" in md
    assert [s["title"] for s in data["sections"]] == TITLES
    assert {i["mark"] for s in data["sections"] for i in s["items"]} <= set(evidence.MARKS)
    assert len(data["trail"]) == len(p.trail) and all("hash" in e and "seq" in e for e in data["trail"])
    assert "Chain verification:" in html and data["chain"]["text"] == p.chain.text
    assert "http://" not in html.replace("https://ci.example", "").replace("https://git.example", "")  # no assets
    assert "<link" not in html and "<script" not in html and "@page" in html


def test_a_policy_cannot_make_the_auditor_decide_anything():
    import pytest
    from commands.policy import Policy, PolicyError
    for spec, where in ((({"types": {"minor": {"approvers": {"auditor": 1}}}}), "types.minor.approvers.auditor"),
                        ({"types": {"emergency": {"approvers": [{"cab": 2}, {"auditor": 1}]}}},
                         "types.emergency.approvers[1].auditor"),
                        ({"deployment": {"deployers": ["auditor"]}}, "deployment.deployers"),
                        ({"deployment": {"signoff_roles": ["qa_lead", "auditor"]}}, "deployment.signoff_roles"),
                        ({"deployment": {"closing_role": "auditor"}}, "deployment.closing_role")):
        with pytest.raises(PolicyError) as err:
            Policy.from_mapping(spec, source="p.toml")
        assert where in str(err.value) and "read-only" in str(err.value)
    assert "auditor" in Policy.default().roles  # the role itself exists: it reads


def test_the_json_matches_its_documented_schema(db, clock, policy):
    """docs/evidence-schema.json names every field the JSON carries, and the JSON carries every field it
    requires (checked by hand: no JSON Schema library is locked)."""
    from pathlib import Path
    schema = json.loads((Path(__file__).resolve().parents[2] / "docs" / "evidence-schema.json").read_text())
    rid = through_retrospective(db, clock, policy)
    data = json.loads(evidence_render.render(evidence.packet(db, rid, clock.now()), "json"))
    props = schema["properties"]

    def same(obj, spec):  # every field documented and required, no field undocumented
        assert set(obj) == set(spec["required"]) == set(spec["properties"]), (sorted(obj), sorted(spec["required"]))
    assert set(data) == set(schema["required"]) and data["schema_version"] == props["schema_version"]["const"]
    same(data["release"], props["release"])
    section, item = props["sections"]["items"], props["sections"]["items"]["properties"]["items"]["items"]
    assert [s["key"] for s in data["sections"]] == section["properties"]["key"]["enum"]
    for s in data["sections"]:
        same(s, section)
        for i in s["items"]:
            same(i, item)
            assert i["mark"] in item["properties"]["mark"]["enum"]
            assert i["exception"] in item["properties"]["exception"]["enum"]
    for e in data["trail"]:
        same(e, props["trail"]["items"])
    same(data["chain"], props["chain"])


def test_an_emergency_shows_its_assessment_bridge_log_and_deferred_steps(db, clock, policy):
    from commands import decision_log
    from test_deferred_steps import deployed as emergency_deployed
    rid = emergency_deployed(db, clock, policy)
    assert decision_log.add_entry(db, actor("U0EL"), rid, "roll forward, not back", clock, source_key="k1").changed
    p = evidence.packet(db, rid, clock.now())
    risk, val, after = items(p, "risk"), items(p, "validation"), items(p, "after")
    assert risk["Blast radius"].mark == "present" and risk["Rollback option"].mark == "present"
    assert val["Automated CI checks passed"].mark == "present"
    assert val["Validation by on-call"].mark == "missing"  # not validated yet, and said so
    assert after["Bridge decision log"].mark == "present"
    deferred = {label: i for label, i in after.items() if label.startswith("Deferred step: ")}
    assert deferred and all(i.mark == "missing" and "not recorded (due " in i.text for i in deferred.values())
    assert after["Bridge closed"].mark == "missing"
    assert items(p, "change")["Incident"].mark == "present"
    html = evidence_render.render(p, "html")
    entry = next(i for label, i in after.items() if label.startswith("Bridge log entry "))
    assert "U0EL (command): roll forward, not back" in entry.text and "roll forward, not back" in html
    assert all(f"<h2>{n}. {t}</h2>" in html for n, t in enumerate(TITLES, 1))
