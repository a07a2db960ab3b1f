"""App Home for a release manager with 200 live releases: read the view model and render the tab.

Goal (issue 13): under 200 ms. The database holds 200 live releases (a third approved, every 5th with a
planning flag, every 11th with a No-go), 1,000 closed ones of history with their votes, an open task on
every 4th live release, a non-conformance on every 9th and 8 blackouts. Each sample is what an
app_home_opened does once its one-minute cache has expired: commands.home.home_view (one read
transaction), this week's metrics through bot.home_metrics, and bot.messages.home.home_view, for a
release manager who also holds every other role (so every section is drawn). Prints p50/p99 of the
wall clock and of this process's CPU time (on a shared machine the wall clock mostly measures the others).

    .venv/bin/python benchmarks/app_home.py [--samples 200] [--database-url postgresql://…/test]
"""
from __future__ import annotations

import argparse
import os
import time
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone

from common import percentile, scratch_database  # noqa: I001  (puts the project on sys.path)

from sqlmodel import Session

from commands.clock import FixedClock
from commands.home import home_view
from commands.outcome import Actor
from commands.policy import ROLES, Policy
from storage.db import make_engine
from storage.models import Blackout, BlackoutOccurrence, NonConformance, Release, ReleaseFlag, Task, Vote

from bot.home_metrics import this_week
from bot.messages import home as render

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
VIEWER = "U0RM"


def seed(engine, live: int = 200, history: int = 1000) -> None:
    with Session(engine) as s:
        rows = []
        for i in range(live + history):
            old = i >= live
            start = NOW - timedelta(days=i) if old else NOW + timedelta(hours=i - 3)
            rows.append(Release(service=f"svc{i % 40}", version=f"1.{i}", environment="production",
                                requested_type="minor", derived_type="minor", effective_type="minor",
                                required_roles={"release_manager": 1, "qa_lead": 1}, start_at=start,
                                end_at=start + timedelta(hours=1), tz="UTC", duration_minutes=60,
                                summary="Add refunds " * 20, requester_id=VIEWER if i % 10 == 0 else f"U0DEV{i % 30}",
                                state="closed" if old else ("approved" if i % 3 == 0 else "pending"),
                                created_at=NOW, updated_at=NOW))
        s.add_all(rows)
        s.flush()
        for i, r in enumerate(rows, 1):
            if i > live:
                s.add(Vote(release_id=r.id, round=1, voter_id="U0QA", role="qa_lead", decision="go", decided_at=NOW))
                continue
            if i % 5 == 0:
                s.add(ReleaseFlag(release_id=r.id, kind="lead_time", detail="inside the 7-day lead time", raised_at=NOW))
            if i % 11 == 0:
                s.add(Vote(release_id=r.id, round=1, voter_id="U0QA", role="qa_lead", decision="nogo",
                           note="load test failed", decided_at=NOW))
            if i % 4 == 0:
                s.add(Task(release_id=r.id, kind="followup", due_at=NOW - timedelta(hours=i % 48 - 24),
                           created_at=NOW))
            if i % 9 == 0:
                s.add(NonConformance(release_id=r.id, kind="deferred_step_overdue", subject=f"s{r.id}",
                                     detail="the change request was recorded late", reported_by="releasebot", at=NOW))
        for b in range(8):
            bo = Blackout(name=f"Freeze {b}", start_local=datetime(2026, 12, 1 + b), end_local=datetime(2026, 12, 2 + b),
                          tz="UTC", created_by=VIEWER, created_at=NOW)
            s.add(bo)
            s.flush()
            start = NOW + timedelta(days=8 + b)
            s.add(BlackoutOccurrence(blackout_id=bo.id, start_at=start, end_at=start + timedelta(days=1)))
        s.commit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        url = scratch_database(args.database_url, stack, label="home")
        engine = make_engine(url)
        stack.callback(engine.dispose)
        seed(engine)
        policy = Policy.from_mapping({"roles": {r: [VIEWER] for r in ROLES}}, source="benchmark")
        clock, actor = FixedClock(NOW), Actor(VIEWER, frozenset(ROLES))
        times, cpu, blocks = [], [], 0
        for _ in range(args.samples + 5):
            t0, c0 = time.perf_counter(), time.process_time()
            model = home_view(engine, actor, clock, policy)
            view = render.home_view(model, this_week(engine, NOW, policy))
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
            blocks = len(view["blocks"])
        times, cpu = times[5:], cpu[5:]  # the first few warm the pool and SQLAlchemy's statement cache
        print(f"database: {engine.dialect.name}; live releases: {len(model.to_vote.items) + len(model.cannot_vote.items)}"
              f"; blocks: {blocks}")
        print(f"App Home (read + render), {args.samples} samples: p50 {percentile(times, 50):.1f} ms, "
              f"p99 {percentile(times, 99):.1f} ms (goal < 200 ms); this process's CPU: "
              f"p50 {percentile(cpu, 50):.1f} ms, p99 {percentile(cpu, 99):.1f} ms")
        print(f"load average while it ran: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
