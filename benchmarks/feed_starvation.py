"""Slash-command acks while calendar clients hammer a large feed.

Seeds a subscribed calendar with one hourly event (9,600 stored occurrences, the
issue's 2.5 MiB feed), starts `releasebot serve` in its own process, and runs 12
feed clients in parallel, each with its own person's token and its own
`service=` (so every render is a cache miss: the worst case), each fetching in a
loop without waiting. Meanwhile it sends signed `/release status` commands one
after another and measures each ack. Prints ack p50/p99/max and what the feed
clients were answered (200 renders, 503 render slots busy, 429 rate-limited).

    .venv/bin/python benchmarks/feed_starvation.py [--commands 20] [--feeds 12] [--database-url URL]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py puts the repo and tests/ on the path
from ack_latency import Process  # noqa: E402
from common import free_port, percentile, scratch_database  # noqa: E402

import httpx  # noqa: E402
from sqlalchemy import insert  # noqa: E402
from sqlmodel import Session  # noqa: E402

from bot.feed import token_for  # noqa: E402
from slack_client import SlackClient  # noqa: E402
from slack_emulator import SlackEmulator  # noqa: E402
from storage.db import make_engine  # noqa: E402
from storage.models import Blackout, BlackoutOccurrence, CalendarSubscription  # noqa: E402

SIGNING_SECRET = "bench-signing-secret"
FEED_SECRET = "bench-feed-secret"
CHANNEL = "C0RELEASES"
OCCURRENCES = 9600


def seed(url: str) -> None:
    db = make_engine(url)
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    with Session(db) as session:
        sub = CalendarSubscription(name="hourly", url="https://calendar.example.com/hourly.ics", created_by="U0RM",
                                   created_at=now, last_ok_at=now)
        session.add(sub)
        session.flush()
        carrier = Blackout(name="hourly", start_local=datetime(2000, 1, 1), end_local=datetime(2000, 1, 2),
                           tz="UTC", subscription_id=sub.id, created_by="U0RM", created_at=now)
        session.add(carrier)
        session.flush()
        rows = [{"blackout_id": carrier.id, "start_at": now + timedelta(hours=i),
                 "end_at": now + timedelta(hours=i, minutes=30), "summary": f"hourly check {i}",
                 "occurrence_start": now + timedelta(hours=i), "occurrence_end": now + timedelta(hours=i, minutes=30)}
                for i in range(OCCURRENCES)]
        session.execute(insert(BlackoutOccurrence), rows)
        session.commit()
    db.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=20)
    parser.add_argument("--feeds", type=int, default=12, help="parallel feed clients (default 12)")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        url = scratch_database(args.database_url, stack, label="feed")
        seed(url)
        emulator = SlackEmulator().start()
        stack.callback(emulator.stop)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "RELEASE"))},
               "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
               "SLACK_API_URL": emulator.api_url, "RELEASE_CHANNEL": CHANNEL, "DATABASE_URL": url,
               "RELEASEBOT_FEED_SECRET": FEED_SECRET}
        port = free_port()
        bot = Process([sys.executable, "-m", "bot.cli", "serve"], {**env, "PORT": str(port)}, port)
        stack.callback(bot.close)
        svc = SimpleNamespace(config=SimpleNamespace(feed_secret=FEED_SECRET, signing_secret=SIGNING_SECRET,
                                                     app_token=None))
        slack = stack.enter_context(SlackClient(bot.url, SIGNING_SECRET, emulator=emulator))
        slack.command("status", user="U0BENCH")  # warm-up: imports, pools

        stop, answers, lock = threading.Event(), Counter(), threading.Lock()

        def hammer(i: int) -> None:
            feed = f"{bot.url}/calendar.ics?token={token_for(svc, f'U0FEED{i}')}&service=svc{i}"
            with httpx.Client(timeout=120) as http:
                while not stop.is_set():
                    status = http.get(feed).status_code
                    with lock:
                        answers[status] += 1

        pool = stack.enter_context(ThreadPoolExecutor(max(1, args.feeds)))
        stack.callback(stop.set)  # runs before the pool's exit waits for the clients
        for i in range(args.feeds):
            pool.submit(hammer, i)
        time.sleep(0.5)  # let every feed client get its first request in
        acks, late = [], 0
        for _ in range(args.commands):
            t0 = time.perf_counter()
            try:
                status = slack.command("status", user="U0BENCH").status_code
            except httpx.TimeoutException:  # the client gives up after 10 s; Slack itself after 3 s
                status, late = 200, late + 1
            acks.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                raise RuntimeError(f"a command was answered {status}")
        stop.set()
        print(f"{args.commands} slash-command acks under {args.feeds} parallel feed clients "
              f"({OCCURRENCES} events, every render a cache miss)")
        print(f"ack p50 {statistics.median(acks):.0f} ms, p99 {percentile(acks, 99):.0f} ms, "
              f"max {max(acks):.0f} ms; over 3 s (Slack gives up): {sum(a > 3000 for a in acks)}; "
              f"no answer within 10 s: {late}")
        print("slowest acks (command number: ms): " + ", ".join(
            f"{i + 1}: {ms:.0f}" for i, ms in sorted(enumerate(acks), key=lambda x: -x[1])[:5]))
        print("feed answers: " + ", ".join(f"{n}x {s}" for s, n in sorted(answers.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
