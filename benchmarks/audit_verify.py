"""How long `releasebot audit verify` takes on a long log, and what the hash chain costs each write.

Fills a fresh database with N chained audit events (default 100,000, shaped like the bot's: a vote's
before/after and a reason), then times:
- audit_chain.verify, in this process (the walk alone), and
- `releasebot audit verify` as a subprocess (what an operator waits for: start-up, schema check, walk);
then the write side: W one-event transactions through storage.audit.record (head locked, hashed, head
moved) against the same inserts without the chain (seq from a counter, no head, no hash).

    .venv/bin/python benchmarks/audit_verify.py [--database-url URL] [--events N] [--writes W]

Without --database-url a fresh SQLite file in a temporary directory is used; with a PostgreSQL URL a
scratch database is made beside it and dropped at the end.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py puts the repo and tests/ on the path
from common import ROOT, scratch_database  # noqa: E402

from storage import audit, audit_chain  # noqa: E402
from storage.db import make_engine, transaction  # noqa: E402
from storage.models import AuditEvent  # noqa: E402

START = datetime(2026, 11, 23, 9, tzinfo=timezone.utc)


def shaped(i: int) -> dict:
    return dict(release_id=None, actor=f"U0{i % 97:04d}", action="vote_go", at=START + timedelta(seconds=i),
                reason=f"looks good, load test {i} passed", before={"state": "pending", "votes": i % 5},
                after={"state": "pending", "votes": i % 5 + 1, "role": "qa_lead", "note": "fine"})


def fill(engine, n: int) -> None:
    """Chained exactly as audit.record chains them, but inserted in bulk (filling is not what is measured)."""
    table, head = AuditEvent.__table__, audit_chain.GENESIS
    rows = []
    for i in range(1, n + 1):
        fields = shaped(i)
        h = audit_chain.event_hash(seq=i, prev_hash=head, **fields)
        rows.append({**fields, "seq": i, "prev_hash": head, "hash": h})
        head = h
        if len(rows) == 5000 or i == n:
            with engine.begin() as conn:
                conn.execute(table.insert(), rows)
            rows = []
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE audit_chain_head SET seq = {n}, hash = '{head}'")


def writes(engine, w: int, first_seq: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    for i in range(w):
        with transaction(engine) as s:
            audit.record(s, **shaped(i))
    chained = (time.perf_counter() - t0) / w
    table = AuditEvent.__table__
    t0 = time.perf_counter()
    for i in range(w):
        with transaction(engine) as s:
            s.execute(table.insert().values(**shaped(i), seq=first_seq + w + i + 1000))
    plain = (time.perf_counter() - t0) / w
    return chained, plain


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=1000)
    args = parser.parse_args()
    with ExitStack() as stack:
        url = scratch_database(args.database_url, stack, "audit")
        engine = make_engine(url)
        stack.callback(engine.dispose)
        backend = engine.dialect.name
        t0 = time.perf_counter()
        fill(engine, args.events)
        print(f"{backend}: filled {args.events} chained events in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        result = audit_chain.verify(engine)
        walk = time.perf_counter() - t0
        assert result.ok and result.count == args.events, result
        print(f"{backend}: audit_chain.verify walked {result.count} events in {walk:.2f} s "
              f"({result.count / walk:,.0f} events/s)")
        env = {**os.environ, "DATABASE_URL": url}
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "bot.cli", "audit", "verify"], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        cli = time.perf_counter() - t0
        assert done.returncode == 0, done.stdout + done.stderr
        print(f"{backend}: `releasebot audit verify` on {args.events} events: {cli:.2f} s wall, start-up included")
        chained, plain = writes(engine, args.writes, args.events)
        print(f"{backend}: one-event transaction: {chained * 1e3:.2f} ms chained, {plain * 1e3:.2f} ms without the "
              f"chain ({(chained - plain) * 1e3:+.2f} ms for the head lock, hash and head update; {args.writes} each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
