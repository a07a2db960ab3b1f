"""`/release evidence REL-n` and the Evidence button under `/release show`, through the real app: release
managers and auditors get the packet (HTML) in their DM through the outbox, said in an ephemeral answer;
anyone else is refused and the refusal audited; the auditor role is read-only."""
from __future__ import annotations

import json

from sqlmodel import Session, select

from slack_emulator import dm_of
from storage.models import AuditEvent, Outbox, Vote

LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2026-12-01 14:00" tz=Europe/London '
        'duration=60m summary="<script>x</script> <!channel>"')
TITLES = ("1. Who authorised it and why", "2. What changed", "3. How risk was assessed", "4. How it was validated",
          "5. When and how it was deployed", "6. What happened after")


def audit(db, action: str) -> list[AuditEvent]:
    with Session(db) as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def uploads(db) -> list[Outbox]:
    with Session(db) as s:
        return list(s.exec(select(Outbox).where(Outbox.kind == "file_upload")))


def test_a_release_manager_gets_the_packet_in_their_dm(bot, db):
    bot.command(LINE, user="U0DEV")
    bot.command("go REL-1", user="U0RM")
    bot.command("evidence REL-1", user="U0RM")
    assert "The evidence packet of REL-1 (HTML) is on its way to your DM." in bot.emulator.said_to("U0RM")
    bot.deliver()
    [f] = bot.emulator.uploaded(dm_of("U0RM"))
    assert f["filename"] == "evidence-REL-1.html" and "Evidence packet REL-1" in f["title"]
    html = f["data"].decode()
    assert all(f"<h2>{t}</h2>" in html for t in TITLES)
    assert "<script>x" not in html and "&lt;!channel&gt;" in html
    [ev] = audit(db, "evidence_requested")
    assert ev.actor == "U0RM" and ev.release_id == 1
    # the vote recorded who held the role then, and the policy in force
    with Session(db) as s:
        vote = s.exec(select(Vote)).one()
    assert vote.role_holders == ["U0RM"] and vote.policy_hash == bot.svc.policy.digest
    assert "U0RM" in html and bot.svc.policy.digest in html


def test_an_auditor_clicks_evidence_under_show(bot, db):
    bot.command(LINE, user="U0DEV")
    bot.command("show REL-1", user="U0AUD")
    shown = json.dumps([c.args.get("blocks") for c in bot.emulator.calls_to("response_url")])
    assert '"action_id": "evidence_packet"' in shown and '"value": "1"' in shown
    bot.click("evidence_packet", "1", user="U0AUD")
    assert any("on its way to your DM" in t for t in bot.emulator.said_to("U0AUD"))
    bot.deliver()
    [f] = bot.emulator.uploaded(dm_of("U0AUD"))
    assert f["filename"] == "evidence-REL-1.html"
    assert [e.actor for e in audit(db, "evidence_requested")] == ["U0AUD"]


def test_anyone_else_is_refused_and_the_refusal_audited(bot, db):
    bot.command(LINE, user="U0DEV")
    for user in ("U0DEV", "U0QA"):
        bot.command("evidence REL-1", user=user)
        assert "is for release managers and auditors" in bot.emulator.said_to(user)[-1]
    bot.click("evidence_packet", "1", user="U0OPS")
    assert "is for release managers and auditors" in bot.emulator.said_to("U0OPS")[-1]
    refused = audit(db, "evidence_refused")
    assert [(e.actor, e.after["code"]) for e in refused] == [("U0DEV", "not_a_reader"), ("U0QA", "not_a_reader"),
                                                             ("U0OPS", "not_a_reader")]
    assert uploads(db) == [] and audit(db, "evidence_requested") == []
    bot.deliver()
    assert bot.emulator.uploaded() == []


def test_bad_input_is_answered_with_the_form(bot, db):
    answered = bot.command("evidence", user="U0RM").json()["text"]  # answered in the ack
    assert "/release evidence REL-12" in answered
    bot.command("evidence REL-7", user="U0RM")
    assert "REL-7" in bot.emulator.said_to("U0RM")[-1]
    assert uploads(db) == [] and audit(db, "evidence_refused") == []


def test_an_auditor_cannot_vote_deploy_or_sign_off(bot, db):
    bot.command(LINE, user="U0DEV")
    bot.command("go REL-1", user="U0AUD")
    assert "you hold none of those roles" in bot.emulator.said_to("U0AUD")[-1]
    bot.command("deploy REL-1", user="U0AUD")
    assert "cannot be deployed" in bot.emulator.said_to("U0AUD")[-1]
    bot.command("signoff REL-1", user="U0AUD")
    bot.command('override REL-1 kind=lead_time reason="x"', user="U0AUD")
    with Session(db) as s:
        assert list(s.exec(select(Vote))) == []
    assert {e.action for e in audit(db, "vote_refused") + audit(db, "deploy_refused")} == {"vote_refused",
                                                                                         "deploy_refused"}
    with Session(db) as s:
        mine = [e.action for e in s.exec(select(AuditEvent).where(AuditEvent.actor == "U0AUD"))]
    assert mine and all(a.endswith("_refused") for a in mine)
