"""How long Slack waits for the bot's ack of `/release request …`, against a Bolt app that only acks.

Sends N signed one-line `/release request …` slash commands over HTTP, `concurrency`
at a time, first to a bare Bolt app whose only listener calls ack(), then to the
real bot. Each runs in its own process, as in production: the bot is
`releasebot serve` itself (waitress, scheduler, migrations), the bare app is this
script in `--serve-bare` mode on waitress with the same Bolt settings. The load
generator and the Slack emulator share this process, standing in for Slack.
Prints p50/p99/max of send-to-response time for each and the bot/bare ratios.
Goal: bot p99 well under Slack's 3 s, p50 ratio of 2 or less.

Afterwards it waits (by polling the database, with a deadline) for the bot's
after-ack work and prints how many releases were written and how many
chat.postMessage calls the Slack emulator saw: the slow work must have happened,
only after the ack.

    .venv/bin/python benchmarks/ack_latency.py [--requests 400] [--concurrency 8] [--database-url URL]

Without --database-url a fresh SQLite file in a temporary directory is used. With
a PostgreSQL URL a scratch database is created next to the one named, and dropped
at the end.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py puts the repo and tests/ on the path
from common import ROOT, free_port, percentile, scratch_database  # noqa: E402

import waitress  # noqa: E402
from slack_bolt import App  # noqa: E402
from slack_bolt.adapter.wsgi import SlackRequestHandler  # noqa: E402
from slack_sdk import WebClient  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from slack_client import SlackClient  # noqa: E402
from slack_emulator import SlackEmulator  # noqa: E402
from storage.db import make_engine, normalise_url  # noqa: E402

SIGNING_SECRET = "bench-signing-secret"
CHANNEL = "C0RELEASES"
USER = "U0BENCH"
WARMUP = 20
WAITRESS_THREADS = 8  # what `releasebot serve` and the tests use
SETTLE_DEADLINE = 120.0  # seconds to wait for the bot's after-ack work


def request_text(i: int) -> str:
    day = 1 + i % 28
    return (f'request service=svc{i % 50} version=1.{i}.0 type=minor flags=feature start="2027-01-{day:02d} 14:00" '
            f'tz=Europe/London duration=60m summary="bench {i}"')


class Process:
    """A server in a child process, on 127.0.0.1 and a free port.

    Its stderr is read all along, by a thread of this process, and only its last lines are kept (`log`):
    a pipe nobody reads fills at 64 KiB and then blocks the child's next write, which stopped the servers
    in the middle of a burst (a waitress "Task queue depth" warning per queued request)."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int):
        self.port = port
        self.proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.log: deque[str] = deque(maxlen=200)
        self.lines = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 30
        while True:  # wait until it accepts connections
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self._reader.join(5)
                    raise RuntimeError(f"{argv} did not start: {''.join(self.log)[-2000:]}")
                time.sleep(0.05)

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.log.append(line)
            self.lines += 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()




def serve_bare(port: int, api_url: str) -> int:
    # Same Bolt settings as the bot (ack on the HTTP thread), so the ratio
    # measures what the bot adds, not a difference in Bolt configuration.
    app = App(signing_secret=SIGNING_SECRET, token_verification_enabled=False, process_before_response=True,
              client=WebClient(token="xoxb-test", base_url=api_url))

    @app.command("/release")
    def on_release(ack):
        ack()

    @app.action(re.compile(".*"))  # ack_burst.py clicks buttons too
    def on_click(ack):
        ack()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    waitress.serve(SlackRequestHandler(app), host="127.0.0.1", port=port, threads=WAITRESS_THREADS,
                   _quiet=True)
    return 0


def fire(url: str, emulator: SlackEmulator, first: int, count: int, concurrency: int) -> list[float]:
    """Send requests first..first+count-1, `concurrency` in flight; return each one's latency in ms."""
    local = threading.local()
    clients: list[SlackClient] = []
    lock = threading.Lock()

    def client() -> SlackClient:
        c = getattr(local, "client", None)
        if c is None:
            c = local.client = SlackClient(url, SIGNING_SECRET, emulator=emulator)
            with lock:
                clients.append(c)
        return c

    def one(i: int) -> float:
        c = client()
        trigger_id = f"bench.{i}.{uuid.uuid4().hex}"
        t0 = time.perf_counter()
        response = c.command(request_text(i), user=USER, channel=CHANNEL, trigger_id=trigger_id)
        elapsed = (time.perf_counter() - t0) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"request {i} to {url} answered {response.status_code}: {response.text[:200]}")
        return elapsed

    try:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bench-client") as pool:
            return list(pool.map(one, range(first, first + count)))
    finally:
        for c in clients:
            c.close()






