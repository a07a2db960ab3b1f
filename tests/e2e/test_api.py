"""The Pipeline API over real HTTP: bearer tokens, the gate, deployment reports, non-conformances.

Releases are made and approved through signed Slack commands; pipelines then
talk to /api/v1/ with httpx, and the database and the Slack emulator show
what was recorded and announced.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from bot.config import ApiToken, ConfigError, load_config
from bot.times import iso_times
from commands.deploy import Deployer, check_gate
from storage.models import AuditEvent, Deployment, NonConformance, Release

from conftest import CHANNEL, TABLES, actor as role_holder, start_bot, serving
from package_steps import ARTIFACT, COMMIT, ready

UTC = timezone.utc
DEPLOY_TOKEN = "dp-0123456789abcdef0123"
NIGHTLY_TOKEN = "nt-fedcba9876543210fedc"
TOKENS = f"deploy-pipeline={DEPLOY_TOKEN};act_for=people, nightly={NIGHTLY_TOKEN};act_for=people,"
# conftest's clock starts at 2026-11-23 09:00 UTC; the window, 10:00–11:00 UTC on 2026-12-15, is past any
# lead time, and the tests move the clock into it.
LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-15 10:00" tz=UTC duration=60m '
        'summary="Add refunds"')
IN_WINDOW = datetime(2026, 12, 15, 10, 5, tzinfo=UTC)
ALL_CHECKED = {"monitoring": True, "rollback": True, "oncall": True}
ALL_CHECKED_QUERY = {"monitoring": "1", "rollback": "1", "oncall": "1"}
PROVENANCE = {"artifact": ARTIFACT, "commit": COMMIT}  # what is deployed (QMS 4.4)
GATE, DEPLOYMENTS = "/api/v1/releases/REL-1/gate", "/api/v1/releases/REL-1/deployments"


@pytest.fixture
def api_bot(db, clock, policy, emulator):
    yield from serving(start_bot(db, clock, policy, emulator, env_overrides={"RELEASEBOT_API_TOKENS": TOKENS}))


def client(bot, token: str | None = DEPLOY_TOKEN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=bot.url, headers=headers, timeout=10)


@pytest.fixture
def api(api_bot):
    with client(api_bot) as c:
        yield c


def requested(bot):
    bot.command(LINE, user="U0DEV")


def approved(bot, db):
    requested(bot)
    bot.command("go REL-1", user="U0RM")
    bot.command("go REL-1", user="U0QA")
    assert release(db).state == "approved"
    ready(bot)


def release(db, rid=1) -> Release:
    with Session(db) as s:
        return s.get(Release, rid)


def deployments(db) -> list[Deployment]:
    with Session(db) as s:
        return list(s.exec(select(Deployment)))


def events(db, action: str | None = None) -> list[AuditEvent]:
    with Session(db) as s:
        query = select(AuditEvent).order_by(AuditEvent.id)
        if action:
            query = query.where(AuditEvent.action == action)
        return list(s.exec(query))


def counts(db) -> dict[str, int]:
    with db.connect() as conn:
        return {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one() for t in TABLES}


def thread_texts(bot) -> list[str]:
    return [c.args["text"] for c in bot.emulator.calls_to("chat.postMessage") if c.args.get("thread_ts")]


def report(api, status: str, actor: str = "U0OPS", **extra) -> httpx.Response:
    return api.post(DEPLOYMENTS, json={"status": status, "actor": actor, **extra})


def start(api, clock, actor: str = "U0OPS", **extra) -> httpx.Response:
    clock.set(IN_WINDOW)
    return report(api, "started", actor, checklist=ALL_CHECKED, **{"artifact": ARTIFACT, "commit": COMMIT, **extra})


# ---- authentication ------------------------------------------------------------

@pytest.mark.parametrize("authorization", [None, f"Bearer {DEPLOY_TOKEN}x", "Bearer not-a-token-at-all-really",
                                           f"Basic {DEPLOY_TOKEN}", "Bearer", DEPLOY_TOKEN])
def test_a_bad_or_missing_token_gets_401_and_writes_nothing(api_bot, db, clock, authorization):
    approved(api_bot, db)
    clock.set(IN_WINDOW)
    before, calls = counts(db), len(api_bot.emulator.calls)
    headers = {"Authorization": authorization} if authorization is not None else {}
    with httpx.Client(base_url=api_bot.url, headers=headers, timeout=10) as c:
        answers = [c.post(DEPLOYMENTS, json={"status": "started", "actor": "U0OPS", "checklist": ALL_CHECKED}),
                   c.post(DEPLOYMENTS, json={"status": "succeeded", "actor": "U0OPS"}),
                   c.get(GATE, params={"actor": "U0OPS", **ALL_CHECKED_QUERY}),
                   c.post("/api/v1/releases/REL-1/deployments", content=b"{not json"),
                   c.get("/api/v1/nowhere")]
    for r in answers:
        assert r.status_code == 401, r.text
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert r.headers["Content-Type"].startswith("application/json")
        assert set(r.json()) == {"error"} and "token" in r.json()["error"]
    assert counts(db) == before
    assert len(api_bot.emulator.calls) == calls  # not even a role or email lookup
    assert release(db).state == "approved" and deployments(db) == []


def test_without_configured_tokens_every_request_is_refused(bot, db, clock):
    approved(bot, db)
    clock.set(IN_WINDOW)
    before = counts(db)
    with client(bot) as c:
        r = c.post(DEPLOYMENTS, json={"status": "started", "actor": "U0OPS", "checklist": ALL_CHECKED})
    assert r.status_code == 401 and r.json() == {"error": "invalid API token"}
    assert counts(db) == before


# ---- the gate ---------------------------------------------------------------------

def test_gate_allows_a_deployer_in_the_window_with_the_checklist_confirmed(api_bot, api, db, clock):
    approved(api_bot, db)
    clock.set(IN_WINDOW)
    before = counts(db)
    r = api.get(GATE, params={"actor": "U0OPS", **ALL_CHECKED_QUERY, **PROVENANCE})
    assert r.status_code == 200
    assert r.json() == {"release": "REL-1", "actor": "U0OPS", "allowed": True, "reasons": []}
    assert counts(db) == before  # asking writes nothing


def test_gate_denies_with_every_reason_the_slack_gate_gives(api_bot, api, db, clock, policy):
    requested(api_bot)
    api_bot.command("go REL-1", user="U0RM")  # still pending: qa_lead has not voted
    r = api.get(GATE, params={"actor": "U0RM"})  # weeks before the window; nothing confirmed
    assert r.status_code == 200
    body = r.json()
    assert body["allowed"] is False
    reasons = body["reasons"]
    gate = check_gate(db, 1, Deployer.of(role_holder("U0RM"), "deploy-pipeline"), clock, {}, policy)
    assert reasons == [iso_times(r) for r in gate]  # Slack's very gate, its times as ISO 8601 UTC
    expected = ["REL-1 is pending, not approved", "outside the planned window", "voted Go as release_manager",
                "U0RM holds no deploying role (operations or platform_lead)", "test phase performance",
                "test phase security", "test phase regression", "the release notes", "the deployment runbook",
                "an artefact is required", "the commit the artefact was built from", "not confirmed: monitoring",
                "not confirmed: the rollback plan", "not confirmed: on-call"]
    assert len(reasons) == len(expected)
    for reason, fragment in zip(reasons, expected):
        assert fragment in reason


def test_gate_lists_only_the_unconfirmed_checklist_items(api_bot, api, db, clock):
    approved(api_bot, db)
    clock.set(IN_WINDOW)
    r = api.get(GATE, params={"actor": "U0OPS", "monitoring": "1", "rollback": "0", **PROVENANCE})
    assert r.json()["allowed"] is False
    assert [x for x in r.json()["reasons"]] == ["not confirmed: the rollback plan is ready and tested",
                                                "not confirmed: on-call is confirmed"]


def test_gate_refuses_an_approver_as_deployer(api_bot, api, db, clock):
    approved(api_bot, db)
    clock.set(IN_WINDOW)
    r = api.get(GATE, params={"actor": "U0QA", **ALL_CHECKED_QUERY, **PROVENANCE})
    assert r.json()["allowed"] is False
    voted, role = r.json()["reasons"]
    assert "U0QA voted Go as qa_lead" in voted and "QMS 3.4" in voted
    assert "U0QA holds no deploying role" in role


def test_gate_resolves_an_email_actor(api_bot, api, db, clock):
    approved(api_bot, db)
    clock.set(IN_WINDOW)
    r = api.get(GATE, params={"actor": "U0RM@Example.com", **ALL_CHECKED_QUERY})
    assert r.json()["actor"] == "U0RM" and r.json()["allowed"] is False  # the approver, found by email
    [lookup] = api_bot.emulator.calls_to("users.lookupByEmail")
    assert lookup.args["email"] == "U0RM@Example.com"


# ---- deployment reports ---------------------------------------------------------------

def test_started_records_the_deployment_with_the_pipeline_name(api_bot, api, db, clock):
    approved(api_bot, db)
    r = start(api, clock, artifact="payments:2.3.1", commit="abc123def", pipeline_url="https://ci.example.com/b/42")
    assert r.status_code == 201, r.text
    assert r.json()["release"] == "REL-1" and r.json()["state"] == "deploying"
    [dep] = deployments(db)
    assert (dep.deployer_id, dep.pipeline) == ("U0OPS", "deploy-pipeline")
    assert (dep.artifact, dep.commit, dep.pipeline_url) == ("payments:2.3.1", "abc123def",
                                                           "https://ci.example.com/b/42")
    assert dep.checklist == ALL_CHECKED and dep.started_at == IN_WINDOW
    [ev] = events(db, "deployment_started")
    assert ev.actor == "U0OPS via pipeline:deploy-pipeline"
    assert ev.after["commit"] == "abc123def" and ev.after["deployer"] == "U0OPS"
    # announced at once, in the release's thread, like the Slack button's start
    notes = [t for t in thread_texts(api_bot) if "deployment started" in t]
    assert len(notes) == 1 and "<@U0OPS>" in notes[0]
    assert release(db).state == "deploying"


def test_a_repeated_start_by_the_same_deployer_changes_nothing(api_bot, api, db, clock):
    approved(api_bot, db)
    assert start(api, clock).status_code == 201
    before, posts = counts(db), len(api_bot.emulator.calls_to("chat.postMessage"))
    again = start(api, clock)
    assert again.status_code == 200 and again.json()["state"] == "deploying"
    assert counts(db) == before and len(api_bot.emulator.calls_to("chat.postMessage")) == posts


def test_a_start_that_fails_the_gate_gets_409_with_the_reasons(api_bot, api, db, clock):
    approved(api_bot, db)
    r = start(api, clock, actor="U0RM")
    assert r.status_code == 409
    assert r.json()["allowed"] is False
    voted, role = r.json()["reasons"]
    assert "U0RM voted Go as release_manager" in voted and "U0RM holds no deploying role" in role
    # no checklist at all: each item is a reason
    r = report(api, "started", "U0OPS", **PROVENANCE)
    assert r.status_code == 409
    assert r.json()["reasons"] == ["not confirmed: monitoring and alerting are active",
                                   "not confirmed: the rollback plan is ready and tested",
                                   "not confirmed: on-call is confirmed"]
    assert deployments(db) == [] and release(db).state == "approved"
    refusals = events(db, "deploy_refused")
    assert [e.actor for e in refusals] == ["U0RM via pipeline:deploy-pipeline", "U0OPS via pipeline:deploy-pipeline"]


def test_a_start_before_the_window_gets_409(api_bot, api, db, clock):
    approved(api_bot, db)
    r = report(api, "started", "U0OPS", checklist=ALL_CHECKED)  # the clock is weeks before it
    assert r.status_code == 409 and "outside the planned window" in r.json()["reasons"][0]
    assert deployments(db) == []


@pytest.mark.parametrize("status,outcome,state,note", [
    ("succeeded", "success", "stabilising", "deployed successfully"),
    ("failed", "failed", "failed", "deployment failed"),
    ("rolled_back", "rolled_back", "rolled_back", "rolled back"),
])
def test_outcomes_are_recorded_like_the_slack_buttons(api_bot, api, db, clock, status, outcome, state, note):
    approved(api_bot, db)
    assert start(api, clock).status_code == 201
    clock.set(IN_WINDOW.replace(minute=30))
    with client(api_bot, NIGHTLY_TOKEN) as nightly:
        r = report(nightly, status, "u0ops@example.com", pipeline_url="https://ci.example.com/b/43",
                   note="smoke tests green")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == state
    [dep] = deployments(db)
    assert dep.outcome == outcome and dep.finished_at == clock.now()
    assert dep.link == "https://ci.example.com/b/43" and dep.note == "smoke tests green"
    [ev] = events(db, f"deployment_{outcome}")
    assert ev.actor == "U0OPS via pipeline:nightly"  # each event names the pipeline that reported it
    assert release(db).state == state
    assert any(note in t for t in thread_texts(api_bot))
    # reported twice (a retried job): the same answer, nothing new
    before = counts(db)
    with client(api_bot, NIGHTLY_TOKEN) as nightly:
        assert report(nightly, status, "U0OPS").status_code == 200
    assert counts(db) == before


def test_an_outcome_without_a_deployment_gets_409_and_is_a_nonconformance(api_bot, api, db, clock):
    # in production it ran without the gate: QMS 6.2's "production deployment without an approved release
    # record" (tests/e2e/test_api_reports.py has the rest)
    approved(api_bot, db)
    r = report(api, "succeeded")
    assert r.status_code == 409
    with Session(db) as s:
        [nc] = list(s.exec(select(NonConformance)))
    assert r.json()["nonconformance"] == nc.id and "started through the gate" in r.json()["reasons"][0]
    assert release(db).state == "approved" and deployments(db) == []
    [ev] = events(db, "nonconformance")
    assert ev.actor == "U0OPS via pipeline:deploy-pipeline"


@pytest.mark.parametrize("status", ["started", "succeeded", "failed", "rolled_back"])
def test_a_deployment_of_a_never_approved_release_is_a_nonconformance(api_bot, api, db, clock, status):
    requested(api_bot)
    clock.set(IN_WINDOW)
    posts = len(api_bot.emulator.calls_to("chat.postMessage"))
    r = report(api, status, "U0OPS", checklist=ALL_CHECKED, commit="deadbeef",
               pipeline_url="https://ci.example.com/b/7")
    assert r.status_code == 409
    body = r.json()
    with Session(db) as s:
        nc, *package = list(s.exec(select(NonConformance).order_by(NonConformance.id)))
    # the package it skipped besides, once each (tests/unit/test_pipeline_reports.py)
    assert [p.kind for p in package] == ["test_phase_skipped", "documentation_absent"]
    assert body["allowed"] is False and body["nonconformance"] == nc.id
    assert "never approved" in body["reasons"][-1]
    if status == "started":
        assert "REL-1 is pending, not approved" in body["reasons"][0]
    assert nc.release_id == 1 and nc.kind == "deployment_without_approval"
    assert nc.reported_by == "U0OPS via pipeline:deploy-pipeline"
    assert f"'{status}'" in nc.detail and "commit=deadbeef" in nc.detail
    assert [ev.actor for ev in events(db, "nonconformance")] == ["U0OPS via pipeline:deploy-pipeline"] * 3
    assert deployments(db) == [] and release(db).state == "pending"
    # posted at once in the release's thread, and in the release channel with the release managers mentioned
    new = [c for c in api_bot.emulator.calls_to("chat.postMessage")[posts:]
           if "Non-conformance" in c.args["text"] and nc.ref in c.args["text"]]
    assert sorted((c.args["channel"], bool(c.args.get("thread_ts"))) for c in new) == [(CHANNEL, False),
                                                                                         (CHANNEL, True)]
    assert "<@U0RM>" in next(c for c in new if not c.args.get("thread_ts")).args["text"]


def test_an_email_actor_is_resolved_through_slack(api_bot, api, db, clock):
    approved(api_bot, db)
    r = start(api, clock, actor="u0ops@example.com")
    assert r.status_code == 201
    [dep] = deployments(db)
    assert dep.deployer_id == "U0OPS"
    [lookup] = api_bot.emulator.calls_to("users.lookupByEmail")
    assert lookup.args["email"] == "u0ops@example.com"
    assert events(db, "deployment_started")[0].actor == "U0OPS via pipeline:deploy-pipeline"


def test_an_unknown_email_gets_422_and_writes_nothing(api_bot, api, db, clock):
    approved(api_bot, db)
    clock.set(IN_WINDOW)
    before = counts(db)
    r = report(api, "started", "nobody@example.com", checklist=ALL_CHECKED)
    assert r.status_code == 422
    assert "nobody@example.com" in r.json()["error"]
    assert api.get(GATE, params={"actor": "nobody@example.com"}).status_code == 422
    assert counts(db) == before


def test_slack_failing_the_email_lookup_gets_502_not_a_guess(api_bot, api, db, clock):
    approved(api_bot, db)
    clock.set(IN_WINDOW)
    api_bot.emulator.fail_next("users.lookupByEmail", status=500)
    before = counts(db)
    r = report(api, "started", "u0ops@example.com", checklist=ALL_CHECKED)
    assert r.status_code == 502 and "u0ops@example.com" in r.json()["error"]
    assert counts(db) == before


# ---- malformed requests --------------------------------------------------------------

BAD_REQUESTS = [
    # (method, path, request kwargs, status, fragment of the error)
    ("POST", DEPLOYMENTS, {"content": b'{"status": "started", '}, 400, "not valid JSON"),
    ("POST", DEPLOYMENTS, {"content": b"\xff\xfe"}, 400, "not valid JSON"),
    ("POST", DEPLOYMENTS, {"content": b""}, 400, "JSON object"),
    ("POST", DEPLOYMENTS, {"json": ["started"]}, 400, "JSON object"),
    ("POST", DEPLOYMENTS, {"json": {"status": "deployed", "actor": "U0OPS"}}, 400, "status must be one of"),
    ("POST", DEPLOYMENTS, {"json": {"actor": "U0OPS"}}, 400, "status must be one of"),
    ("POST", DEPLOYMENTS, {"json": {"status": "started"}}, 400, "actor is required"),
    ("POST", DEPLOYMENTS, {"json": {"status": "started", "actor": "  "}}, 400, "actor is required"),
    ("POST", DEPLOYMENTS, {"json": {"status": "started", "actor": "bob"}}, 400, "Slack user id"),
    ("POST", DEPLOYMENTS, {"json": {"status": "started", "actor": "U0OPS", "checklist": {"monitoring": "true"}}},
     400, "must be true or false"),
    ("POST", DEPLOYMENTS, {"json": {"status": "started", "actor": "U0OPS", "checklist": {"on_call": True}}},
     400, "unknown checklist item on_call"),
    ("POST", DEPLOYMENTS, {"json": {"status": "started", "actor": "U0OPS", "colour": "blue"}}, 400,
     "unknown field colour"),
    ("POST", DEPLOYMENTS, {"json": {"status": "started", "actor": "U0OPS", "commit": "x" * 81}}, 400,
     "commit is longer than 80"),
    ("POST", DEPLOYMENTS, {"json": {"status": "started", "actor": "U0OPS", "pipeline_url": "javascript:alert(1)"}},
     400, "http(s) URL"),
    ("POST", DEPLOYMENTS, {"json": {"status": "started", "actor": "U0OPS", "artifact": 7}}, 400,
     "artifact must be a string"),
    ("POST", DEPLOYMENTS, {"content": b'{"status": "started", "actor": "' + b"U" * 70_000 + b'"}'}, 413,
     "at most 65536"),
    ("GET", GATE, {}, 400, "actor is required"),
    ("GET", GATE, {"params": {"actor": "U0OPS", "monitoring": "maybe"}}, 400, "monitoring must be 1"),
    ("GET", GATE, {"params": {"actor": "U0OPS", "on_call": "1"}}, 400, "unknown parameter on_call"),
    ("GET", GATE + "?actor=U0OPS&actor=U0DEV", {}, 400, "actor is given twice"),
    ("GET", "/api/v1/releases/RELEASE-1/gate", {"params": {"actor": "U0OPS"}}, 400, "REL-12"),
    ("POST", "/api/v1/releases/REL-x/deployments", {"json": {"status": "started", "actor": "U0OPS"}}, 400,
     "REL-12"),
    ("GET", "/api/v1/releases/REL-99/gate", {"params": {"actor": "U0OPS"}}, 404, "REL-99 does not exist"),
    ("POST", "/api/v1/releases/REL-99/deployments", {"json": {"status": "started", "actor": "U0OPS"}}, 404,
     "REL-99 does not exist"),
    ("GET", "/api/v1/releases", {}, 404, "no such endpoint"),
    ("GET", "/api/v2/releases/REL-1/gate", {}, 404, "no such endpoint"),
    ("GET", DEPLOYMENTS, {}, 405, "takes POST"),
    ("POST", GATE, {"json": {}}, 405, "takes GET"),
    ("DELETE", DEPLOYMENTS, {}, 405, "takes POST"),
]


@pytest.mark.parametrize("method,path,kwargs,status,fragment", BAD_REQUESTS,
                         ids=[f"{m} {p.rsplit('/', 1)[-1][:20]} {s} {f}" for m, p, _, s, f in BAD_REQUESTS])
def test_malformed_requests_get_a_json_error_and_write_nothing(api_bot, api, db, clock, method, path, kwargs,
                                                                 status, fragment):
    approved(api_bot, db)
    clock.set(IN_WINDOW)
    before, calls = counts(db), len(api_bot.emulator.calls)
    r = api.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert set(r.json()) == {"error"}
    assert fragment in r.json()["error"]
    if status == 405:
        assert r.headers["Allow"] in ("GET", "POST")
    assert counts(db) == before
    assert len(api_bot.emulator.calls) == calls


def test_an_unexpected_failure_is_500_without_a_traceback(api_bot, api, db, clock, monkeypatch, caplog):
    import bot.api

    approved(api_bot, db)

    def broken(*_args, **_kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(bot.api, "check_gate", broken)
    r = api.get(GATE, params={"actor": "U0OPS"})
    assert r.status_code == 500
    assert r.json() == {"error": "internal error"}
    assert "secret internals" not in r.text and "Traceback" not in r.text
    assert any(rec.exc_info and "secret internals" in str(rec.exc_info[1]) for rec in caplog.records)


# ---- configuration -----------------------------------------------------------------

BASE_ENV = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "s", "RELEASE_CHANNEL": CHANNEL}


def test_api_tokens_are_kept_only_as_hashes_naming_their_pipeline():
    config = load_config({**BASE_ENV, "RELEASEBOT_API_TOKENS": TOKENS})
    assert dict(config.api_tokens) == {
        hashlib.sha256(DEPLOY_TOKEN.encode()).hexdigest(): ApiToken("deploy-pipeline", None, act_for_people=True),
        hashlib.sha256(NIGHTLY_TOKEN.encode()).hexdigest(): ApiToken("nightly", None, act_for_people=True)}
    assert DEPLOY_TOKEN not in repr(config) and NIGHTLY_TOKEN not in repr(config)
    assert load_config(BASE_ENV).api_tokens == {}
    # a token may contain '=' (base64 padding): only the first one separates the name. Without options a
    # token acts only as itself, in every environment.
    padded = load_config({**BASE_ENV, "RELEASEBOT_API_TOKENS": "ci=abcdefghijklmnopqrstuv=="})
    assert dict(padded.api_tokens) == {hashlib.sha256(b"abcdefghijklmnopqrstuv==").hexdigest(): ApiToken("ci")}
    scoped = load_config({**BASE_ENV, "RELEASEBOT_API_TOKENS": "ci=abcdefghijklmnopqrstuv; envs=staging+qa ;"
                                                                "act_for=self"})
    assert list(scoped.api_tokens.values()) == [ApiToken("ci", frozenset({"staging", "qa"}), act_for_people=False)]


@pytest.mark.parametrize("value,problem", [
    ("sekret-token-0123456789", "entry 1 is not name=token"),
    ("deploy-pipeline=", "entry 1 is not name=token"),
    ("=sekret-token-0123456789", "entry 1 is not name=token"),
    ("ci=sekret-token-0123456789,nightly", "entry 2 is not name=token"),
    ("deploy pipeline=sekret-token-0123456789", "entry 1 has a name"),
    ("ci=short", "shorter than 16"),
    ("ci=sekret token 0123456789", "has spaces"),
    ("ci=sekret-token-0123456789,ci=other-token-0123456789", "'ci' is named twice"),
    ("a=sekret-token-0123456789,b=sekret-token-0123456789", "'a' and 'b' have the same token"),
    ("ci=sekret-token-0123456789;envs=", "'ci' has envs that are not environment names"),
    ("ci=sekret-token-0123456789;envs=production staging", "'ci' has envs that are not environment names"),
    ("ci=sekret-token-0123456789;act_for=anyone", "'ci' has act_for=anyone; it is people or self"),
    ("ci=sekret-token-0123456789;as=people", "'ci' has an option other than envs"),
    ("ci=sekret-token-0123456789;act_for=self;act_for=people", "'ci' sets act_for twice"),
    ("ci=sekret-token-0123;456789", "'ci' has an option other than envs"),
])
def test_a_malformed_api_tokens_setting_is_a_config_error(value, problem):
    with pytest.raises(ConfigError) as err:
        load_config({**BASE_ENV, "RELEASEBOT_API_TOKENS": value})
    message = str(err.value)
    assert "RELEASEBOT_API_TOKENS is malformed" in message and problem in message
    assert 'RELEASEBOT_API_TOKENS="deploy-pipeline=<token>;envs=production+staging;act_for=people,' in message
    assert "sekret" not in message  # a secret never reaches the log


def test_a_token_allowed_an_environment_the_policy_lacks_stops_start_up(db, clock, policy, emulator):
    with pytest.raises(ConfigError) as err:
        start_bot(db, clock, policy, emulator,
                  env_overrides={"RELEASEBOT_API_TOKENS": "ci=sekret-token-0123456789;envs=prod"})
    message = str(err.value)
    assert "'ci' names prod" in message and "production, staging, qa, development" in message
    assert "sekret" not in message  # a secret never reaches the log



def test_rolled_back_reported_during_stabilisation_records_decision_and_restoration(api_bot, api, db, clock):
    """A pipeline that rolls back by itself after a success reports only the end."""
    approved(api_bot, db)
    assert start(api, clock).status_code == 201
    assert report(api, "succeeded").status_code == 200
    clock.advance(minutes=20)
    r = report(api, "rolled_back", note="canary error rate")
    assert r.status_code == 200 and r.json()["state"] == "rolled_back"
    [dep] = deployments(db)
    assert dep.rollback_decided_at == dep.restored_at == clock.now() and dep.outcome == "rolled_back"


def test_a_retried_report_for_an_unapproved_release_is_one_nonconformance(api_bot, api, db):
    requested(api_bot)
    first = report(api, "succeeded", pipeline_url="https://ci.example.com/run/9")
    again = report(api, "succeeded", pipeline_url="https://ci.example.com/run/9")
    assert first.status_code == again.status_code == 409
    assert first.json()["nonconformance"] == again.json()["nonconformance"]
    with Session(db) as s:
        kinds = sorted(n.kind for n in s.exec(select(NonConformance)))
    assert kinds == ["deployment_without_approval", "documentation_absent", "test_phase_skipped"]
