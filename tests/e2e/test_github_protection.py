"""releasebot as GitHub's custom deployment protection rule, over real HTTP: signed webhooks in, the same
deployment gate as Slack and the pipeline API, answers at GitHub's callback URL (the GitHub emulator checks
the App's JWT and installation tokens), and the Slack side in the emulator."""
from __future__ import annotations

import socket
from datetime import timedelta

import httpx
import pytest

from sqlalchemy import func
from sqlmodel import select
from sqlmodel import Session

from storage.models import AuditEvent, GithubRequest, Outbox, Release

from conftest import serving, start_bot
from package_steps import ARTIFACT, ready
from github_support import (CHECKED, IN_WINDOW, LINE, PAYLOAD, deliver, gh_bot, github, github_env,  # noqa: F401
                            policy, protection)


def release(db, rid=1) -> Release:
    with Session(db) as s:
        return s.get(Release, rid)


def events(db, action: str) -> list[AuditEvent]:
    with Session(db) as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def outbox_rows(db) -> int:
    with Session(db) as s:
        return s.exec(select(func.count()).select_from(Outbox)).one()


def thread_texts(bot) -> list[str]:
    return [c.args["text"] for c in bot.emulator.calls_to("chat.postMessage") if c.args.get("thread_ts")]


def approval_texts(bot) -> list[str]:
    """Everything the approval message has shown, its blocks' text included."""
    import json
    return [json.dumps(c.args.get("blocks")) for c in bot.emulator.calls_to("chat.update")]


def requested(bot, package: bool = True):
    bot.command(LINE, user="U0DEV")
    if package:  # the test phases for ARTIFACT and the documents the gate asks for (QMS 4.3, 4.4)
        ready(bot, 1)


def approved(bot, db, package: bool = True):
    requested(bot, package)
    bot.command("go REL-1", user="U0RM")
    bot.command("go REL-1", user="U0QA")
    assert release(db).state == "approved"


def test_a_request_for_an_approved_release_inside_its_window_is_approved(gh_bot, db, clock, github):
    approved(gh_bot, db)
    clock.set(IN_WINDOW)
    assert deliver(gh_bot, "deployment_protection_rule", protection(github, deployment=11, run=501)).status_code == 202
    gh_bot.deliver()
    answers = github.callbacks()
    assert [a["state"] for a in answers] == ["approved"]
    assert answers[0]["environment_name"] == "production" and "REL-1" in answers[0]["comment"]
    # the JWT checked out and the call carried an installation token
    assert github.jwt_problems == [] and len(github.calls_to("token")) == 1
    assert github.calls_to("callback")[0].authorization.startswith("token ghs_")
    (ev,) = events(db, "github_deployment_approved")
    assert ev.actor == "U0OPS via pipeline:github" and ev.after["github_deployment"] == 11
    assert any("GitHub deployment" in t and "approved" in t and "/actions/runs/501" in t for t in thread_texts(gh_bot))


def test_a_release_still_voting_gets_a_status_report_then_the_last_go_approves_it(gh_bot, db, clock, github):
    requested(gh_bot)
    gh_bot.command("go REL-1", user="U0RM")
    clock.set(IN_WINDOW)
    deliver(gh_bot, "deployment_protection_rule", protection(github, deployment=12, run=502))
    gh_bot.deliver()
    (report,) = github.callbacks()
    assert "state" not in report and "waiting for 1 of 2 approvals of REL-1: qa_lead" in report["comment"]
    assert len(report["comment"]) <= 1024
    assert any("GitHub deployment waiting" in t and "/actions/runs/502" in t for t in thread_texts(gh_bot))
    assert any("GitHub deployment waiting" in t for t in approval_texts(gh_bot))
    with Session(db) as s:
        assert s.exec(select(GithubRequest.state)).one() == "waiting"

    gh_bot.command("go REL-1", user="U0QA")  # completes the vote
    gh_bot.deliver()
    answers = github.callbacks()
    assert [a.get("state") for a in answers] == [None, "approved"]
    assert any("GitHub deployment" in t and "*approved*" in t for t in thread_texts(gh_bot))
    assert "GitHub deployment waiting" not in approval_texts(gh_bot)[-1]  # released: no longer waiting
    gh_bot.deliver()
    assert len(github.callbacks()) == 2  # answered once


