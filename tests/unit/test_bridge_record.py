"""The emergency bridge's rules and renderers: names, who is on it, the decision log, closing, Slack's limits."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, select

from bot import cli
from bot.messages import bridge as render
from commands import bridge, decision_log
from commands.decision_log import LogLine
from commands.errors import InputError
from commands.policy import Policy, PolicyError
from conftest import actor
from storage.models import AuditEvent, DecisionLogEntry, Emergency, Outbox, Release
from unit_support import new_release

SLACK_TEXT = 3000


def emergency_release(db, clock, policy, **kw) -> int:
    return new_release(db, clock, policy, type="emergency", start="2026-11-23 10:00", tz="UTC",
                       incident=kw.pop("incident", "INC-1"), **kw)


def the_emergency(db, rid=1) -> Emergency:
    with Session(db, expire_on_commit=False) as s:
        return s.exec(select(Emergency).where(Emergency.release_id == rid)).one()


def log_rows(db) -> list[DecisionLogEntry]:
    with Session(db, expire_on_commit=False) as s:
        return list(s.exec(select(DecisionLogEntry).order_by(DecisionLogEntry.id)))


def test_channel_names_follow_slacks_rules():
    r = Release(id=12, service="Payments.API v2", version="1", summary="", requester_id="U0DEV")
    assert bridge.channel_name("rel-{n}-{service}-emergency", r) == "rel-12-payments-api-v2-emergency"
    r.service = "x" * 200
    name = bridge.channel_name("rel-{n}-{service}-emergency", r)
    assert len(name) == 80 and name.startswith("rel-12-xxx") and name == name.lower()
    assert bridge.channel_name("{service}", Release(id=3, service="---", version="1", summary="",
                                                    requester_id="U")) == "rel-3-emergency"


@pytest.mark.parametrize("section, problem", [({"bridge": "channel-or-thread"}, "channel"),
                                              ({"channel_name": "rel-{nope}"}, "{n}"),
                                              ({"channel_name": 5}, "{n}")])
def test_a_bad_emergency_policy_is_refused_at_start(section, problem):
    with pytest.raises(PolicyError) as err:
        Policy.from_mapping({"emergency": section})
    assert err.value.key.startswith("emergency.") and problem in err.value.problem


def test_security_joins_the_bridge_when_asked_or_when_the_answers_say_so():
    plain = Release(id=1, service="s", version="1", summary="", requester_id="U", answers={"incident": True})
    cve = Release(id=2, service="s", version="1", summary="", requester_id="U", answers={"incident": True, "cve": True})
    assert "security" not in bridge.bridge_roles(plain, Emergency(security=False))
    assert "security" in bridge.bridge_roles(plain, Emergency(security=True))
    assert bridge.bridge_roles(cve, Emergency(security=False)) == (*bridge.BRIDGE_ROLES, "security")


def test_the_emergency_queues_its_bridge_once(db, clock, policy):
    rid = emergency_release(db, clock, policy)
    with Session(db) as s:
        rows = list(s.exec(select(Outbox).where(Outbox.kind == bridge.BRIDGE_OPEN)))
    assert [r.key for r in rows] == [f"bridge-open:{rid}"]


@pytest.mark.parametrize("rid, correct, words, said", [
    (9, None, "hello", "REL-9 does not exist"),
    (2, None, "hello", "not an emergency"),
    (1, "42", "fix", "no log entry 42"),
    (1, "x", "fix", "correct= takes the number"),
    (1, None, "   ", "needs its text"),
])
def test_bad_log_input_gets_a_clear_answer_and_writes_nothing(db, clock, policy, rid, correct, words, said):
    emergency_release(db, clock, policy)
    new_release(db, clock, policy)  # REL-2, a minor release
    with Session(db) as s:
        before = len(list(s.exec(select(AuditEvent))))
    with pytest.raises(InputError) as err:
        decision_log.add_entry(db, actor("U0EL"), rid, words, clock, source_key="k", correct=correct)
    assert said in err.value.message
    assert log_rows(db) == []
    with Session(db) as s:
        assert len(list(s.exec(select(AuditEvent)))) == before


def test_a_correction_of_another_releases_entry_is_refused(db, clock, policy):
    emergency_release(db, clock, policy)
    emergency_release(db, clock, policy, service="ledger")
    decision_log.add_entry(db, actor("U0EL"), 2, "on REL-2", clock, source_key="a")
    [other] = log_rows(db)
    with pytest.raises(InputError):
        decision_log.add_entry(db, actor("U0EL"), 1, "fix", clock, source_key="b", correct=str(other.id))
    assert len(log_rows(db)) == 1


def test_a_repeated_command_logs_once_and_the_log_is_append_only(db, clock, policy, db_url):
    emergency_release(db, clock, policy)
    first = decision_log.add_entry(db, actor("U0EL"), 1, "roll forward", clock, source_key="command:T1")
    again = decision_log.add_entry(db, actor("U0EL"), 1, "roll forward", clock, source_key="command:T1")
    assert first.changed and not again.changed and "Already logged" in again.message
    [entry] = log_rows(db)
    with pytest.raises(DBAPIError):
        with db.begin() as conn:
            conn.execute(text("UPDATE decision_log SET text = 'edited' WHERE id = :i"), {"i": entry.id})
    with pytest.raises(DBAPIError):
        with db.begin() as conn:
            conn.execute(text("DELETE FROM decision_log"))
    assert log_rows(db)[0].text == "roll forward"


def test_a_pin_is_logged_once_at_the_messages_own_time(db, clock, policy):
    emergency_release(db, clock, policy)
    said = clock.now() - timedelta(minutes=7)
    ts = f"{said.timestamp():.6f}"
    assert decision_log.log_pin(db, 1, "C0BR1", ts, "U0OPS", "errors down", "U0RM", clock)
    assert not decision_log.log_pin(db, 1, "C0BR1", ts, "U0OPS", "errors down", "U0EL", clock)
    [entry] = log_rows(db)
    assert entry.at == said.replace(microsecond=entry.at.microsecond) and entry.author == "U0OPS"
    assert entry.source_key == f"pin:C0BR1:{ts}"


def test_the_log_merges_decisions_and_entries_by_time(db, clock, policy):
    emergency_release(db, clock, policy)
    clock.advance(minutes=5)
    decision_log.add_entry(db, actor("U0EL"), 1, "later", clock, source_key="a")
    decision_log.log_pin(db, 1, "C1", f"{(clock.now() - timedelta(minutes=3)).timestamp():.6f}", "U0OPS",
                         "earlier", "U0RM", clock)
    _, lines = decision_log.load(db, 1)
    assert [x.text for x in lines][-2:] == ["earlier", "later"]
    assert lines[0].kind == "decision" and "INC-1" in " ".join(x.text for x in lines)


def _validate(db, clock, minutes=40):
    with Session(db) as s:
        e = s.exec(select(Emergency)).first()
        e.validated_at, e.validated_by = clock.now() + timedelta(minutes=minutes), "U0OPS"
        s.add(e)
        s.commit()


def test_closing_needs_validation_a_summary_and_a_bridge_role(db, clock, policy):
    emergency_release(db, clock, policy)
    with pytest.raises(InputError):
        bridge.close_bridge(db, actor("U0RM"), 1, "  ", clock, policy)
    out = bridge.close_bridge(db, actor("U0RM"), 1, "done", clock, policy)
    assert out.refused and "until validation is recorded" in out.message
    _validate(db, clock)
    out = bridge.close_bridge(db, actor("U0QA"), 1, "done", clock, policy)
    assert out.refused and the_emergency(db).closed_at is None
    out = bridge.close_bridge(db, actor("U0RM"), 1, "done", clock, policy)
    assert out.changed and the_emergency(db).close_summary == "done"
    with Session(db) as s:
        actions = [e.action for e in s.exec(select(AuditEvent).order_by(AuditEvent.id))]
        keys = [o.key for o in s.exec(select(Outbox))]
    assert actions.count("bridge_close_refused") == 2 and actions[-1] == "bridge_closed"
    assert "bridge-close:1" in keys


def test_durations_run_from_open_to_validated():
    from datetime import datetime, timezone
    t0 = datetime(2026, 11, 23, 9, tzinfo=timezone.utc)
    e = Emergency(opened_at=t0, bridge_opened_at=t0 + timedelta(minutes=1), assessed_at=t0 + timedelta(minutes=13),
                  approved_at=None, validated_at=t0 + timedelta(hours=2))
    spans = bridge.durations(e, None)
    assert [s.label for s in spans] == ["opened", "assessed", "approved", "deployed", "validated"]
    # from the request, as the assessment and approval targets are (QMS 4.6), not from the channel's creation
    assert spans[0].at == t0 and spans[1].since_previous == timedelta(minutes=13) and spans[2].at is None
    from commands.emergency import timing
    assert timing(e, e.assessed_at, 15)["minutes"] == spans[1].since_previous.total_seconds() / 60
    assert spans[4].since_previous == timedelta(hours=2, minutes=-13)


# ---- renderers -----------------------------------------------------------------------------------

def _within_limits(blocks: list[dict]) -> None:
    assert len(blocks) <= 50
    for b in blocks:
        if b["type"] == "section":
            assert len(b["text"]["text"]) <= SLACK_TEXT
        for el in b.get("elements", []):
            if el.get("type") == "button":
                assert len(el["text"]["text"]) <= 75 and len(el["value"]) <= 2000
            elif "text" in el and isinstance(el["text"], str):
                assert len(el["text"]) <= SLACK_TEXT


HOSTILE = "<!channel> & <@U123> " + "x" * 5000


def test_the_card_escapes_and_stays_within_slacks_limits(db, clock, policy):
    emergency_release(db, clock, policy, incident=HOSTILE[:400], summary=HOSTILE[:2000])
    v = bridge.view(db, 1)
    text, blocks = render.card(v, policy.roles)
    _within_limits(blocks)
    dumped = json.dumps(blocks)
    assert "<!channel>" not in dumped and "&lt;!channel&gt;" in dumped and "<!channel>" not in text
    assert "<!date^" in dumped and "{ago}" in dumped
    assert {el["action_id"] for b in blocks if b["type"] == "actions" for el in b["elements"]} == {
        render.ASSESS_FORM, render.ASSESS_SCOPE, render.ASSESS_CI, render.LOG_ACTION}


def _lines(n: int) -> list[LogLine]:
    from datetime import datetime, timezone
    t0 = datetime(2026, 11, 23, 9, tzinfo=timezone.utc)
    return [LogLine(t0 + timedelta(minutes=i), "U0EL", "command", "entry", f"entry {i:04d} " + "y" * 600, i)
            for i in range(n)]


def test_a_long_log_pages_and_nothing_is_cut_off():
    lines = _lines(400)
    seen, page = set(), 0
    while True:
        blocks = render.log_page("REL-1", 1, lines, page)
        _within_limits(blocks)
        text = json.dumps(blocks)
        seen |= {i for i in range(400) if f"entry {i:04d} " in text}
        nxt = [el for b in blocks if b["type"] == "actions" for el in b["elements"]]
        if not nxt:
            break
        assert nxt[0]["value"] == f"1:{page + 1}"
        page += 1
    assert seen == set(range(400)) and page > 1


def test_the_record_shows_what_fits_and_points_to_the_rest():
    e = Emergency(incident="<INC>", opened_at=_lines(1)[0].at, bridge_kind="channel", bridge_channel="C0BR1")
    r = Release(id=1, service="s", version="1", summary="", requester_id="U")
    blocks = render.record_blocks(r, e, _lines(400), room=20)
    _within_limits(blocks)
    assert len(blocks) <= 20 and "releasebot audit REL-1" in json.dumps(blocks) and "&lt;INC&gt;" in json.dumps(blocks)
    short = render.record_blocks(r, e, _lines(3), room=20)
    assert "releasebot audit" not in json.dumps(short) and "entry 0002" in json.dumps(short)


def test_the_closing_summary_stays_within_limits():
    e = Emergency(incident="I", opened_at=_lines(1)[0].at, closed_by="U0RM", closed_at=_lines(2)[1].at,
                  close_summary=HOSTILE)
    r = Release(id=1, service="s", version="1", summary="", requester_id="U")
    text, blocks = render.closed_summary(r, e, bridge.durations(e, None), _lines(400))
    _within_limits(blocks)
    assert "<!channel>" not in json.dumps(blocks) and "releasebot audit REL-1" in json.dumps(blocks)


def test_the_audit_export_has_the_bridge_and_the_decision_log(db, db_url, clock, policy, monkeypatch, capsys):
    emergency_release(db, clock, policy)
    decision_log.add_entry(db, actor("U0EL"), 1, "roll forward", clock, source_key="a")
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert cli.main(["audit", "REL-1", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["emergency"]["incident"] == "INC-1"
    assert [x["text"] for x in out["decision_log"] if x["kind"] == "command"] == ["roll forward"]
    assert out["decision_log"][0]["at"].startswith("2026-11-23T09:00:00")


def test_a_long_pinned_message_is_logged_and_shown_whole(db, clock, policy):
    # A Slack message may hold far more than one section: the pin keeps all of it, and the log pages show
    # every character of it (escaped, which makes "&" five characters), over as many sections as it takes.
    emergency_release(db, clock, policy)
    body = "".join(f"step {i:05d} & " for i in range(700)) + "THE END"
    assert decision_log.log_pin(db, 1, "C0BR1", f"{clock.now().timestamp():.6f}", "U0OPS", body, "U0RM", clock)
    [entry] = log_rows(db)
    assert entry.text == body
    line = LogLine(at=entry.at, actor="U0OPS", kind="pin", action="pin", text=body, entry_id=entry.id,
                   corrects_id=None)
    shown, page = "", 0
    while True:
        blocks = render.log_page("REL-1", 1, [line], page)
        _within_limits(blocks)
        shown += " " + " ".join(b["text"]["text"] for b in blocks if b["type"] == "section")  # cut at spaces
        if not [el for b in blocks if b["type"] == "actions" for el in b["elements"]]:
            break
        page += 1
    assert all(f"step {i:05d} &amp;" in shown.replace("\n", " ") for i in range(700)) and "THE END" in shown
