"""What pipelines report, over real HTTP (issue 11): POST /api/v1/deployments for deployments naming no approved
release, "tag": null, commit_time, and a rollback's two times, each §6.2 row recorded exactly once however often
the report is repeated, and bad input answered 400/404 with nothing written."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, select

from storage.models import NonConformance
from storage.quality_models import UnmatchedDeployment

from test_api import (ALL_CHECKED, IN_WINDOW, api, api_bot, approved, counts, deployments, events,  # noqa: F401
                      release, report, start)

UTC = timezone.utc
UNMATCHED = "/api/v1/deployments"
BODY = {"service": "payments", "environment": "production", "status": "succeeded", "artifact": "payments:9.9.9",
        "commit": "abc123", "actor": "U0OPS"}


def ncs(db) -> list[NonConformance]:
    with Session(db) as s:
        return list(s.exec(select(NonConformance).order_by(NonConformance.id)))


def unmatched(db) -> list[UnmatchedDeployment]:
    with Session(db) as s:
        return list(s.exec(select(UnmatchedDeployment)))


def channel_posts(bot) -> list[str]:
    return [c.args["text"] for c in bot.emulator.calls_to("chat.postMessage") if not c.args.get("thread_ts")]


# ---- POST /api/v1/deployments ----------------------------------------------------------------------------------

def test_a_production_deployment_naming_no_release_is_one_nonconformance_posted_once(api_bot, api, db, clock):
    clock.set(IN_WINDOW)
    first = api.post(UNMATCHED, json=BODY, headers={"Idempotency-Key": "build-77"})
    assert first.status_code == 201, first.text
    clock.advance(minutes=30)  # a retry long after: the key, not the body, says it is the same delivery
    again = api.post(UNMATCHED, json=BODY, headers={"Idempotency-Key": "build-77"})
    assert again.status_code == 200 and again.json()["unmatched"] == first.json()["unmatched"]
    [row] = unmatched(db)
    [nc] = ncs(db)
    assert first.json()["nonconformances"] == again.json()["nonconformances"] == [f"NC-{nc.id}"]
    assert (nc.kind, nc.release_id, nc.unmatched_id, nc.service) == ("deployment_without_approval", None, row.id,
                                                                     "payments")
    assert (row.pipeline, row.actor, row.environment) == ("pipeline:deploy-pipeline", "U0OPS", "production")
    api_bot.idle()
    posts = [t for t in channel_posts(api_bot) if "Non-conformance" in t]
    assert len(posts) == 1 and f"on NC-{nc.id}" in posts[0]


def test_without_a_key_the_same_body_within_10_minutes_is_the_same_delivery(api_bot, api, db, clock):
    clock.set(IN_WINDOW)
    assert api.post(UNMATCHED, json=BODY).status_code == 201
    clock.advance(minutes=9)
    assert api.post(UNMATCHED, json=BODY).status_code == 200
    assert len(unmatched(db)) == 1 and len(ncs(db)) == 1
    clock.advance(minutes=25)  # well past the window: another deployment of the same thing
    assert api.post(UNMATCHED, json=BODY).status_code == 201
    assert len(unmatched(db)) == 2 and len(ncs(db)) == 2


def test_an_untagged_build_naming_no_release_is_both_rows(api_bot, api, db, clock):
    r = api.post(UNMATCHED, json={**BODY, "tag": None})
    assert r.status_code == 201
    assert sorted(n.kind for n in ncs(db)) == ["deployment_without_approval", "untagged_build"]
    assert len(r.json()["nonconformances"]) == 2


def test_staging_is_kept_but_no_nonconformance(api_bot, api, db, clock):
    r = api.post(UNMATCHED, json={**BODY, "environment": "staging"})
    assert r.status_code == 201 and r.json()["nonconformances"] == []
    assert len(unmatched(db)) == 1 and ncs(db) == []


def test_an_approved_release_of_the_version_is_named_in_the_answer(api_bot, api, db, clock):
    approved(api_bot, db)  # payments 2.3.1
    r = api.post(UNMATCHED, json={**BODY, "artifact": "payments:2.3.1"})
    assert r.status_code == 201
    assert r.json()["matching_release"] == "REL-1"
    assert "/api/v1/releases/REL-1/deployments" in r.json()["message"]
    assert len(ncs(db)) == 1 and release(db).state == "approved"


@pytest.mark.parametrize("body, status, fragment", [
    ({**BODY, "colour": "blue"}, 400, "unknown field colour"),
    ({k: v for k, v in BODY.items() if k != "commit"}, 400, "commit is required"),
    ({**BODY, "status": "done"}, 400, "status must be one of"),
    ({**BODY, "environment": "prod"}, 400, "is not one of the policy's environments"),
    ({**BODY, "release": "REL-99"}, 404, "REL-99 does not exist"),
    ({**BODY, "release": "twelve"}, 400, "not a release id"),
    ({**BODY, "tag": ""}, 400, "tag must be"),
    ({**BODY, "commit_time": "2026-12-01 10:00"}, 400, "commit_time"),
    ({**BODY, "actor": "<!channel>"}, 400, "actor must be"),
])
def test_bad_input_is_answered_and_writes_nothing(api_bot, api, db, clock, body, status, fragment):
    before = counts(db)
    r = api.post(UNMATCHED, json=body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]
    assert counts(db) == before


def test_get_is_405(api_bot, api):
    r = api.get(UNMATCHED)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"


# ---- POST /api/v1/releases/REL-n/deployments -------------------------------------------------------------------

def test_tag_and_commit_time_are_kept_and_a_null_tag_is_one_nonconformance(api_bot, api, db, clock):
    approved(api_bot, db)
    r = start(api, clock, tag=None, commit_time="2026-12-14T17:30:00+01:00", artifact="payments:2.3.1")
    assert r.status_code == 201, r.text
    assert start(api, clock, tag=None).status_code == 200  # a retry
    clock.advance(minutes=10)
    assert report(api, "succeeded", tag=None).status_code == 200
    [dep] = deployments(db)
    assert dep.commit_time == datetime(2026, 12, 14, 16, 30, tzinfo=UTC) and dep.tag is None
    [nc] = ncs(db)
    assert (nc.kind, nc.release_id, nc.deployment_id) == ("untagged_build", 1, dep.id)


def test_a_tag_is_kept(api_bot, api, db, clock):
    approved(api_bot, db)
    assert start(api, clock, tag="v2.3.1").status_code == 201
    assert deployments(db)[0].tag == "v2.3.1" and ncs(db) == []


def test_a_success_never_started_through_the_gate_is_one_nonconformance(api_bot, api, db, clock):
    approved(api_bot, db)
    clock.set(IN_WINDOW)
    answers = [report(api, "succeeded") for _ in range(3)]
    assert {a.status_code for a in answers} == {409}
    assert len({a.json()["nonconformance"] for a in answers}) == 1
    [nc] = ncs(db)
    assert nc.subject == "REL-1:ungated" and len(events(db, "nonconformance")) == 1


@pytest.mark.parametrize("minutes, over", [(12, False), (20, True)])
def test_a_rolled_back_report_with_both_times(api_bot, api, db, clock, minutes, over):
    approved(api_bot, db)
    assert start(api, clock).status_code == 201
    decided = IN_WINDOW + timedelta(minutes=3)
    restored = decided + timedelta(minutes=minutes)
    clock.set(restored + timedelta(minutes=5))
    times = {"rollback_decided_at": decided.isoformat(), "restored_at": restored.isoformat().replace("+00:00", "Z")}
    for _ in range(2):
        assert report(api, "rolled_back", **times).status_code == 200
    [dep] = deployments(db)
    assert (dep.rollback_decided_at, dep.restored_at) == (decided, restored)
    assert [n.kind for n in ncs(db)] == (["rollback_slo_exceeded"] if over else [])


@pytest.mark.parametrize("extra, fragment", [
    ({"restored_at": "2026-12-15T10:06:00"}, "has no offset"),
    ({"rollback_decided_at": "2026-12-15T10:20:00Z", "restored_at": "2026-12-15T10:10:00Z"},
     "before the rollback was decided"),
    ({"restored_at": "2026-12-15T12:00:00Z"}, "is in the future"),
    ({"rollback_decided_at": "soon"}, "rollback_decided_at"),
])
def test_rollback_times_that_cannot_be_true_are_400_and_write_nothing(api_bot, api, db, clock, extra, fragment):
    approved(api_bot, db)
    assert start(api, clock).status_code == 201
    clock.set(IN_WINDOW + timedelta(minutes=20))
    before = counts(db)
    r = report(api, "rolled_back", **extra)
    assert r.status_code == 400 and fragment in r.json()["error"]
    assert counts(db) == before and release(db).state == "deploying"


def test_rollback_times_on_another_status_are_400(api_bot, api, db, clock):
    approved(api_bot, db)
    assert start(api, clock).status_code == 201
    r = report(api, "succeeded", restored_at="2026-12-15T10:06:00Z")
    assert r.status_code == 400 and "belong to a rolled_back report" in r.json()["error"]


def test_unknown_fields_are_still_400(api_bot, api, db, clock):
    approved(api_bot, db)
    before = counts(db)
    r = start(api, clock, tagged=True)
    assert r.status_code == 400 and "unknown field tagged" in r.json()["error"]
    assert counts(db) == before
