"""Decisions taken at the same moment: a retried delivery, a double click, two approvers together.

Threads start together on a barrier; nothing sleeps. SQLite serialises with BEGIN IMMEDIATE,
PostgreSQL with SELECT … FOR UPDATE and the unique constraints.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from commands.vote import cast_vote
from conftest import actor
from unit_support import counts, events, new_release, outbox_keys, release, request, votes


def together(n: int, fn):
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait(timeout=10)
        return fn(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def test_duplicate_deliveries_of_one_request_create_one_release(db, clock, policy):
    outs = together(6, lambda i: request(db, clock, policy, request_key="view:V1"))
    assert sum(o.changed for o in outs) == 1
    # every delivery names the one release made; its id need not be 1 (on PostgreSQL a losing insert
    # still uses up a sequence number)
    assert len({o.release.id for o in outs}) == 1
    assert counts(db) == (1, 0, 1, 2)  # the approval post and the first nudge


def test_double_click_records_one_vote(db, clock, policy):
    rid = new_release(db, clock, policy)
    outs = together(6, lambda i: cast_vote(db, actor("U0QA"), rid, "go", clock))
    assert sum(o.changed for o in outs) == 1
    assert len(votes(db, rid)) == 1
    assert len(events(db, rid, "vote_go")) == 1


def test_two_last_approvers_together_approve_once(db, clock, policy):
    for day in range(1, 5):  # one day apart, so no release conflicts with another
        rid = new_release(db, clock, policy, start=f"2026-12-0{day} 14:00")
        outs = together(2, lambda i: cast_vote(db, actor(("U0RM", "U0QA")[i]), rid, "go", clock))
        assert all(o.changed for o in outs)
        assert [o.data["moved"] for o in outs].count("approved") == 1
        r = release(db, rid)
        assert r.state == "approved" and r.approval_seq == 1
        assert len(events(db, rid, "approved")) == 1
        assert [k for k in outbox_keys(db) if k.startswith(f"note:{rid}:approved")] == [f"note:{rid}:approved:1"]


def test_two_holders_of_one_seat_together_fill_it_once(db, clock, policy):
    rid = new_release(db, clock, policy)
    outs = together(2, lambda i: cast_vote(db, actor(("U0QA", "U0QAGROUP")[i]), rid, "go", clock))
    assert sorted((o.changed, o.refused) for o in outs) == [(False, True), (True, False)]
    assert len([v for v in votes(db, rid) if v.role == "qa_lead" and v.decision == "go"]) == 1
    assert len(events(db, rid, "vote_refused")) == 1
