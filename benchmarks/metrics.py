"""The KPIs for a quarter over 100k deployments (issue 13: under 1 s on SQLite and PostgreSQL).

Loads `--deployments` production deployments started in 2026-Q3 (40 services, outcomes 90% success,
6% rolled back, 4% failed; a rollback in a third of the successes' windows decided late), and as many
again outside the quarter (2025-2026, so the period filter has to work), each release with its approval
and two more audit events, 3% with one to three linked incidents, and an emergency release per 50
deployments. After ANALYZE it times commands.metrics.compute for the quarter, `--runs` times, without
and with explain, and prints the median and the slowest; the goal is judged on the slowest run without explain.

    .venv/bin/python benchmarks/metrics.py [--database-url URL] [--deployments 100000] [--runs 5] [--seed 1]

Without --database-url a fresh SQLite file in a temporary directory is used; with a PostgreSQL URL a
scratch database is created beside the one named, and dropped at the end.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py puts the repo and tests/ on the path
from common import scratch_database  # noqa: E402

from sqlalchemy import insert, text  # noqa: E402

from commands.metrics import compute  # noqa: E402
from commands.policy import Policy  # noqa: E402
from storage.db import make_engine  # noqa: E402
from storage.models import AuditEvent, Deployment, Incident, Release  # noqa: E402

UTC = timezone.utc
Q3, Q4 = datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC)


def load(engine, n: int, rng: random.Random) -> None:
    services = [f"svc-{i}" for i in range(40)]
    rid = 0
    for lo, hi, count in ((Q3, Q4, n), (datetime(2025, 7, 1, tzinfo=UTC), Q3, n // 2),
                          (Q4, datetime(2027, 1, 1, tzinfo=UTC), n - n // 2)):
        span = (hi - lo).total_seconds()
        for chunk in range(0, count, 5000):
            rels, deps, events, incidents = [], [], [], []
            for _ in range(min(5000, count - chunk)):
                rid += 1
                started = lo + timedelta(seconds=rng.random() * span)
                emergency = rid % 50 == 0
                kind = "emergency" if emergency else rng.choice(("minor", "patch", "major", "infrastructure"))
                requested = started - timedelta(hours=rng.uniform(1, 200))
                rels.append(dict(id=rid, service=rng.choice(services), version="1", environment="production",
                                 requested_type=kind, derived_type=kind, effective_type=kind, classification_answered=True,
                                 answers={}, misclassified=False, required_roles={}, start_at=started,
                                 end_at=started + timedelta(hours=1), tz="UTC", duration_minutes=60, summary="s",
                                 requester_id="U0DEV", state="closed", round=1, approval_seq=1, revision=1,
                                 created_at=requested, updated_at=started))
                finished = started + timedelta(minutes=rng.uniform(5, 90))
                roll = rng.random()
                dep = dict(release_id=rid, deployer_id="U0OPS", checklist={}, started_at=started, finished_at=finished,
                           outcome="success", manual=False, forced=False, package_complete=rng.random() < 0.9,
                           commit_time=started - timedelta(hours=rng.uniform(0.5, 72)), rollback_decided_at=None,
                           restored_at=None, stabilisation_ends_at=finished + timedelta(hours=2))
                if roll < 0.06:
                    dep.update(outcome="rolled_back", rollback_decided_at=finished + timedelta(minutes=rng.uniform(1, 200)))
                    dep["restored_at"] = dep["finished_at"] = dep["rollback_decided_at"] + timedelta(minutes=rng.uniform(3, 30))
                elif roll < 0.10:
                    dep.update(outcome="failed", stabilisation_ends_at=None)
                deps.append(dep)
                for action, at in (("requested", requested), ("approved", requested + timedelta(hours=rng.uniform(0.2, 8))),
                                   ("deployment_started", started)):
                    events.append(dict(release_id=rid, actor="U0RM", action=action, at=at, before={}, after={}))
                if rng.random() < 0.03:
                    for k in range(rng.randint(1, 3)):
                        opened = finished + timedelta(minutes=rng.uniform(1, 300))
                        incidents.append(dict(key=f"INC-{rid}-{k}", service="svc", opened_at=opened,
                                              resolved_at=opened + timedelta(minutes=rng.uniform(5, 600)), severity="P2",
                                              caused_by_release_id=rid, reported_by="pipeline:pd", recorded_at=opened,
                                              updated_at=opened))
            with engine.begin() as conn:
                conn.execute(insert(Release), rels)
                conn.execute(insert(Deployment), deps)
                conn.execute(insert(AuditEvent), events)
                if incidents:
                    conn.execute(insert(Incident), incidents)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT setval('release_id_seq', (SELECT max(id) FROM release))"))
        conn.execute(text("ANALYZE"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("RELEASEBOT_BENCH_DATABASE_URL"))
    parser.add_argument("--deployments", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    policy = Policy.default()
    with ExitStack() as stack:
        url = scratch_database(args.database_url, stack, "metrics")
        engine = make_engine(url)
        stack.callback(engine.dispose)
        t0 = time.perf_counter()
        load(engine, args.deployments, random.Random(args.seed))
        print(f"{engine.dialect.name}: loaded {2 * args.deployments} deployments ({args.deployments} in 2026-Q3) "
              f"in {time.perf_counter() - t0:.0f} s")
        slowest = {}
        for explain in (False, True):
            times, cpu = [], []
            for _ in range(args.runs):
                t, c = time.perf_counter(), time.process_time()
                report = compute(engine, Q3, Q4, policy=policy, explain=explain)
                times.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)  # this process only: SQLite's work, not PostgreSQL's
            cfr = report.figure("change_failure_rate")
            print(f"  compute(2026-Q3{', explain' if explain else ''}): median {statistics.median(times) * 1000:.0f} ms, "
                  f"slowest {max(times) * 1000:.0f} ms over {args.runs} runs; this process's CPU median "
                  f"{statistics.median(cpu) * 1000:.0f} ms; load average {os.getloadavg()[0]:.1f} "
                  f"(n={cfr.n}, CFR {cfr.text})")
            slowest[explain] = max(times)
        goal = slowest[False] < 1.0  # the figures; --explain lists every release besides, and is not held to it
        print("  goal under 1 s: " + ("met" if goal else "NOT met"))
    return 0 if goal else 1


if __name__ == "__main__":
    sys.exit(main())
