"""The dead-letter policy, which Slack errors a retry can fix, and the `releasebot outbox` command."""
from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlmodel import Session, select

from bot import cli
from bot.delivery import BOT_WIDE, PERMANENT, RETRYABLE, classify
from commands.policy import Policy, PolicyError
from storage import outbox
from storage.db import make_engine, transaction
from storage.models import AuditEvent, Outbox

ROOT = Path(__file__).resolve().parents[2]


def test_dead_letter_after_defaults_to_24h_and_is_set_in_the_shipped_policy():
    assert Policy.default().delivery.dead_letter_after == timedelta(hours=24)
    data = tomllib.loads((ROOT / "policy.toml").read_text())
    assert data["delivery"]["dead_letter_after"] == "24h"
    assert Policy.from_mapping(data, source="policy.toml").delivery == Policy.default().delivery
    assert Policy.from_mapping({"delivery": {"dead_letter_after": "2h"}}).delivery.dead_letter_after == \
        timedelta(hours=2)


@pytest.mark.parametrize("value", ["soon", 24, "1m", "60d"])
def test_a_bad_dead_letter_after_names_the_key(value):
    with pytest.raises(PolicyError) as err:
        Policy.from_mapping({"delivery": {"dead_letter_after": value}}, source="p.toml")
    assert err.value.key == "delivery.dead_letter_after"


def test_unknown_delivery_key_is_refused():
    with pytest.raises(PolicyError) as err:
        Policy.from_mapping({"delivery": {"dead_after": "2h"}}, source="p.toml")
    assert err.value.key == "delivery.dead_after"


@pytest.mark.parametrize("status,code,expected", [
    (200, "invalid_blocks", PERMANENT), (200, "channel_not_found", PERMANENT), (200, "not_in_channel", PERMANENT),
    (200, "is_archived", PERMANENT), (200, "msg_too_long", PERMANENT), (200, "invalid_arguments", PERMANENT),
    (200, "invalid_auth", BOT_WIDE), (200, "account_inactive", BOT_WIDE), (200, "token_revoked", BOT_WIDE),
    (200, "not_authed", BOT_WIDE), (429, "ratelimited", RETRYABLE), (500, "internal_error", RETRYABLE),
    (503, "service_unavailable", RETRYABLE), (200, "fatal_error", RETRYABLE), (200, "request_timeout", RETRYABLE),
    (200, "ratelimited", RETRYABLE), (200, "some_new_code", RETRYABLE), (502, None, RETRYABLE),
])
def test_classify(status, code, expected):
    assert classify(status, code) == expected


def _row(db, now, key="approval:9:post", stream="release:9") -> int:
    with transaction(db) as s:
        outbox.enqueue(s, key=key, kind="approval_message", at=now, stream=stream)
        return s.exec(select(Outbox.id).where(Outbox.key == key)).one()


def test_a_dead_row_releases_its_stream_and_retry_requeues_it_once(db, clock):
    first, second = _row(db, clock.now()), _row(db, clock.now(), key="approval:9:event:1")
    [claimed] = outbox.claim_due(db, clock.now())
    assert claimed.id == first and claimed.first_attempt_at == clock.now()
    with transaction(db) as s:
        assert outbox.mark_dead(s, claimed, clock.now(), "invalid_blocks")
    [nxt] = outbox.claim_due(db, clock.now())
    assert nxt.id == second  # the stream goes on
    assert outbox.requeue_dead(db, second, actor="cli:ops", now=clock.now()) is False  # not dead: nothing to do
    assert outbox.requeue_dead(db, first, actor="cli:ops", now=clock.now()) is True
    assert outbox.requeue_dead(db, first, actor="cli:ops", now=clock.now()) is False
    with Session(db) as s:
        again = s.get(Outbox, first)
        # a person sent it again: who, when and what is on the record, once
        [event] = s.exec(select(AuditEvent).where(AuditEvent.action == "outbox_requeued")).all()
    assert again.dead_at is None and again.dead_reason == "invalid_blocks" and again.due_at == clock.now()
    assert (event.actor, event.at, event.release_id) == ("cli:ops", clock.now(), None)
    assert event.after == {"outbox": first, "key": "approval:9:post", "kind": "approval_message",
                           "dead_reason": "invalid_blocks"}


def _cli(monkeypatch, capsys, url, *args) -> tuple[int, str, str]:
    monkeypatch.setenv("DATABASE_URL", url)
    code = cli.main(["outbox", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_outbox_lists_dead_rows_and_retry_requeues_one(db, db_url, clock, monkeypatch, capsys):
    dead, live = _row(db, clock.now()), _row(db, clock.now(), key="note:8:approved:1", stream="release:8")
    [row, _] = outbox.claim_due(db, clock.now())
    with transaction(db) as s:
        outbox.mark_dead(s, row, clock.now(), "not_in_channel")
    code, out, _ = _cli(monkeypatch, capsys, db_url, "--dead")
    assert code == 0 and "approval:9:post" in out and "not_in_channel" in out and "dead" in out
    assert "note:8:approved:1" not in out
    code, out, _ = _cli(monkeypatch, capsys, db_url)
    assert code == 0 and "approval:9:post" in out and "note:8:approved:1" in out
    code, _, err = _cli(monkeypatch, capsys, db_url, "--retry", str(live))
    assert code == 1 and "not a dead letter" in err
    code, out, _ = _cli(monkeypatch, capsys, db_url, "--retry", str(dead))
    assert code == 0 and f"{dead}" in out
    with Session(db) as s:
        assert s.get(Outbox, dead).dead_at is None
        [event] = s.exec(select(AuditEvent).where(AuditEvent.action == "outbox_requeued")).all()
    assert event.actor.startswith("cli:") and event.after["outbox"] == dead


def test_outbox_listing_never_migrates(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    code, _, err = _cli(monkeypatch, capsys, url, "--dead")
    assert code == 2 and "releasebot migrate" in err and not (tmp_path / "fresh.db").exists()
    engine = make_engine(url)  # an empty database: not migrated either
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE unrelated (id INTEGER)")
    code, _, err = _cli(monkeypatch, capsys, url)
    assert code == 2 and "releasebot migrate" in err
    try:
        assert inspect(engine).get_table_names() == ["unrelated"]
    finally:
        engine.dispose()


def test_plain_fallback_is_cut_under_the_limit_without_half_a_token():
    from bot.delivery import FALLBACK_LIMIT, plain_fallback
    short = plain_fallback("REL-3 is *approved*", "REL-3")
    assert short.startswith("REL-3 is *approved*") and "`/release show REL-3`" in short
    for tail in ("<@U0RM>", "&amp;", "<!date^1700000000^{date}|x>"):
        text = plain_fallback("x" * 2990 + tail * 20, "REL-3")
        assert len(text) <= FALLBACK_LIMIT and text.endswith("has everything.)_")
        body = text.split("…")[0]
        assert body.count("<") == body.count(">") and body.count("&") == body.count(";")
