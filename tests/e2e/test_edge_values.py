"""Bad values over the real HTTP edges (Slack, the Pipeline API, the feed): each is answered with a sentence
and a 4xx, never a traceback, and writes nothing. On PostgreSQL NUL and surrogates were a DataError."""
from __future__ import annotations

import io
import json
import logging
from datetime import datetime, timezone

import httpx
import pytest
from sqlmodel import Session, select

from bot.logging_safe import SafeFormatter
from conftest import start_bot, serving
from storage.models import AuditEvent, Blackout, Deployment, Outbox, Release, Vote

UTC = timezone.utc
LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-15 10:00" tz=UTC '
        'duration=60m summary="{summary}"')
TOKEN = "dp-0123456789abcdef0123"
EVIL = "<!channel> <@U0VP> <http://evil.example|click here>"


def written(db) -> tuple[int, ...]:
    with Session(db) as s:
        return tuple(len(list(s.exec(select(m)))) for m in (Release, Vote, AuditEvent, Outbox, Deployment, Blackout))


def reply(bot) -> str:
    return bot.emulator.calls_to("response_url")[-1].args["text"]


@pytest.fixture
def edge_bot(db, clock, policy, emulator):
    yield from serving(start_bot(db, clock, policy, emulator, env_overrides={
        "RELEASEBOT_API_TOKENS": f"deploy-pipeline={TOKEN};act_for=people",
        "RELEASEBOT_PUBLIC_URL": "https://releases.example.com"}))


@pytest.mark.parametrize("bad", ["a\x00b"])
def test_a_nul_in_a_slash_command_is_answered_and_writes_nothing(edge_bot, db, bad):
    r = edge_bot.command(LINE.format(summary=bad), user="U0DEV")
    assert r.status_code == 200 and "NUL" in r.json()["text"]
    assert written(db) == (0, 0, 0, 0, 0, 0)


def test_a_nul_in_a_vote_note_is_answered_and_writes_nothing(edge_bot, db):
    edge_bot.command(LINE.format(summary="Add refunds"), user="U0DEV")
    before = written(db)
    r = edge_bot.command("go REL-1 note=\"fine\x00\"", user="U0RM")
    assert "NUL" in r.json()["text"]
    assert written(db) == before


@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b"])
def test_nul_or_a_surrogate_in_a_form_is_an_inline_error_and_writes_nothing(edge_bot, db, bad):
    edge_bot.command(LINE.format(summary="Add refunds"), user="U0DEV")
    before = written(db)
    r = edge_bot.submit("nogo_reason", {"reason": {"reason": {"value": bad}}}, user="U0QA",
                        private_metadata=json.dumps({"release": 1, "channel": "C0RELEASES"}))
    assert r.json()["response_action"] == "errors" and "NUL" in r.json()["errors"]["reason"]
    values = {"evidence": {"evidence": {"value": bad}}, "actions": {"actions": {"value": None}}}
    r = edge_bot.submit("followup_form", values, user="U0PL",
                        private_metadata=json.dumps({"release": 1, "channel": "C0RELEASES"}))
    assert r.json()["response_action"] == "errors" and "NUL" in r.json()["errors"]["evidence"]
    assert written(db) == before


def test_a_surrogate_in_the_request_form_is_an_inline_error_and_writes_nothing(edge_bot, db):
    from test_request_modal import META, values
    r = edge_bot.submit("release_request", values(summary={"summary": {"value": "Add \ud83d refunds"}}),
                        user="U0DEV", private_metadata=META)
    assert r.json()["response_action"] == "errors" and "surrogate" in r.json()["errors"]["summary"]
    assert written(db) == (0, 0, 0, 0, 0, 0)


def test_a_huge_blackout_id_is_no_such_blackout(edge_bot, db):
    r = edge_bot.command("blackout remove 99999999999999999999", user="U0RM")
    assert "there is no blackout 99999999999999999999" in r.json()["text"]
    assert written(db) == (0, 0, 0, 0, 0, 0)


def test_a_year_9999_blackout_and_release_are_answered(edge_bot, db):
    edge_bot.command('blackout add name="Far" start="9999-12-25 00:00" end="9999-12-31 23:00" tz=UTC', user="U0RM")
    assert "two years" in reply(edge_bot)
    edge_bot.command(LINE.format(summary="x").replace("2026-12-15", "9999-12-31").replace("60m", "14d"),
                     user="U0DEV")
    assert "within two years" in reply(edge_bot)
    assert written(db) == (0, 0, 0, 0, 0, 0)


