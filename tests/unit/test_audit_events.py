"""Every audit event carries actor, action, a UTC timestamp equal to the clock's now, and before/after."""
from __future__ import annotations

from datetime import datetime, timedelta

from commands.classification import Answers
from commands.release import accept_misclassification, cancel_release, edit_release
from commands.vote import cast_vote, withdraw_vote
from conftest import START, actor
from unit_support import REQUESTER, dev, events, request

REFUSALS = {"vote_refused", "withdraw_refused", "edit_refused", "cancel_refused", "accept_misclassification_refused"}


def test_every_event_of_a_release_life(db, clock, policy):
    seen: dict[str, int] = {}
    last_id = 0

    def step(expect: list[tuple[str, str]], fn):
        """Move the clock, run one command, and check the events it wrote."""
        nonlocal last_id
        clock.advance(minutes=13, seconds=7)
        fn()
        new = [e for e in events(db) if e.id > last_id]
        assert [(e.action, e.actor) for e in new] == expect
        for e in new:
            assert e.release_id == 1
            assert e.at == clock.now()
            assert e.at.utcoffset() == timedelta(0)
            assert isinstance(e.before, dict) and isinstance(e.after, dict)
            if e.action in REFUSALS:
                assert e.before == {} and e.after["code"] and e.reason
            elif e.action == "requested":
                assert e.before == {} and e.after["state"] == "pending"
            else:
                assert e.before and e.after and e.before != e.after
            for side in (e.before, e.after):
                for key in ("start_at", "end_at"):
                    if key in side:  # stored as ISO-8601 UTC text
                        assert datetime.fromisoformat(side[key]).utcoffset() == timedelta(0)
            seen[e.action] = seen.get(e.action, 0) + 1
        last_id = max([last_id] + [e.id for e in new])

    rm, qa, group, el, sec = (actor(u) for u in ("U0RM", "U0QA", "U0QAGROUP", "U0EL", "U0SEC"))
    # feature + sensitive asked for as a patch: minor's and patch's approvers (+ security) apply
    step([("requested", REQUESTER), ("misclassified", REQUESTER)],
         lambda: request(db, clock, policy, type="patch", answers=Answers(feature=True, sensitive=True)))
    step([("vote_refused", REQUESTER)], lambda: cast_vote(db, dev(), 1, "go", clock))
    step([("vote_refused", "U0CAB1")], lambda: cast_vote(db, actor("U0CAB1"), 1, "go", clock))
    step([("accept_misclassification_refused", "U0QA")],
         lambda: accept_misclassification(db, qa, 1, "ok", clock, policy))
    step([("misclassification_accepted", "U0RM")],
         lambda: accept_misclassification(db, rm, 1, "config only", clock, policy))
    step([("vote_go", "U0EL")], lambda: cast_vote(db, el, 1, "go", clock))
    step([("vote_nogo", "U0QAGROUP")], lambda: cast_vote(db, group, 1, "nogo", clock, note="flaky"))
    step([("vote_go", "U0QA")], lambda: cast_vote(db, qa, 1, "go", clock))
    step([("vote_go", "U0SEC")], lambda: cast_vote(db, sec, 1, "go", clock))
    step([("vote_withdrawn", "U0QAGROUP"), ("approved", "U0QAGROUP")], lambda: withdraw_vote(db, group, 1, clock))
    step([("vote_nogo", "U0SEC"), ("approval_revoked", "U0SEC")],
         lambda: cast_vote(db, sec, 1, "nogo", clock, note="token leak"))
    step([("edit_refused", "U0QA")], lambda: edit_release(db, qa, 1, {"risk": "x"}, clock, policy))
    step([("edited", REQUESTER)], lambda: edit_release(db, dev(), 1, {"risk": "token scope"}, clock, policy))
    # the edit started a new round of votes
    step([("vote_nogo", "U0SEC")], lambda: cast_vote(db, sec, 1, "nogo", clock, note="still leaks"))
    step([("cancel_refused", "U0SEC")], lambda: cancel_release(db, sec, 1, "no", clock))
    step([("cancelled", "U0RM")], lambda: cancel_release(db, rm, 1, "replaced by REL-2", clock))
    step([("withdraw_refused", "U0SEC")], lambda: withdraw_vote(db, sec, 1, clock))  # its No-go is final

    assert clock.now() > START
    assert set(seen) >= {"requested", "misclassified", "misclassification_accepted", "vote_go", "vote_nogo",
                         "vote_withdrawn", "approved", "approval_revoked", "edited", "cancelled"} | REFUSALS
