"""GitHub's deployment_status events over real HTTP: recorded on the release through the pipeline API's own use
case (commands.pipeline.report_deployment), and a production success that matches no approved release is a
non-conformance posted to the release channel."""
from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, select

from storage.models import AuditEvent, Deployment, NonConformance, Release, UnmatchedDeployment

from conftest import CHANNEL
from package_steps import ready
from github_support import (IN_WINDOW, LINE, deliver, gh_bot, github, policy,  # noqa: F401 (fixtures)
                            protection, status)


def release(db, rid=1) -> Release:
    with Session(db) as s:
        return s.get(Release, rid)


def approved(bot, db):
    bot.command(LINE, user="U0DEV")
    ready(bot, 1)  # the test phases and documents the gate asks for (QMS 4.3, 4.4)
    bot.command("go REL-1", user="U0RM")
    bot.command("go REL-1", user="U0QA")
    assert release(db).state == "approved"


def channel_texts(bot) -> list[str]:
    return [c.args["text"] for c in bot.emulator.calls_to("chat.postMessage")
            if c.args.get("channel") == CHANNEL and not c.args.get("thread_ts")]


def test_a_success_records_the_outcome_and_starts_stabilisation(gh_bot, db, clock, github):
    approved(gh_bot, db)
    clock.set(IN_WINDOW)
    deliver(gh_bot, "deployment_protection_rule", protection(github, deployment=21, run=601))
    deliver(gh_bot, "deployment_status", status(deployment=21, state="in_progress"))
    gh_bot.deliver()
    assert release(db).state == "deploying"
    clock.set(IN_WINDOW.replace(minute=20))
    deliver(gh_bot, "deployment_status", status(deployment=21, state="success"))
    gh_bot.deliver()
    r = release(db)
    assert r.state == "stabilising"
    with Session(db) as s:
        (dep,) = s.exec(select(Deployment)).all()
        actions = [e.action for e in s.exec(select(AuditEvent).order_by(AuditEvent.id))]
    assert dep.deployer_id == "U0OPS" and dep.pipeline == "github" and dep.outcome == "success"
    assert dep.commit == "a1b2c3d4e5f6" and dep.started_at == IN_WINDOW
    assert dep.stabilisation_ends_at == IN_WINDOW.replace(minute=20) + timedelta(hours=2)  # minor's stabilisation
    assert actions[-2:] == ["deployment_started", "deployment_success"]
    # the same thread notes as a pipeline's report
    threads = [c.args["text"] for c in gh_bot.emulator.calls_to("chat.postMessage") if c.args.get("thread_ts")]
    assert any("deployment started by <@U0OPS>" in t for t in threads)
    assert any("REL-1 deployed successfully. Stabilisation window running." in t for t in threads)
    # GitHub sending the success again records nothing new
    deliver(gh_bot, "deployment_status", status(deployment=21, state="success"))
    gh_bot.deliver()
    with Session(db) as s:
        assert len(s.exec(select(AuditEvent).where(AuditEvent.action == "deployment_success")).all()) == 1


def test_a_failure_is_recorded_as_failed(gh_bot, db, clock, github):
    approved(gh_bot, db)
    clock.set(IN_WINDOW)
    deliver(gh_bot, "deployment_status", status(deployment=22, state="in_progress"))
    deliver(gh_bot, "deployment_status", status(deployment=22, state="error"))
    gh_bot.deliver()
    assert release(db).state == "failed"


def test_an_unmatched_production_success_is_a_nonconformance_posted_to_the_channel(gh_bot, db, clock, github):
    approved(gh_bot, db)
    clock.set(IN_WINDOW)
    # no protection rule on this environment, and a version no release has
    body = status(deployment=23, state="success", payload={"version": "9.9.9"}, ref="v9.9.9")
    deliver(gh_bot, "deployment_status", body)
    deliver(gh_bot, "deployment_status", body)  # GitHub delivering it twice: one record
    gh_bot.deliver()
    with Session(db) as s:
        (nc,) = s.exec(select(NonConformance)).all()
        (um,) = s.exec(select(UnmatchedDeployment)).all()
    assert nc.kind == "deployment_without_approval" and nc.release_id is None and nc.unmatched_id == um.id
    assert nc.service == "payments" and "v9.9.9" in nc.detail and "no release of payments" in nc.detail
    assert (um.source, um.external_id, um.environment, um.status) == ("github", "github:23", "production",
                                                                       "succeeded")
    (posted,) = [t for t in channel_texts(gh_bot) if "Non-conformance" in t]
    assert "acme/payments" in posted
    assert release(db).state == "approved"  # the approved release is not touched


def test_a_staging_success_without_a_release_is_not_a_nonconformance(gh_bot, db, clock, github):
    deliver(gh_bot, "deployment_status", status(deployment=24, state="success", environment="staging",
                                                payload={"version": "9.9.9"}))
    gh_bot.deliver()
    with Session(db) as s:
        assert s.exec(select(NonConformance)).all() == []