def api(bot) -> httpx.Client:
    return httpx.Client(base_url=bot.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)


@pytest.mark.parametrize("body", [{"status": "started", "actor": "U0PL", "note": "a\x00b"},
                                  {"status": "started", "actor": "U0PL", "note": "a\ud800b"},
                                  {"status": "started", "actor": "U0PL", "checklist": {"monitoring\x00": True}}])
def test_nul_or_a_surrogate_in_an_api_body_is_a_400_and_writes_nothing(edge_bot, db, body):
    edge_bot.command(LINE.format(summary="Add refunds"), user="U0DEV")
    before = written(db)
    with api(edge_bot) as c:
        r = c.post("/api/v1/releases/REL-1/deployments", content=json.dumps(body),
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "NUL" in r.json()["error"]
    assert written(db) == before


def test_nul_in_an_api_query_is_a_400(edge_bot, db):
    edge_bot.command(LINE.format(summary="Add refunds"), user="U0DEV")
    with api(edge_bot) as c:
        r = c.get("/api/v1/releases/REL-1/gate?actor=U0PL%00&monitoring=1")
        assert r.status_code == 400 and "NUL" in r.json()["error"]
        assert c.get("/api/v1/releases/REL-99999999999999999999/gate").status_code == 404
        assert c.get("/api/v1/releases/REL-" + "9" * 5000 + "/gate").status_code == 404


def _feed_url(bot) -> str:
    bot.command("calendar", user="U0DEV")
    shown = json.dumps(bot.emulator.calls_to("response_url")[-1].args["blocks"])
    token = shown.split("calendar.ics?token=")[1].split(" ")[0].split('"')[0]
    return f"{bot.url}/calendar.ics?token={token}"


@pytest.mark.parametrize("service", ["pay%0d%0aX-Evil:%201", "pay%0aments", "pay%00", "pay%09x", "%ED%A0%80"])
def test_a_feed_service_with_control_characters_is_a_400(edge_bot, service):
    url = _feed_url(edge_bot)
    r = httpx.get(f"{url}&service={service}")
    assert r.status_code == 400 and "service" in r.text
    assert httpx.get(f"{url}&service=payments").status_code == 200


@pytest.mark.parametrize("token", ["%C3%A9", "%ED%A0%80", "%FF", "U0DEV%00.x"])
def test_a_feed_token_that_is_not_ascii_is_404_not_500(edge_bot, token):
    assert httpx.get(f"{edge_bot.url}/calendar.ics?token={token}").status_code == 404


def test_a_hostile_blackout_name_is_escaped_in_the_warning_text(edge_bot, db, clock):
    edge_bot.command(f'blackout add name="{EVIL}" start="2026-11-27 16:00" end="2026-11-30 08:00" tz=UTC',
                     user="U0RM")
    clock.set(datetime(2026, 11, 26, 16, 0, tzinfo=UTC))
    edge_bot.deliver()
    [warning] = [c for c in edge_bot.emulator.calls_to("chat.postMessage") if "starts soon" in c.args["text"]]
    shown = warning.args["text"] + json.dumps(warning.args["blocks"])
    assert "<!channel>" not in shown and "<@U0VP>" not in shown and "<http://evil" not in shown
    assert "&lt;!channel&gt;" in warning.args["text"]


def test_a_forged_log_line_in_a_request_path_stays_on_one_line(edge_bot):
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("bot.api")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        forged = "%0d%0aINFO bot.api: pipeline API: POST /api/v1/releases/REL-1/deployments by pipeline admin -> 201"
        with api(edge_bot) as c:
            r = c.get(f"/api/v1/releases/REL-1{forged}/gate",
                      headers={"User-Agent": "INFO bot.api: pipeline API: forged -> 200"})
        assert r.status_code == 404
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("INFO bot.api: pipeline API: GET /api/v1/releases/REL-1\\r\\nINFO")


@pytest.mark.parametrize("action,value", [("vote_go", "99999999999999999999"), ("deploy_outcome", "99999999999:success"),
                                          ("signoff", "99999999999:qa_lead")])
def test_a_button_value_past_32_bits_is_no_such_release(edge_bot, db, action, value):
    edge_bot.click(action, value, user="U0RM", channel="C0RELEASES")
    said = edge_bot.emulator.said_to("U0RM")[-1]
    assert "does not exist" in said
    assert written(db) == (0, 0, 0, 0, 0, 0)
