"""Planning checks, the free-slot search and the ICS feed against a large calendar.

Loads `--releases` releases (200 services, starts spread over the next 180 days,
durations 30–240 min, mostly pending/approved, some cancelled) with bulk Core
inserts, and `--blackouts` recurring blackouts in several IANA zones (some
scoped to services or an environment) expanded by commands.blackout.materialize,
the path `/release blackout add` takes. Then, after ANALYZE, it times over
`--samples` random requests (random service, production or staging, a start in
the next 180 days, 30–240 min):

1. commands.planning.check in a storage.db.transaction session, Policy.default()
   (lead time, blackouts, same-service conflicts, production's max_concurrent=1);
   goal: p99 under 20 ms. Each of its queries is also timed on its own.
2. commands.planning.next_free_slots(count=3) on the same data, for the first
   `--slot-samples` of those requests, from each request's start on, in the default
   working hours (Mon-Fri 09:00-17:00) of a release in Europe/London; goal: p99 under 50 ms.
3. The ICS export: commands.agenda.feed_events + calendars.ics.feed over a second,
   separate database holding exactly `--feed-events` releases in the feed's horizon
   (goal: under 1 s, the first run in the process included), and feed_revision, the query
   a warm 304 makes.
4. The warm 304 itself: `releasebot serve` in its own process on that database (the Slack
   emulator in this one), one GET of the feed (a render), then `--conditional-gets`
   GETs with its ETag in If-None-Match, each with another person's token (one token may
   fetch three times a minute), over one keep-alive connection; goal: under 10 ms.

    .venv/bin/python benchmarks/calendar_checks.py [--database-url URL] [--releases 100000] [--blackouts 500] \
        [--samples 300] [--slot-samples 100] [--feed-events 10000] [--conditional-gets 200] [--seed 1]

Without --database-url fresh SQLite files in a temporary directory are used. With
a PostgreSQL URL scratch databases are created next to the one named, and dropped
at the end.
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
from types import SimpleNamespace
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py puts the repo and tests/ on the path
from ack_latency import Process  # noqa: E402
from common import free_port, percentile, scratch_database  # noqa: E402

import httpx  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from bot.feed import token_for  # noqa: E402
from calendars import ics  # noqa: E402
from commands import agenda  # noqa: E402
from commands.blackout import materialize  # noqa: E402
from commands.planning import blackouts_over, check, next_free_slots, releases_over  # noqa: E402
from commands.policy import RELEASE_TYPES, Policy  # noqa: E402
from commands.states import APPROVED, CANCELLED, PENDING, SCHEDULED  # noqa: E402
from storage.db import make_engine, transaction  # noqa: E402
from slack_emulator import SlackEmulator  # noqa: E402
from storage.models import Blackout, BlackoutOccurrence, Outbox, Release  # noqa: E402

UTC = timezone.utc
WARMUP = 20
SLOT_WARMUP = 3
CHUNK = 5000
SERVICES = [f"svc-{i:03d}" for i in range(200)]
REQUEST_ENVS = ("production", "staging")
# where the stored releases run; requests only target production and staging
RELEASE_ENVS, RELEASE_ENV_WEIGHTS = ("production", "staging", "qa", "development"), (45, 35, 15, 5)
STATES, STATE_WEIGHTS = (PENDING, APPROVED, CANCELLED), (55, 38, 7)
ZONES = ("Europe/London", "America/New_York", "America/Los_Angeles", "Europe/Berlin", "Asia/Tokyo",
         "Australia/Sydney", "Asia/Kolkata", "UTC")
SPAN = timedelta(days=180)  # releases and requested starts fall in the next SPAN
QUARTER = timedelta(minutes=15)
DURATIONS = range(30, 241, 15)  # minutes
GOAL_P99_MS = 20.0
FEED_SECRET = "bench-feed-secret"
WARM_GETS = 5  # conditional GETs before the measured ones

# (name, rrule, weekday the first start falls on (Mon=0) or None, local start hour, length, weight)
BLACKOUT_KINDS = (
    ("Friday freeze", "FREQ=WEEKLY;BYDAY=FR", 4, 16, timedelta(hours=16), 25),
    ("Weekend freeze", "FREQ=WEEKLY;BYDAY=SA", 5, 0, timedelta(hours=48), 10),
    ("Weekly maintenance", "FREQ=DAILY;INTERVAL=7", None, 2, timedelta(hours=3), 20),
    ("Sprint demo", "FREQ=WEEKLY;INTERVAL=2;BYDAY=WE", 2, 14, timedelta(hours=2), 10),
    ("Peak hours", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH", 0, 11, timedelta(hours=1), 8),
    ("Nightly batch", "FREQ=DAILY", None, 1, timedelta(hours=2), 7),
    ("Payroll run", "FREQ=MONTHLY;BYMONTHDAY=25", None, 0, timedelta(hours=24), 8),
    ("Month-end close", "FREQ=MONTHLY;BYMONTHDAY=-1", None, 12, timedelta(hours=36), 7),
    ("Peak trading", "FREQ=YEARLY", None, 16, timedelta(days=17), 3),
    ("Migration freeze", None, None, 8, timedelta(days=3), 2),
)






def backend(db: Engine) -> str:
    with db.connect() as conn:
        if db.dialect.name == "postgresql":
            return "PostgreSQL " + conn.exec_driver_sql("SHOW server_version").scalar_one().split()[0]
        return "SQLite " + conn.exec_driver_sql("SELECT sqlite_version()").scalar_one()


def quarter_after(t: datetime, span: timedelta, rng: random.Random) -> datetime:
    return t + QUARTER * rng.randrange(int(span / QUARTER))


def load_releases(db: Engine, n: int, now: datetime, first: datetime, span: timedelta, rng: random.Random) -> None:
    """n releases starting in [first, first + span), in chunks of bulk Core inserts."""
    table = Release.__table__
    for lo in range(0, n, CHUNK):
        rows = []
        for i in range(lo, min(n, lo + CHUNK)):
            start = quarter_after(first, span, rng)
            minutes = rng.choice(DURATIONS)
            kind = rng.choice(RELEASE_TYPES)
            rows.append(dict(
                request_key=None, service=rng.choice(SERVICES), version=f"{1 + i % 9}.{i % 97}.{i}",
                environment=rng.choices(RELEASE_ENVS, RELEASE_ENV_WEIGHTS)[0], requested_type=kind,
                derived_type=kind, effective_type=kind, classification_answered=True, answers={},
                misclassified=False, required_roles={}, start_at=start, end_at=start + timedelta(minutes=minutes),
                tz=rng.choice(ZONES), duration_minutes=minutes, summary=f"bench release {i}",
                requester_id=f"U0DEV{i % 300:03d}", state=rng.choices(STATES, STATE_WEIGHTS)[0], round=1,
                approval_seq=0, revision=i % 3, created_at=now, updated_at=now))
        with db.begin() as conn:
            conn.execute(insert(table), rows)


def blackout_rows(n: int, now: datetime, rng: random.Random) -> list[Blackout]:
    kinds = BLACKOUT_KINDS
    weights = [k[5] for k in kinds]
    out = []
    for i in range(n):
        name, rrule, weekday, hour, length, _ = rng.choices(kinds, weights)[0]
        # first occurrence a few weeks back (a rule that has been running), or ahead for one-offs
        back = -rng.randrange(7, 60) if rrule else rng.randrange(1, 170)
        day = (now + timedelta(days=back)).date()
        if weekday is not None:
            day += timedelta(days=(weekday - day.weekday()) % 7)
        if name == "Peak trading":
            day = day.replace(month=12, day=18)
        start_local = datetime(day.year, day.month, day.day, hour)
        scope = rng.random()  # half apply everywhere, 30% to 1-5 services, 20% to one environment
        services = rng.sample(SERVICES, rng.randint(1, 5)) if 0.5 <= scope < 0.8 else []
        environments = [rng.choice(REQUEST_ENVS)] if scope >= 0.8 else []
        out.append(Blackout(name=f"{name} {i}", start_local=start_local, end_local=start_local + length,
                            tz=rng.choice(ZONES), rrule=rrule, services=services, environments=environments,
                            created_by="U0RM", created_at=now))
    return out


def load_blackouts(db: Engine, n: int, now: datetime, policy: Policy, rng: random.Random) -> None:
    rows = blackout_rows(n, now, rng)
    for lo in range(0, n, 50):  # the real path is one per transaction; 50 keeps the load quick
        with transaction(db) as session:
            batch = rows[lo:lo + 50]
            session.add_all(batch)
            session.flush()
            for b in batch:
                materialize(session, b, now, policy)


def analyze(db: Engine) -> None:
    if db.dialect.name == "postgresql":
        # VACUUM as well: it sets the visibility map, as autovacuum does on a running server, and without it
        # an index-only scan visits the heap for every row (the planner then prefers a bitmap scan: 33 ms
        # instead of 8 ms for production's windows). This machine's server runs with autovacuum off.
        with db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
        return
    with db.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    if db.dialect.name == "sqlite":  # fold the load out of the WAL, as a running bot's database would be
        raw = db.raw_connection()  # outside any transaction (the engine's connections BEGIN IMMEDIATE)
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            raw.close()


def count(db: Engine, *where, table=Release) -> int:
    with db.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def requests(n: int, now: datetime, rng: random.Random) -> list[dict]:
    out = []
    for _ in range(n):
        start = quarter_after(now, SPAN, rng)
        out.append(dict(service=rng.choice(SERVICES), environment=rng.choice(REQUEST_ENVS),
                        release_type=rng.choice(RELEASE_TYPES), start=start,
                        end=start + timedelta(minutes=rng.choice(DURATIONS))))
    return out


def cpu_ms(pid: int) -> float:
    """The CPU time (user and system, all threads) process `pid` has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def conditional_gets(url: str, n: int) -> tuple[float, int, list[float], float]:
    """`releasebot serve` on the feed database `url`: the first GET's ms and size (a render), then n
    conditional GETs' ms, each answered 304, and the server process's CPU ms per conditional GET."""
    with ExitStack() as stack:
        emulator = SlackEmulator().start()
        stack.callback(emulator.stop)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "RELEASE"))},
               "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "bench-signing-secret",
               "SLACK_API_URL": emulator.api_url, "RELEASE_CHANNEL": "C0RELEASES", "DATABASE_URL": url,
               "RELEASEBOT_FEED_SECRET": FEED_SECRET}
        port = free_port()
        bot = Process([sys.executable, "-m", "bot.cli", "serve"], {**env, "PORT": str(port)}, port)
        stack.callback(bot.close)
        secrets = SimpleNamespace(config=SimpleNamespace(feed_secret=FEED_SECRET, signing_secret=None,
                                                         app_token=None))
        http = stack.enter_context(httpx.Client(timeout=60))

        def get(i: int, etag: str | None = None) -> tuple[float, httpx.Response]:
            address = f"{bot.url}/calendar.ics?token={token_for(secrets, f'U0FEED{i:05d}')}"
            return timed(lambda: http.get(address, headers={"If-None-Match": etag} if etag else {}))

        first_ms, first = get(0)
        if first.status_code != 200:
            raise RuntimeError(f"the feed answered {first.status_code}")
        out = []
        for i in range(1, WARM_GETS + n + 1):
            if i == WARM_GETS + 1:
                cpu_before = cpu_ms(bot.proc.pid)
            ms, answer = get(i, first.headers["ETag"])
            if answer.status_code != 304:
                raise RuntimeError(f"a conditional GET was answered {answer.status_code}")
            out.append(ms)
        return first_ms, len(first.content), out[WARM_GETS:], (cpu_ms(bot.proc.pid) - cpu_before) / n


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return (time.perf_counter() - t0) * 1000, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None,
                        help="sqlite:///path or postgresql://user@host:port/db (scratch dbs are made beside it); "
                             "default: fresh SQLite files in a temp dir")
    parser.add_argument("--releases", type=int, default=100_000, help="releases in the calendar (default 100000)")
    parser.add_argument("--blackouts", type=int, default=500, help="recurring blackouts (default 500)")
    parser.add_argument("--samples", type=int, default=300, help="measured random requests (default 300)")
    parser.add_argument("--slot-samples", type=int, default=100,
                        help="of those, how many also run the free-slot search (default 100)")
    parser.add_argument("--feed-events", type=int, default=10_000, help="events in the ICS export (default 10000)")
    parser.add_argument("--conditional-gets", type=int, default=200,
                        help="measured warm 304s from `releasebot serve` (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = parser.parse_args(argv)
    policy = Policy.default()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    rng = random.Random(args.seed)

    with ExitStack() as stack:
        url = scratch_database(args.database_url, stack, "checks")
        db = make_engine(url)
        stack.callback(db.dispose)

        # --- data ---------------------------------------------------------------------------------------------
        load_s, _ = timed(lambda: load_releases(db, args.releases, now, now, SPAN, rng))
        blackout_s, _ = timed(lambda: load_blackouts(db, args.blackouts, now, policy, rng))
        analyze_s, _ = timed(lambda: analyze(db))
        scheduled = count(db, Release.state.in_(SCHEDULED))
        production = count(db, Release.state.in_(SCHEDULED), Release.environment == "production")
        occurrences = count(db, table=BlackoutOccurrence)
        warnings = count(db, table=Outbox)
        print(f"calendar checks on {backend(db)}: seed {args.seed}, now {now:%Y-%m-%d %H:%M} UTC")
        print(f"data: {args.releases} releases ({scheduled} scheduled, {args.releases - scheduled} cancelled; "
              f"{production} scheduled in production) over the next {SPAN.days} days for {len(SERVICES)} services, "
              f"{args.blackouts} blackouts -> {occurrences} stored occurrences ({warnings} warnings queued)")
        print(f"load: releases {load_s / 1000:.1f} s (bulk insert, chunks of {CHUNK}), "
              f"blackouts {blackout_s / 1000:.1f} s (materialize), ANALYZE {analyze_s / 1000:.1f} s")

        # --- 1. planning checks ---------------------------------------------------------------------------------
        reqs = requests(WARMUP + args.samples, now, rng)
        warm, measured = reqs[:WARMUP], reqs[WARMUP:]

        def run_check(r: dict) -> tuple[float, float, list]:
            t0 = time.perf_counter()
            with transaction(db) as session:
                t1 = time.perf_counter()
                flags = check(session, policy, requested_at=now, **r)
                t2 = time.perf_counter()
            return (time.perf_counter() - t0) * 1000, (t2 - t1) * 1000, flags

        for r in warm:
            run_check(r)
        total_ms, check_ms, flagged = [], [], {"lead_time": 0, "blackout": 0, "conflict": 0}
        for r in measured:
            total, inner, flags = run_check(r)
            total_ms.append(total)
            check_ms.append(inner)
            for f in flags:
                flagged[f.kind] += 1

        # each query of check() on its own, same requests; the environment query only where check() makes it
        # (an environment with a max_concurrent limit: production in the default policy)
        parts: dict[str, list[float]] = {"blackouts_over": [], "releases_over service": [],
                                         "releases_over environment": []}
        rows_seen: dict[str, list[int]] = {k: [] for k in parts}
        for r in measured:
            s, e, service, env = r["start"], r["end"], r["service"], r["environment"]
            with transaction(db) as session:
                queries = [("blackouts_over", lambda: blackouts_over(session, s, e, service, env)),
                           ("releases_over service", lambda: releases_over(session, s, e, service=service))]
                if policy.calendar.max_concurrent.get(env):
                    queries.append(("releases_over environment",
                                    lambda: releases_over(session, s, e, environment=env)))
                for name, fn in queries:
                    ms, rows = timed(fn)
                    parts[name].append(ms)
                    rows_seen[name].append(len(rows))

        # --- 2. next free slots -------------------------------------------------------------------------------
        def run_slots(r: dict) -> tuple[float, list]:
            with transaction(db) as session:
                return timed(lambda: next_free_slots(session, policy, service=r["service"],
                                                     environment=r["environment"], release_type=r["release_type"],
                                                     duration=r["end"] - r["start"], now=now,
                                                     not_before=r["start"], tz="Europe/London", count=3))

        for r in warm[:SLOT_WARMUP]:
            run_slots(r)
        slot_ms, slots_found = [], {env: [] for env in REQUEST_ENVS}
        for r in measured[:args.slot_samples]:
            ms, found = run_slots(r)
            slot_ms.append(ms)
            slots_found[r["environment"]].append(len(found))

        # --- 3. ICS export ------------------------------------------------------------------------------------
        feed_url = scratch_database(args.database_url, stack, "feed")
        feed_db = make_engine(feed_url)
        stack.callback(feed_db.dispose)
        # all inside the feed's default horizon (now - 90 days .. now + 365 days), nothing else in that database
        feed_load_s, _ = timed(lambda: load_releases(feed_db, args.feed_events, now, now - timedelta(days=60),
                                                     timedelta(days=240), rng))
        analyze(feed_db)
        feed_runs = []
        for _ in range(3):  # the first also builds the zones' VTIMEZONEs, kept for the process's life
            events_ms, events = timed(lambda: agenda.feed_events(feed_db, now))
            ics_ms, body = timed(lambda: ics.feed(events))
            feed_runs.append((events_ms, ics_ms, len(events), len(body)))
        # what a warm conditional GET does before its 304: the revision (one query of aggregates)
        revision_ms = [timed(lambda: agenda.feed_revision(feed_db, now))[0] for _ in range(20)]

        # --- 4. warm 304s over HTTP -----------------------------------------------------------------------------
        served_ms, served_size, not_modified_ms, served_cpu = conditional_gets(feed_url, args.conditional_gets)

        # --- report ---------------------------------------------------------------------------------------------
        n = len(measured)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"\ntimings over {n} random requests (+{WARMUP} warm-up): service among {len(SERVICES)}, "
              f"environment production/staging, start in the next {SPAN.days} days, "
              f"{DURATIONS.start}-{DURATIONS.stop - 1} min; {os.cpu_count()} CPUs, load average {load:.2f}")
        print(f"{'what':<46}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'rows p50/max':>15}")

        def row(label: str, ms: list[float], rows: list[int] | None = None) -> None:
            extra = f"{statistics.median(rows):>9.0f}/{max(rows):<5}" if rows else ""
            print(f"{label:<46}{len(ms):>6}{statistics.median(ms):>10.2f}{percentile(ms, 99):>10.2f}"
                  f"{max(ms):>10.2f}{extra}")

        row("1. check(), transaction included", total_ms)
        row("   check() alone", check_ms)
        for name, ms in parts.items():
            row(f"     {name}", ms, rows_seen[name])
        row("2. next_free_slots(count=3), transaction incl.", slot_ms)
        print(f"flags raised over {n} checks: " + ", ".join(f"{k} {v}" for k, v in flagged.items()))
        print("slots found by next_free_slots (of 3): " + "; ".join(
            f"{env}: mean {statistics.mean(v):.2f} over {len(v)} searches" for env, v in slots_found.items() if v))

        events_ms, ics_ms, events, size = sorted(feed_runs, key=lambda x: x[0] + x[1])[1]  # median of 3 runs
        print(f"\n3. ICS export (separate database, {args.feed_events} releases loaded in {feed_load_s / 1000:.1f} s): "
              f"{events} events, median of 3 runs")
        print(f"   feed_events {events_ms:.0f} ms + ics.feed {ics_ms:.0f} ms = {events_ms + ics_ms:.0f} ms; "
              f"output {size} bytes ({size / 1024 / 1024:.1f} MiB); first run "
              f"{feed_runs[0][0] + feed_runs[0][1]:.0f} ms (VTIMEZONEs built)")
        print(f"   a warm 304's query (feed_revision): p50 {statistics.median(revision_ms):.1f} ms, "
              f"max {max(revision_ms):.1f} ms over {len(revision_ms)}")
        print(f"\n4. `releasebot serve` on that database: first GET {served_ms:.0f} ms ({served_size} bytes, "
              f"rendered); GET with If-None-Match -> 304 (+{WARM_GETS} warm-up):")
        row("   warm 304 over HTTP", not_modified_ms)
        print(f"   CPU of the `releasebot serve` process: {served_cpu:.1f} ms per conditional GET")

        print()
        for goal, value, limit in (("check() p99", percentile(total_ms, 99), GOAL_P99_MS),
                                   ("next_free_slots p99", percentile(slot_ms, 99), 50.0),
                                   ("first ICS export", feed_runs[0][0] + feed_runs[0][1], 1000.0),
                                   ("warm 304 p50", statistics.median(not_modified_ms), 10.0)):
            print(f"goal: {goal} < {limit:.0f} ms: {'yes' if value < limit else 'NO'} ({value:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