def test_a_request_from_an_approver_is_rejected_with_the_reason(gh_bot, db, clock, github):
    approved(gh_bot, db)
    clock.set(IN_WINDOW)
    deliver(gh_bot, "deployment_protection_rule", protection(github, deployment=13, run=503, sender="qa-person"))
    gh_bot.deliver()
    (answer,) = github.callbacks()
    assert answer["state"] == "rejected"
    assert "U0QA voted Go as qa_lead; a go/no-go approver never executes the deployment" in answer["comment"]
    (refused,) = events(db, "github_deploy_refused")
    assert refused.actor == "U0QA via pipeline:github" and "approver never executes" in refused.reason
    assert release(db).state == "approved"  # nothing else changed


def test_an_unmapped_sender_is_rejected_unless_their_public_email_is_a_slack_member(gh_bot, db, clock, github):
    approved(gh_bot, db)
    clock.set(IN_WINDOW)
    deliver(gh_bot, "deployment_protection_rule", protection(github, deployment=14, run=504, sender="stranger"))
    github.emails["ops-by-email"] = "u0ops@example.com"  # U0OPS, known to Slack by that address
    deliver(gh_bot, "deployment_protection_rule", protection(github, deployment=15, run=505, sender="ops-by-email"))
    gh_bot.deliver()
    by_run = {c.path.split("/")[-2]: c.body for c in github.calls_to("callback") if c.status == 204}
    assert by_run["504"]["state"] == "rejected" and "stranger is not mapped to a Slack user" in by_run["504"]["comment"]
    assert by_run["505"]["state"] == "approved"
    assert [c.path for c in github.calls_to("user")] == ["/users/stranger", "/users/ops-by-email"]
    assert any(c.args.get("email") == "u0ops@example.com" for c in gh_bot.emulator.calls_to("users.lookupByEmail"))


