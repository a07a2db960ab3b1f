"""App Home (issue 13): the view model reads a fixed number of queries whatever the number of releases, says
why a person cannot vote by commands.vote's own rules, and the tab stays within Slack's limits with 200 live
releases, every list that was cut saying how many more there are."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from slack_sdk.models.views import View
from sqlalchemy import event
from sqlmodel import Session

from commands.clock import FixedClock
from commands.home import home_view
from commands.outcome import Actor
from commands.policy import ROLES, Policy
from commands.vote import cast_vote
from storage.models import Blackout, BlackoutOccurrence, NonConformance, Release, ReleaseFlag, Task, Vote

from bot.home_metrics import Line, WeekMetrics
from bot.messages import home as render
from unit_support import new_release

UTC = timezone.utc
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ALL = "U0ALL"  # holds every role
HOSTILE = "<!channel> & <@U0EVIL>"


@pytest.fixture
def everyone_policy() -> Policy:
    return Policy.from_mapping({"roles": {r: [ALL] + (["U0RM"] if r == "release_manager" else [])
                                          for r in ROLES}}, source="test policy")


def seed(db, n: int, requester: str = "U0DEV", mine_every: int = 2) -> None:
    """`n` live releases straight into the tables (the planning checks are not what is measured), with a
    vote, a flag, a No-go, tasks, non-conformances and blackouts sprinkled over them."""
    with Session(db) as s:
        made = []
        for i in range(n):
            start = NOW + timedelta(hours=i - 3)
            made.append(Release(service=f"svc{i % 7}{HOSTILE if i % 13 == 0 else ''}", version=f"1.{i}", environment="production",
                          requested_type="minor", derived_type="minor", effective_type="minor",
                          required_roles={"release_manager": 1, "qa_lead": 1}, start_at=start,
                          end_at=start + timedelta(hours=1), tz="UTC", duration_minutes=60, summary="x" * 500,
                          requester_id=ALL if i % mine_every == 0 else requester,
                          state="approved" if i % 3 == 0 else "pending", created_at=NOW, updated_at=NOW))
        s.add_all(made)
        s.flush()
        for i, r in enumerate(made, 1):  # i: 1..n whatever ids the database gave (a sequence is not reset)
            rid = r.id
            if i % 5 == 0:
                s.add(ReleaseFlag(release_id=rid, kind="lead_time", detail="too soon " + HOSTILE * 40, raised_at=NOW))
            if i % 11 == 0:
                s.add(Vote(release_id=rid, round=1, voter_id="U0QA", role="qa_lead", decision="nogo",
                           note="load test failed " * 30, decided_at=NOW))
            if i % 4 == 0:
                s.add(Task(release_id=rid, kind="followup", due_at=NOW - timedelta(hours=1), created_at=NOW))
            if i % 9 == 0:
                s.add(NonConformance(release_id=rid, kind="deferred_step_overdue", subject=f"s{rid}",
                                     detail=HOSTILE * 100, reported_by="releasebot", at=NOW))
        for b in range(8):
            bo = Blackout(name=f"Freeze {b} {HOSTILE}", start_local=datetime(2026, 12, 1 + b), tz="UTC",
                          end_local=datetime(2026, 12, 2 + b), created_by="U0RM", created_at=NOW)
            s.add(bo)
            s.flush()
            start = NOW + timedelta(days=8 + b)
            s.add(BlackoutOccurrence(blackout_id=bo.id, start_at=start, end_at=start + timedelta(days=1)))
        s.commit()


def test_two_hundred_live_releases_fit_one_home_tab_and_each_cut_list_says_how_many_more(db, everyone_policy):
    seed(db, 200)
    model = home_view(db, Actor(ALL, frozenset(ROLES)), FixedClock(NOW), everyone_policy)
    metrics = WeekMetrics(NOW - timedelta(days=1), NOW, tuple(Line(f"KPI {i}", "50% (n=10)", "≥ 90%", False)
                                                              for i in range(11)))
    view = render.home_view(model, metrics)
    blocks = view["blocks"]
    assert view["type"] == "home" and len(blocks) <= render.VIEW_BLOCKS
    View(**view).validate_json()  # slack_sdk's own checks of a Home view (lengths, 100 blocks)
    assert len({b["block_id"] for b in blocks if "block_id" in b}) == len([b for b in blocks if "block_id" in b])
    for b in blocks:
        if b["type"] == "section":
            assert len(b["text"]["text"]) <= 3000
    shown = json.dumps(blocks, ensure_ascii=False)
    # every list the tab cut names how many it left out and where they are
    assert f"and {model.to_vote.total - render.SHOWN['to_vote']} more" in shown
    assert f"and {model.mine.total - render.SHOWN['mine']} more — `/release list mine`" in shown
    assert f"and {model.blocked.total - render.SHOWN['blocked']} more" in shown
    assert f"and {model.tasks.total - render.SHOWN['tasks']} more" in shown
    assert f"and {model.nonconformances.total - render.SHOWN['nonconformances']} more" in shown
    assert model.mine.total == 100 and model.blocked.total == 40 + 18 - 3  # flags every 5th, No-go every 11th, both every 55th
    assert "<!channel>" not in shown and "&lt;!channel&gt;" in shown  # echoed text is escaped
    assert "Next blackouts" in shown and "This week's metrics" in shown


def test_the_view_model_reads_the_same_number_of_queries_for_ten_or_two_hundred_releases(db_url, everyone_policy):
    from storage.db import make_engine

    def queries(n: int) -> int:
        engine = make_engine(db_url)
        from sqlalchemy import text
        with engine.begin() as conn:  # each size on an empty database
            for t in ("vote", "release_flag", "task", "nonconformance", "blackout_occurrence", "blackout", "release"):
                conn.execute(text(f"DELETE FROM {t}"))
        seed(engine, n)
        seen = []
        event.listen(engine, "before_cursor_execute", lambda *a, **k: seen.append(a[2]))
        home_view(engine, Actor(ALL, frozenset(ROLES)), FixedClock(NOW), everyone_policy)
        engine.dispose()
        return len([q for q in seen if q.lstrip().upper().startswith("SELECT")])

    assert queries(10) == queries(200) <= 10


def test_an_approver_is_told_why_they_cannot_vote_by_the_vote_rules(db, clock, policy):
    own = new_release(db, clock, policy, requester=Actor("U0RM"))  # a release manager's own request
    filled = new_release(db, clock, policy, version="2.3.2")
    cast_vote(db, Actor("U0OTHER", frozenset({"release_manager"})), filled, "go", clock)
    voted = new_release(db, clock, policy, version="2.3.3")
    cast_vote(db, Actor("U0RM", frozenset({"release_manager"})), voted, "go", clock)
    open_one = new_release(db, clock, policy, version="2.3.4")

    model = home_view(db, Actor("U0RM", frozenset({"release_manager"})), clock, policy)
    can = {it.release.id: it for it in model.to_vote.items}
    cannot = {it.release.id: it.why_not for it in model.cannot_vote.items}
    assert set(can) == {open_one} and can[open_one].role == "release_manager"
    assert "You requested REL-1, so you cannot vote on it" in cannot[own]
    assert "already filled by other people: release_manager (U0OTHER)" in cannot[filled]
    assert cannot[voted] == "Your Go on REL-3 as release_manager is already recorded."
    # the same sentences cast_vote answers with (refused, audited) when the Go is tried
    rm = Actor("U0RM", frozenset({"release_manager"}))
    for rid in (own, filled, voted):
        out = cast_vote(db, rm, rid, "go", clock)
        assert out.message == cannot[rid] and not out.changed


def test_an_emergency_before_its_assessment_is_listed_with_what_it_still_needs(db, clock, policy):
    rid = new_release(db, clock, policy, type="emergency", service="checkout")
    model = home_view(db, Actor("U0EL", frozenset({"engineering_lead"})), clock, policy)
    why = {it.release.id: it.why_not for it in model.cannot_vote.items}
    assert "co-approval follows the assessment (QMS 4.6)" in why[rid] and not model.to_vote.total


def test_a_plain_requester_sees_only_their_requests_and_the_blackouts(db, clock, policy):
    seed(db, 12, requester="U0DEV", mine_every=1000)
    model = home_view(db, Actor("U0DEV"), clock, policy)
    assert not (model.approver or model.deployer or model.release_manager)
    assert model.mine.total == 11 and model.to_vote.total == 0 and len(model.blackouts) == 5
    shown = json.dumps(render.home_view(model, None)["blocks"])
    assert "Your requests (11)" in shown and "Awaiting your vote" not in shown and "Blocked releases" not in shown


def test_metrics_unavailable_is_said_not_hidden(db, clock, everyone_policy, monkeypatch):
    import sys
    from bot.home_metrics import this_week
    monkeypatch.setitem(sys.modules, "commands.metrics", None)  # as before commands.metrics is merged
    m = this_week(db, NOW, everyone_policy)
    model = home_view(db, Actor("U0RM", frozenset({"release_manager"})), clock, everyone_policy)
    assert m.unavailable == "metrics unavailable" and m.start == datetime(2026, 11, 23, tzinfo=UTC)
    assert "metrics unavailable" in json.dumps(render.home_view(model, m)["blocks"])


def test_this_weeks_figures_come_from_commands_metrics_with_their_sample(db, everyone_policy, monkeypatch):
    import sys
    import types
    from bot.home_metrics import this_week
    asked = []

    def compute(db_, start, end, *, service=None, policy):
        asked.append((start, end, service, policy))
        fig = types.SimpleNamespace(key="cfr", label="Change failure rate", value=0.2, n=5, unit="%",
                                    target="< 15%", met=False, enough=True, text="20% (n=5)")
        return types.SimpleNamespace(figures=(fig,))
    monkeypatch.setitem(sys.modules, "commands.metrics", types.SimpleNamespace(compute=compute))
    m = this_week(db, NOW + timedelta(days=2, hours=3), everyone_policy)
    assert asked == [(datetime(2026, 11, 23, tzinfo=UTC), NOW + timedelta(days=2, hours=3), None, everyone_policy)]
    assert m.lines == (Line("Change failure rate", "20% (n=5)", "< 15%", False),) and m.unavailable is None


def test_the_last_guard_never_cuts_silently():
    blocks = [{"type": "divider"}] * 130
    out = render.fit(blocks)
    assert len(out) == 100 and "holds 100 blocks" in out[-1]["elements"][0]["text"]