def backend_name(url: str) -> str:
    return make_url(normalise_url(url)).get_backend_name()


def settle(db, expected: int) -> tuple[int, int, float]:
    """Poll until `expected` releases exist and the outbox is empty, or the deadline passes.
    Returns (releases, unsent announcements, seconds waited)."""
    t0 = time.monotonic()
    deadline = t0 + SETTLE_DEADLINE
    while True:
        with db.connect() as conn:
            releases = conn.execute(text("SELECT count(*) FROM release")).scalar_one()
            # announcements only: each request also queues an approval nudge, due hours later
            unsent = conn.execute(text("SELECT count(*) FROM outbox WHERE sent_at IS NULL "
                                       "AND kind <> 'reminder'")).scalar_one()
        if (releases >= expected and unsent == 0) or time.monotonic() > deadline:
            return releases, unsent, time.monotonic() - t0
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="measured requests per target (default 400)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight at a time (default 8)")
    parser.add_argument("--database-url", default=None,
                        help="sqlite:///path or postgresql://user@host:port/db (a scratch db is made beside it); "
                             "default: a fresh SQLite file in a temp dir")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--api-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare:
        return serve_bare(args.serve_bare, args.api_url)

    with ExitStack() as stack:
        url = scratch_database(args.database_url, stack)
        db = make_engine(url)
        stack.callback(db.dispose)

        emulator = SlackEmulator().start()
        stack.callback(emulator.stop)

        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "RELEASE"))},
               "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
               "SLACK_API_URL": emulator.api_url, "RELEASE_CHANNEL": CHANNEL, "DATABASE_URL": url}
        bot_port, bare_port = free_port(), free_port()
        bot = Process([sys.executable, "-m", "bot.cli", "serve"], {**env, "PORT": str(bot_port)}, bot_port)
        stack.callback(bot.close)
        bare = Process([sys.executable, __file__, "--serve-bare", str(bare_port), "--api-url", emulator.api_url],
                       env, bare_port)
        stack.callback(bare.close)

        # Warm-up (not counted): imports, connection pools, first-request paths.
        n, c = args.requests, args.concurrency
        fire(bare.url, emulator, 0, WARMUP, c)
        fire(bot.url, emulator, 0, WARMUP, c)
        settle(db, WARMUP)  # start both measured runs with the bot idle

        results = {"bare": fire(bare.url, emulator, WARMUP, n, c)}
        results["bot"] = fire(bot.url, emulator, WARMUP, n, c)

        releases, unsent, waited = settle(db, WARMUP + n)
        posts = emulator.calls_to("chat.postMessage")
        ok_posts = sum(1 for call in posts if call.ok)
        responses = len(emulator.calls_to("response_url"))

        db_name = backend_name(url)
        print(f"ack latency of /release request: {n} requests per target (+{WARMUP} warm-up), "
              f"concurrency {c}, each target its own process on waitress threads={WAITRESS_THREADS}, "
              f"database {db_name}")
        print(f"{'target':<8}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
        stats = {}
        for target in ("bot", "bare"):
            ms = results[target]
            stats[target] = (statistics.median(ms), percentile(ms, 99), max(ms))
            print(f"{target:<8}{len(ms):>6}{stats[target][0]:>10.1f}{stats[target][1]:>10.1f}{stats[target][2]:>10.1f}")
        print(f"ratio p50 bot/bare = {stats['bot'][0] / stats['bare'][0]:.2f}")
        print(f"ratio p99 = {stats['bot'][1] / stats['bare'][1]:.2f}")
        print(f"releases in database: {releases} (expected {WARMUP + n}); unsent announcements: {unsent}; "
              f"after-ack work settled {waited:.1f}s after the last ack")
        print(f"emulator saw {len(posts)} chat.postMessage calls ({ok_posts} ok) and {responses} response_url posts")
        goal_p99 = stats["bot"][1] < 3000
        goal_ratio = stats["bot"][0] / stats["bare"][0] <= 2
        print(f"goal: bot p99 < 3000 ms: {'yes' if goal_p99 else 'NO'}; p50 ratio <= 2: "
              f"{'yes' if goal_ratio else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