def test_an_unsigned_webhook_gets_401_and_a_replayed_delivery_is_handled_once(gh_bot, db, clock, github):
    approved(gh_bot, db)
    clock.set(IN_WINDOW)
    before = outbox_rows(db)
    body = protection(github, deployment=16, run=506)
    assert deliver(gh_bot, "deployment_protection_rule", body, signature=None).status_code == 401
    assert deliver(gh_bot, "deployment_protection_rule", body, signature="sha256=" + "0" * 64).status_code == 401
    assert deliver(gh_bot, "deployment_protection_rule", body, signature="sha1=abc").status_code == 401
    assert outbox_rows(db) == before
    first = deliver(gh_bot, "deployment_protection_rule", body, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    again = deliver(gh_bot, "deployment_protection_rule", body, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert (first.status_code, again.status_code) == (202, 202) and again.text == "already recorded\n"
    gh_bot.deliver()
    assert outbox_rows(db) == before + 4  # the delivery, its answer, the thread note, the approval update
    assert [a["state"] for a in github.callbacks()] == ["approved"]
    assert len(events(db, "github_deployment_approved")) == 1
    # GitHub delivering the same request under a new delivery id: the answered request is not answered again
    deliver(gh_bot, "deployment_protection_rule", body)
    gh_bot.deliver()
    assert len(github.callbacks()) == 1


def test_a_callback_url_outside_the_api_is_never_called(gh_bot, db, clock, github):
    approved(gh_bot, db)
    clock.set(IN_WINDOW)
    body = protection(github, deployment=17, run=507,
                      callback="https://attacker.example/repos/acme/payments/actions/runs/507/"
                               "deployment_protection_rule")
    assert deliver(gh_bot, "deployment_protection_rule", body).status_code == 202
    gh_bot.deliver()
    assert github.calls == []
    with Session(db) as s:
        assert s.exec(select(func.count()).select_from(GithubRequest)).one() == 0
        (row,) = s.exec(select(Outbox).where(Outbox.kind == "github_webhook")).all()
        assert row.sent_at is not None and "outside GITHUB_API_URL" in row.result


def test_github_failures_are_retried_later_and_a_401_renews_the_token(gh_bot, db, clock, github):
    requested(gh_bot)
    gh_bot.command("go REL-1", user="U0RM")
    clock.set(IN_WINDOW)
    deliver(gh_bot, "deployment_protection_rule", protection(github, deployment=18, run=508))
    gh_bot.deliver()
    assert len(github.callbacks()) == 1  # the status report; the installation token is cached now
    github.fail_next(1, status=429, retry_after=30)
    gh_bot.command("go REL-1", user="U0QA")
    gh_bot.deliver()
    answer = lambda: [a for a in github.callbacks() if a.get("state")]  # noqa: E731
    assert answer() == []
    with Session(db) as s:
        row = s.exec(select(Outbox).where(Outbox.key.like("github-answer:%:answer"))).one()
        assert row.sent_at is None and (row.due_at - IN_WINDOW).total_seconds() == 30
    gh_bot.deliver()
    assert answer() == []  # not before its Retry-After
    clock.set(row.due_at)
    github.fail_next(1, status=503)
    gh_bot.deliver()
    assert answer() == []
    with Session(db) as s:
        row = s.exec(select(Outbox).where(Outbox.key.like("github-answer:%:answer"))).one()
    assert row.due_at > clock.now()  # backed off
    clock.set(row.due_at)
    github.revoke_tokens()  # the cached token is refused: 401, renewed, sent again at once
    gh_bot.deliver()
    assert [a["state"] for a in answer()] == ["approved"]
    assert [c.status for c in github.calls_to("callback")] == [204, 429, 503, 401, 204]
    assert len(github.calls_to("token")) == 2 and github.jwt_problems == []


def test_an_approved_release_before_its_window_is_answered_when_the_window_opens(gh_bot, db, clock, github):
    approved(gh_bot, db)
    clock.set(IN_WINDOW.replace(hour=9, minute=0))  # an hour early
    deliver(gh_bot, "deployment_protection_rule", protection(github, deployment=19, run=509))
    gh_bot.deliver()
    (report,) = github.callbacks()
    assert "state" not in report and "waiting for its window to open at 2026-12-15T10:00:00Z" in report["comment"]
    clock.set(IN_WINDOW.replace(minute=0) - timedelta(seconds=1))
    gh_bot.deliver()
    assert len(github.callbacks()) == 1  # not before the window
    clock.set(IN_WINDOW.replace(minute=0))
    gh_bot.deliver()
    assert [a.get("state") for a in github.callbacks()] == [None, "approved"]


def test_a_no_go_while_github_waits_rejects_the_deployment_with_it(gh_bot, db, clock, github):
    requested(gh_bot)
    gh_bot.command("go REL-1", user="U0RM")
    clock.set(IN_WINDOW)
    deliver(gh_bot, "deployment_protection_rule", protection(github, deployment=20, run=510))
    gh_bot.deliver()
    gh_bot.command('nogo REL-1 reason="the migration is not reversible"', user="U0QA")
    gh_bot.deliver()
    answers = github.callbacks()
    assert [a.get("state") for a in answers] == [None, "rejected"]
    assert "the migration is not reversible" in answers[1]["comment"]
    assert any("*rejected*" in t and "not reversible" in t for t in thread_texts(gh_bot))


def test_a_deployment_matching_no_release_or_to_an_unmapped_environment_is_rejected(gh_bot, db, clock, github):
    approved(gh_bot, db)
    clock.set(IN_WINDOW)
    deliver(gh_bot, "deployment_protection_rule",
            protection(github, deployment=30, run=530, payload={"version": "9.9.9", "checklist": CHECKED}))
    deliver(gh_bot, "deployment_protection_rule", protection(github, deployment=31, run=531, environment="qa"))
    gh_bot.deliver()
    by_run = {c.path.split("/")[-2]: c.body for c in github.calls_to("callback") if c.status == 204}
    assert by_run["530"]["state"] == "rejected"
    assert "no release of payments to production has version 9.9.9" in by_run["530"]["comment"]
    assert by_run["531"]["state"] == "rejected" and "environment 'qa' is not mapped" in by_run["531"]["comment"]
    refused = events(db, "github_deploy_refused")
    assert len(refused) == 2 and all(e.release_id is None for e in refused)


def test_a_deployment_without_its_package_is_rejected_with_the_gates_reasons_not_held(gh_bot, db, clock, github):
    # still voting and an hour early: votes and time would be waited for, the missing package is not
    requested(gh_bot, package=False)
    gh_bot.command("go REL-1", user="U0RM")
    clock.set(IN_WINDOW.replace(hour=9, minute=0))
    deliver(gh_bot, "deployment_protection_rule", protection(github, deployment=33, run=533))
    gh_bot.deliver()
    (answer,) = github.callbacks()
    assert answer["state"] == "rejected"
    assert "test phase security is required (QMS 4.3)" in answer["comment"]
    (refused,) = events(db, "github_deploy_refused")
    for needed in ("security", "regression", "performance", "release notes", "runbook"):
        assert needed in refused.reason
    assert "not approved" in refused.reason  # every reason, the waitable ones too
    with Session(db) as s:
        assert s.exec(select(GithubRequest.state)).one() == "rejected"
    # the last Go does not reopen an answered request
    gh_bot.command("go REL-1", user="U0QA")
    gh_bot.deliver()
    assert len(github.callbacks()) == 1


def test_the_artefact_is_the_payloads_or_the_tags_and_must_carry_the_version(gh_bot, db, clock, github):
    approved(gh_bot, db)
    ready(gh_bot, 1, artifact="2.3.1")  # results for the artefact a tag names
    clock.set(IN_WINDOW)
    no_artefact = {"release": "REL-1", "checklist": CHECKED}  # a branch ref, nothing in the payload
    other = {**PAYLOAD, "artifact": "payments:2.3.0"}
    deliver(gh_bot, "deployment_protection_rule", protection(github, deployment=34, run=534, payload=no_artefact))
    deliver(gh_bot, "deployment_protection_rule", protection(github, deployment=35, run=535, payload=other))
    deliver(gh_bot, "deployment_protection_rule",
            protection(github, deployment=36, run=536, payload=no_artefact, ref="refs/tags/v2.3.1"))
    gh_bot.deliver()
    by_run = {c.path.split("/")[-2]: c.body for c in github.calls_to("callback") if c.status == 204}
    assert by_run["534"]["state"] == "rejected"
    assert "an artefact is required to start a production deployment" in by_run["534"]["comment"]
    assert by_run["535"]["state"] == "rejected"
    assert "does not carry REL-1's approved version 2.3.1" in by_run["535"]["comment"]
    assert by_run["536"]["state"] == "approved"


def test_a_delivery_recorded_before_a_restart_is_answered_after_it(db, clock, policy, emulator, github):
    first = serving(start_bot(db, clock, policy, emulator, env_overrides=github_env(github)))
    bot = next(first)
    approved(bot, db)
    clock.set(IN_WINDOW)
    assert deliver(bot, "deployment_protection_rule", protection(github, deployment=32, run=532)).status_code == 202
    next(first, None)  # stopped before its delivery loop ran
    assert github.calls == []
    second = serving(start_bot(db, clock, policy, emulator, env_overrides=github_env(github)))
    bot = next(second)
    try:
        bot.deliver()
        assert [a["state"] for a in github.callbacks()] == ["approved"]
    finally:
        next(second, None)


def test_without_the_github_settings_the_webhook_is_not_served(bot, db):
    answer = deliver(bot, "deployment_protection_rule", {"action": "requested"})  # signed with the secret
    assert answer.status_code == 404 and bot.svc.config.github is None
    assert outbox_rows(db) == 0


@pytest.mark.parametrize("path", ["/slack/events", "/github/webhook"])
def test_both_signed_endpoints_refuse_a_get_an_oversized_body_and_a_bad_length_alike(gh_bot, db, path):
    url = f"{gh_bot.url}{path}"
    got = httpx.get(url, timeout=10)
    assert (got.status_code, got.headers["Allow"], got.text) == (405, "POST", "POST only\n")
    big = httpx.post(url, content=b"a" * (1024 * 1024 + 1), timeout=10)
    assert (big.status_code, big.text) == (413, "request body too large\n")
    with socket.create_connection(("127.0.0.1", gh_bot.server.effective_port), timeout=10) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n".encode())
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 400")  # a malformed length is refused, by waitress or by the prologue
    with Session(db) as session:
        assert session.scalar(select(func.count()).select_from(Outbox)) == 0
