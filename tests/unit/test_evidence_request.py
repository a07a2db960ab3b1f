"""Asking for the evidence packet (commands.evidence_request): one upload per request however often it is
delivered, audited once; "could not check" writes nothing; a refusal is audited."""
from __future__ import annotations

import pytest
from sqlmodel import Session, select

from commands.errors import CouldNotCheck
from commands.evidence_request import request_packet
from commands.outcome import Actor
from conftest import actor
from storage.models import Outbox
from unit_support import actions, counts, new_release


def uploads(db) -> list[Outbox]:
    with Session(db) as s:
        return list(s.exec(select(Outbox).where(Outbox.kind == "file_upload").order_by(Outbox.id)))


def test_a_repeated_delivery_queues_one_upload_and_a_new_request_another(db, clock, policy):
    rid = new_release(db, clock, policy)
    first = request_packet(db, actor("U0AUD"), rid, clock, request_key="cmd:T1")
    again = request_packet(db, actor("U0AUD"), rid, clock, request_key="cmd:T1")
    assert first.changed and not again.changed and "on its way to your DM" in again.message
    assert len(uploads(db)) == 1 and actions(db, rid).count("evidence_requested") == 1
    [row] = uploads(db)
    assert row.payload["producer"] == "evidence_packet" and row.payload["user"] == "U0AUD"
    assert row.payload["args"] == {"release_id": rid, "format": "html"}
    assert request_packet(db, actor("U0RM"), rid, clock, request_key="cmd:T2").changed
    assert len(uploads(db)) == 2 and actions(db, rid).count("evidence_requested") == 2


def test_a_role_slack_could_not_check_writes_nothing(db, clock, policy):
    rid = new_release(db, clock, policy)
    before = counts(db)
    with pytest.raises(CouldNotCheck):
        request_packet(db, Actor("U0X", frozenset(), frozenset({"auditor"})), rid, clock, request_key="cmd:T3")
    assert counts(db) == before


def test_someone_without_the_role_is_refused_and_it_is_audited(db, clock, policy):
    rid = new_release(db, clock, policy)
    out = request_packet(db, actor("U0PO"), rid, clock, request_key="cmd:T4")
    assert out.refused and not out.changed and "release managers and auditors" in out.message
    assert uploads(db) == [] and actions(db, rid)[-1] == "evidence_refused"
