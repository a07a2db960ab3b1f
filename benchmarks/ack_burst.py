"""Acks under a burst: 64 slash commands and button clicks at once, against the bot and a bare Bolt app.

Each round sends `--burst` signed requests at the same instant (a barrier releases
them together): a mix of one-line requests, `go` votes typed and clicked (the Go
button), and `show`. The bot is `releasebot serve` in its own process, the bare
app a Bolt app whose listeners only ack (ack_latency.py's), both on waitress.
Three scenarios, each against both targets in the same run:

1. plain: the Slack emulator answers at once;
2. slow Slack: every Web API call is answered 1 s late, so after-ack work piles up;
3. SQLite under write contention (SQLite only): another connection holds the write
   lock for 50 ms out of every 60 ms while the burst arrives.

Prints p50, p99 and max of send-to-response time per scenario and target, and how many
requests were answered after Slack's 3 s or not at all within the client's 10 s. Goal:
bot p99 < 300 ms, bot p50 within 2x the bare app's in the same scenario, none unanswered.

    .venv/bin/python benchmarks/ack_burst.py [--rounds 10] [--burst 64] [--database-url URL]
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py puts the repo and tests/ on the path
from ack_latency import CHANNEL, SIGNING_SECRET, Process, backend_name, settle  # noqa: E402
from common import free_port, percentile, scratch_database  # noqa: E402

import httpx  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from slack_client import SlackClient  # noqa: E402
from slack_emulator import SlackEmulator  # noqa: E402
from storage.db import make_engine, normalise_url  # noqa: E402

REQUESTER = "U0BENCHDEV"
VOTERS = [f"U0BENCHQA{i}" for i in range(40)]  # every voter is a qa_lead: each Go fills a role once
SEED_RELEASES = 16
SLACK_GIVES_UP_MS = 3000  # Slack shows the person an error, and retries, when no ack came within 3 s
CLIENT_TIMEOUT_MS = 10_000  # SlackClient's: past it a request counts as unanswered
POLICY = "[roles]\nqa_lead = [{}]\nrelease_manager = [\"U0BENCHRM\"]\n".format(
    ", ".join(f'"{v}"' for v in VOTERS))


def request_text(i: int) -> str:
    day = 1 + i % 28
    return (f'request service=burst{i % 40} version=2.{i}.0 type=minor flags=feature start="2027-02-{day:02d} 10:00" '
            f'tz=Europe/London duration=60m summary="burst {i}"')


def send(client: SlackClient, kind: str, i: int):
    """Request i of the mix, as Slack sends it; the response."""
    release = 1 + i % SEED_RELEASES
    voter = VOTERS[i % len(VOTERS)]
    if kind == "request":
        return client.command(request_text(10_000 + i), user=REQUESTER, channel=CHANNEL,
                              trigger_id=f"burst.{i}.{uuid.uuid4().hex}")
    if kind == "vote":
        return client.command(f"go REL-{release}", user=voter, channel=CHANNEL)
    if kind == "click":
        return client.block_action("vote_go", str(release), user=voter, channel=CHANNEL,
                                   message_ts=f"1700000000.{release:06d}")
    return client.command(f"show REL-{release}", user=voter, channel=CHANNEL)


def one(client: SlackClient, kind: str, i: int) -> float | None:
    """Send-to-response time in ms, or None when no answer came within the client's 10 s (Slack gives up
    after 3 s and retries; `row` counts both)."""
    t0 = time.perf_counter()
    try:
        r = send(client, kind, i)
    except httpx.TimeoutException:
        return None
    elapsed = (time.perf_counter() - t0) * 1000
    if r.status_code != 200:
        raise RuntimeError(f"{kind} {i} answered {r.status_code}: {r.text[:200]}")
    return elapsed


KINDS = ("request", "vote", "click", "show")


def burst(url: str, emulator: SlackEmulator, rounds: int, size: int, first: int) -> list[float | None]:
    clients = [SlackClient(url, SIGNING_SECRET, emulator=emulator) for _ in range(size)]
    out: list[float | None] = []
    try:
        with ThreadPoolExecutor(max_workers=size, thread_name_prefix="burst") as pool:
            for r in range(rounds):
                gate = threading.Barrier(size)

                def go(k: int, r=r, gate=gate) -> float | None:
                    gate.wait()
                    n = first + r * size + k
                    return one(clients[k], KINDS[k % len(KINDS)], n)

                out += pool.map(go, range(size))
                time.sleep(0.5)  # let the previous burst's responses drain: rounds are bursts, not a stream
    finally:
        for c in clients:
            c.close()
    return out


class WriteContention:
    """Another SQLite connection holding the write lock 50 ms out of every 60 ms."""

    def __init__(self, path: str):
        self.path, self.stop = path, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        while not self.stop.is_set():
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE seen_delivery SET key = key WHERE 0")
            time.sleep(0.05)
            conn.execute("COMMIT")
            time.sleep(0.01)
        conn.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def row(label: str, sent: list[float | None]) -> tuple[float, float, float, int]:
    """p50, p99 and max of the answered requests, and how many were late for Slack (over 3 s) or unanswered
    (over the client's 10 s): an unanswered request counts as one at the 10 s it was waited for."""
    unanswered = sum(1 for ms in sent if ms is None)
    ms = [CLIENT_TIMEOUT_MS if ms is None else ms for ms in sent]
    late = sum(1 for x in ms if x > SLACK_GIVES_UP_MS)
    p50, p99, mx = statistics.median(ms), percentile(ms, 99), max(ms)
    print(f"  {label:<6}{len(ms):>6}{p50:>10.1f}{p99:>10.1f}{mx:>10.1f}{late:>8}{unanswered:>12}")
    return p50, p99, mx, unanswered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="bursts per scenario and target (default 10)")
    parser.add_argument("--burst", type=int, default=64, help="requests released together (default 64)")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file in a temp dir")
    args = parser.parse_args(argv)

    with ExitStack() as stack:
        url = scratch_database(args.database_url, stack, "burst")
        db = make_engine(url)
        stack.callback(db.dispose)
        emulator = SlackEmulator().start()
        stack.callback(emulator.stop)
        policy = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "policy.toml"
        policy.write_text(POLICY)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "RELEASE"))},
               "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
               "SLACK_API_URL": emulator.api_url, "RELEASE_CHANNEL": CHANNEL, "DATABASE_URL": url,
               "RELEASE_POLICY": str(policy)}
        bot_port, bare_port = free_port(), free_port()
        bot = Process([sys.executable, "-m", "bot.cli", "serve"], {**env, "PORT": str(bot_port)}, bot_port)
        stack.callback(bot.close)
        bare = Process([sys.executable, str(Path(__file__).with_name("ack_latency.py")), "--serve-bare",
                        str(bare_port), "--api-url", emulator.api_url], env, bare_port)
        stack.callback(bare.close)

        # The releases the votes and shows name, and a warm-up of both targets.
        seed = SlackClient(bot.url, SIGNING_SECRET, emulator=emulator)
        for i in range(SEED_RELEASES):
            seed.command(request_text(i), user=REQUESTER, channel=CHANNEL, trigger_id=f"seed.{i}")
        seed.close()
        settle(db, SEED_RELEASES)
        burst(bare.url, emulator, 1, args.burst, 0)
        burst(bot.url, emulator, 1, args.burst, 0)

        sqlite_path = None
        parsed = make_url(normalise_url(url))
        if parsed.get_backend_name() == "sqlite":
            sqlite_path = parsed.database
        scenarios = [("plain", None), ("slow Slack (1 s per Web API call)", "slow")]
        if sqlite_path:
            scenarios.append(("SQLite write contention (lock held 50 of every 60 ms)", "contention"))
        print(f"ack latency under bursts of {args.burst} (requests, typed votes, Go clicks, shows), {args.rounds} "
              f"bursts per scenario and target, database {backend_name(url)}, {os.cpu_count()} CPUs")
        print(f"  {'target':<6}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'> 3 s':>8}{'unanswered':>12}")
        verdicts = []
        first = 1_000
        for label, mode in scenarios:
            print(label)
            results = {}
            with ExitStack() as scenario:
                if mode == "slow":
                    emulator.delay("*", 1.0)
                    scenario.callback(emulator.delay, "*", 0)
                if mode == "contention":
                    scenario.enter_context(WriteContention(sqlite_path))
                for target, server in (("bare", bare), ("bot", bot)):
                    results[target] = row(target, burst(server.url, emulator, args.rounds, args.burst, first))
                    first += args.rounds * args.burst
            ratio = results["bot"][0] / results["bare"][0]
            ok = results["bot"][1] < 300 and ratio <= 2 and not results["bot"][3]
            verdicts.append(ok)
            print(f"  bot/bare p50 ratio {ratio:.2f}; goal (bot p99 < 300 ms, ratio <= 2, none unanswered): "
                  f"{'yes' if ok else 'NO'}")
        with db.connect() as conn:
            releases = conn.execute(text("SELECT count(*) FROM release")).scalar_one()
        print(f"releases in the database afterwards: {releases}")
        print(f"goal met in every scenario: {'yes' if all(verdicts) else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
