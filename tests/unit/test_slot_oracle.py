"""The fast free-slot search gives exactly what yesterday's did (tests/unit/slot_oracle.py), on
hundreds of random calendars: fixed seeds, DST changes in several zones, deployment windows,
microsecond edges, touching and nested intervals, and calendars with no free slot at all."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, insert
from sqlmodel import Session

from calendars.windows import DeploymentWindows, free_slots, merge
from commands import planning
from commands.policy import Policy
from conftest import ROLES
from slot_oracle import oracle_free_slots, oracle_next_free_slots
from storage.models import Blackout, BlackoutOccurrence, Release

UTC = timezone.utc
ZONES = ["Europe/London", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC"]
# Both DST changes of 2026 in Europe and America, and Sydney's of April and October.
ANCHORS = [datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 10, 23, tzinfo=UTC),
           datetime(2026, 3, 6, tzinfo=UTC), datetime(2026, 10, 30, tzinfo=UTC),
           datetime(2026, 4, 2, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC)]


# Policy refuses windows that cross midnight, so a night's window is two: one up to 23:59, one from 00:00.
NEAR_MIDNIGHT = [("22:00", "23:59"), ("00:00", "02:00"), ("23:00", "23:59"), ("00:00", "00:45")]


def random_windows(rng: random.Random) -> DeploymentWindows | None:
    if rng.random() < 0.35:
        return None
    days = frozenset(rng.sample(range(7), rng.randint(1, 7)))
    if rng.random() < 0.25:
        start, end = (datetime.strptime(t, "%H:%M").time() for t in rng.choice(NEAR_MIDNIGHT))
        return DeploymentWindows(days, start, end, rng.choice(ZONES))
    open_h = rng.randint(0, 20)
    close_h = rng.randint(open_h + 1, 24) if open_h < 23 else 24
    start = datetime(2000, 1, 1, open_h, rng.choice([0, 30])).time()
    end = datetime(2000, 1, 1, min(close_h, 23), 59 if close_h == 24 else 0).time()
    if end <= start:
        end = datetime(2000, 1, 1, 23, 59).time()
    return DeploymentWindows(days, start, end, rng.choice(ZONES))


def random_busy(rng: random.Random, anchor: datetime, full: bool) -> list[tuple[datetime, datetime]]:
    busy = []
    n = rng.randint(0, 60) if not full else rng.randint(200, 400)
    span = timedelta(days=rng.choice([2, 10, 40]))
    for _ in range(n):
        if rng.random() < 0.5:  # on the quarter hour, where slots start: touching edges are exact
            s = anchor + timedelta(minutes=15 * rng.randint(-96, int(span.total_seconds()) // 900))
        else:
            s = anchor + timedelta(seconds=rng.randint(-86_400, int(span.total_seconds())),
                                   microseconds=rng.choice([0, 0, 1, 999_999, rng.randint(0, 999_999)]))
        e = s + timedelta(minutes=rng.choice([0, 15, 30, 45, 60, 90, 240, 600, 2000]))
        busy.append((s, e))
    if full:  # one stretch covering the whole horizon, in overlapping and touching pieces
        t = anchor - timedelta(days=1)
        while t < anchor + timedelta(days=100):
            step = timedelta(hours=rng.randint(1, 30))
            busy.append((t, t + step + timedelta(minutes=rng.choice([0, 0, 5]))))
            t += step
    rng.shuffle(busy)
    return busy


@pytest.mark.parametrize("seed", range(400))
def test_free_slots_match_the_oracle(seed):
    rng = random.Random(seed)
    anchor = rng.choice(ANCHORS)
    earliest = anchor + timedelta(minutes=rng.randint(0, 3000), microseconds=rng.choice([0, 1, 500_000]))
    duration = timedelta(minutes=rng.choice([15, 30, 45, 60, 90, 120, 240, 480]))
    busy = random_busy(rng, anchor, full=seed % 10 == 0)
    windows = random_windows(rng)
    kw = dict(count=rng.choice([1, 3, 5]), horizon=timedelta(days=rng.choice([1, 7, 90])),
              step=timedelta(minutes=rng.choice([5, 15, 60])))
    found = free_slots(earliest, duration, busy, windows, **kw)
    assert found == oracle_free_slots(earliest, duration, busy, windows, **kw)
    FOUND[seed] = len(found)


FOUND: dict[int, int] = {}


def test_the_random_calendars_are_not_all_empty_or_all_full():
    """The comparisons above mean something only if many calendars have slots and some have none."""
    if len(FOUND) < 400:
        for seed in range(400):
            test_free_slots_match_the_oracle(seed)
    with_slots = sum(1 for n in FOUND.values() if n)
    assert 200 < with_slots < 390


def test_a_full_calendar_finds_nothing_like_the_oracle():
    anchor = ANCHORS[0]
    busy = [(anchor - timedelta(days=1), anchor + timedelta(days=200))]
    assert free_slots(anchor, timedelta(hours=1), busy, None) == [] == oracle_free_slots(anchor, timedelta(hours=1),
                                                                                          busy, None)


def test_merge_joins_overlapping_and_touching_intervals_and_keeps_points():
    assert merge([(5, 7), (1, 3), (3, 4), (2, 3), (9, 9), (6, 8)]) == [(1, 4), (5, 8), (9, 9)]
    assert merge([("2026-12-01 10:00:00.000000", "2026-12-01 11:00:00.000000"),
                  ("2026-12-01 10:30:00.000000", "2026-12-01 12:00:00.000000")]) == [
        ("2026-12-01 10:00:00.000000", "2026-12-01 12:00:00.000000")]


def _policy(rng: random.Random) -> Policy:
    calendar: dict = {"max_concurrent": {"production": rng.choice([1, 1, 2, 3])}}
    if rng.random() < 0.5:
        start, end = rng.choice([(rng.choice(["08:00", "09:30", "13:00"]), rng.choice(["16:00", "18:00", "23:00"])),
                                 rng.choice(NEAR_MIDNIGHT)])
        calendar["windows"] = {"production": {"days": rng.choice(["Mon-Thu", "Mon-Fri", "Tue,Thu", "Mon-Sun"]),
                                              "start": start, "end": end, "tz": rng.choice(ZONES)}}
    if rng.random() < 0.3:  # other working hours, where no windows are set (staging, or production without)
        calendar["default_hours"] = {"days": rng.choice(["Mon-Fri", "Sun-Thu", "Mon-Sun"]),
                                     "start": rng.choice(["07:00", "09:00", "00:00"]),
                                     "end": rng.choice(["17:00", "19:30", "23:59"])}
    return Policy.from_mapping({"roles": ROLES, "calendar": calendar}, source="test policy")


def _fill(db, rng: random.Random, now: datetime) -> None:
    services = ["payments", "ledger", "search"]
    releases, occurrences = [], []
    for i in range(rng.randint(0, 250)):
        s = now + timedelta(minutes=rng.randint(-14 * 1440, 100 * 1440), microseconds=rng.choice([0, 0, 7]))
        e = s + timedelta(minutes=rng.choice([30, 60, 90, 240, 1440, 3 * 1440]))
        releases.append(dict(service=rng.choice(services), version="1", environment=rng.choice(
            ["production", "production", "staging"]), requested_type="minor", derived_type="minor",
            effective_type="minor", classification_answered=True, answers={}, misclassified=False,
            required_roles={}, start_at=s, end_at=e, tz="UTC", duration_minutes=int((e - s).total_seconds() // 60),
            summary="x", requester_id="U0DEV", state=rng.choice(["pending", "approved", "cancelled", "closed"]),
            round=1, approval_seq=0, revision=0, created_at=now, updated_at=now))
    with Session(db) as session:
        if releases:
            session.execute(insert(Release), releases)
        for b in range(rng.randint(0, 6)):
            blackout = Blackout(name=f"b{b}", start_local=now.replace(tzinfo=None), end_local=now.replace(tzinfo=None),
                                tz="UTC", services=rng.choice([[], ["payments"], ["ledger", "search"]]),
                                environments=rng.choice([[], ["production"], ["staging"]]), created_by="U0RM",
                                created_at=now, removed_at=now if rng.random() < 0.2 else None)
            session.add(blackout)
            session.flush()
            for _ in range(rng.randint(1, 40)):
                s = now + timedelta(hours=rng.randint(-30 * 24, 100 * 24))
                occurrences.append(dict(blackout_id=blackout.id, start_at=s,
                                        end_at=s + timedelta(hours=rng.choice([1, 8, 48, 24 * 20]))))
        if occurrences:
            session.execute(insert(BlackoutOccurrence), occurrences)
        session.commit()


@pytest.mark.parametrize("seed", range(30))
def test_next_free_slots_match_the_oracle_on_random_calendars(db, seed):
    rng = random.Random(1000 + seed)
    now = rng.choice(ANCHORS) + timedelta(minutes=rng.randint(0, 2000))
    _fill(db, rng, now)
    policy = _policy(rng)
    for _ in range(8):
        later = now + timedelta(minutes=rng.randint(0, 20_000), microseconds=rng.choice([0, 3]))
        kw = dict(service=rng.choice(["payments", "ledger", "search", "other"]),
                  environment=rng.choice(["production", "staging"]),
                  release_type=rng.choice(["patch", "minor", "security", "emergency"]),
                  duration=timedelta(minutes=rng.choice([30, 60, 90, 240])), now=now,
                  not_before=rng.choice([None, now - timedelta(days=1), later]),
                  tz=rng.choice(ZONES), exclude=rng.choice([None, 1, 5]), count=rng.choice([1, 3]))
        with Session(db) as session:
            fast = planning.next_free_slots(session, policy, **kw)
            slow = oracle_next_free_slots(session, policy, **kw)
        assert fast == slow, kw
        DB_FOUND.append(len(fast))


DB_FOUND: list[int] = []


def test_the_random_databases_give_slots_and_sometimes_none(db):
    """As above: the database comparisons mean something only if most searches find slots and some do not."""
    if len(DB_FOUND) < 30 * 8:
        DB_FOUND.clear()
        for seed in range(30):
            with Session(db) as session:  # each seed its own calendar, as when run one test at a time
                for table in (BlackoutOccurrence, Blackout, Release):
                    session.execute(delete(table))
                session.commit()
            test_next_free_slots_match_the_oracle_on_random_calendars(db, seed)
    found = sum(1 for n in DB_FOUND if n)
    assert len(DB_FOUND) // 2 < found < len(DB_FOUND)


def _dense_production(db, rng: random.Random, now: datetime) -> datetime:
    """Production packed for days: windows back to back, overlapping and nested, with gaps of 0-90
    minutes on the quarter hour, so some gaps fit a slot exactly and most fit none."""
    rows, t = [], now - timedelta(days=2)
    for _ in range(rng.randint(150, 500)):
        length = timedelta(minutes=rng.choice([15, 30, 45, 60, 120, 240]))
        rows.append((t, t + length))
        if rng.random() < 0.2:  # one nested inside, or overlapping its end
            inner = t + timedelta(minutes=rng.choice([0, 15]))
            rows.append((inner, inner + timedelta(minutes=rng.choice([15, 30, 300]))))
        t += length + timedelta(minutes=rng.choice([0, 0, 0, 15, 30, 30, 45, 60, 90]))
    with Session(db) as session:
        session.execute(insert(Release), [dict(
            service=rng.choice(["payments", "ledger"]), version="1", environment="production",
            requested_type="minor", derived_type="minor", effective_type="minor", classification_answered=True,
            answers={}, misclassified=False, required_roles={}, start_at=s, end_at=e, tz="UTC",
            duration_minutes=int((e - s).total_seconds() // 60), summary="x", requester_id="U0DEV",
            state=rng.choice(["pending", "approved", "approved", "cancelled"]), round=1, approval_seq=0, revision=0,
            created_at=now, updated_at=now) for s, e in rows])
        session.commit()
    return max(e for _, e in rows)


@pytest.mark.parametrize("seed", range(40))
def test_next_free_slots_match_the_oracle_on_densely_packed_production(db, seed):
    """The database finds production's gaps (one at a time): a gap exactly a slot long must still be found,
    the stretch after the last long gap must still be busy, and cancelled windows must not count."""
    rng = random.Random(5000 + seed)
    now = rng.choice(ANCHORS).replace(hour=9)
    packed_until = _dense_production(db, rng, now)
    policy = Policy.from_mapping({"roles": ROLES, "calendar": {"max_concurrent": {"production": 1},
                                                               "default_hours": {"days": "Mon-Sun", "start": "00:00",
                                                                                 "end": "23:59"}}},
                                 source="test policy")
    for _ in range(6):
        kw = dict(service=rng.choice(["payments", "ledger", "other"]), environment="production",
                  release_type=rng.choice(["patch", "security", "emergency"]),
                  duration=timedelta(minutes=rng.choice([15, 30, 45, 60, 90])), now=now,
                  not_before=rng.choice([now + timedelta(minutes=15 * rng.randint(0, 400)),  # inside, or its tail
                                         packed_until - timedelta(minutes=15 * rng.randint(0, 40))]), tz="UTC",
                  exclude=rng.choice([None, 3]), count=3)
        with Session(db) as session:
            fast = planning.next_free_slots(session, policy, **kw)
            slow = oracle_next_free_slots(session, policy, **kw)
        assert fast == slow, kw
