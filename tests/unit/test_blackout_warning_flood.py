"""A dense subscribed calendar must not flood the channel with blackout warnings (issue 8, item 8)."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import select

from calendars.recurrence import Occurrence
from commands.blackout import MAX_WARNINGS, materialize
from storage.db import transaction
from storage.models import Blackout, Outbox


def _carrier(s, clock) -> Blackout:
    b = Blackout(name="Flood", start_local=datetime(2000, 1, 1), end_local=datetime(2000, 1, 2), tz="UTC",
                 services=[], environments=[], created_by="U0RM", created_at=clock.now())
    s.add(b)
    s.flush()
    return b


def _warnings(db) -> list[Outbox]:
    with transaction(db) as s:
        return [r for r in s.exec(select(Outbox)) if (r.payload or {}).get("reminder") == "blackout_warning"]


def test_back_to_back_minutely_events_are_one_warning(db, clock, policy):
    start = clock.now() + timedelta(days=2)
    occs = [(Occurrence(start + timedelta(minutes=i), start + timedelta(minutes=i + 1)), "Freeze")
            for i in range(600)]
    with transaction(db) as s:
        materialize(s, _carrier(s, clock), clock.now(), policy, occurrences=occs)
    [w] = _warnings(db)
    assert w.payload["start"] == start.isoformat()
    assert w.payload["end"] == (start + timedelta(minutes=600)).isoformat()


def test_separate_dense_events_are_capped(db, clock, policy):
    start = clock.now() + timedelta(days=2)
    occs = [(Occurrence(start + timedelta(minutes=2 * i), start + timedelta(minutes=2 * i + 1)), "Blip")
            for i in range(3000)]
    with transaction(db) as s:
        b = _carrier(s, clock)
        materialize(s, b, clock.now(), policy, occurrences=occs)
        materialize(s, b, clock.now(), policy, occurrences=occs)  # a refresh queues nothing more
    warned = _warnings(db)
    assert len(warned) == MAX_WARNINGS
    assert [w.payload["start"] for w in warned] == sorted(w.payload["start"] for w in warned)


def test_ordinary_blackouts_still_get_one_warning_each(db, clock, policy):
    start = clock.now() + timedelta(days=2)
    occs = [(Occurrence(start + timedelta(days=i), start + timedelta(days=i, hours=2)), "Nightly")
            for i in range(3)]
    with transaction(db) as s:
        materialize(s, _carrier(s, clock), clock.now(), policy, occurrences=occs)
    assert len(_warnings(db)) == 3
