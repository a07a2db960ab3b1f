"""What one ack costs in CPU: the bot's WSGI app and a bare Bolt app's, called in this process, one at a time.

ack_burst.py measures acks under a burst, where 64 of them share one interpreter and
the time each one waits is mostly the others' CPU. This measures that CPU itself:
the thread CPU time of each request, from the WSGI call to the last byte of the
answer, per kind of request (the burst's mix: one-line requests, typed `go` votes,
Go clicks, `show`), for the bot's app (signature check, replay guard, listeners'
ack halves, the inbox row) and for ack_latency.py's bare app. After-ack work is not
run (its executor drops it), so nothing else competes for the interpreter.

    .venv/bin/python benchmarks/ack_cpu.py [--requests 400] [--database-url URL] [--profile out.pstats]

--profile writes cProfile's figures for the bot's acks (all kinds) to that file and
prints the top of them by cumulative time.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import Executor, Future
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py puts the repo and tests/ on the path
from ack_burst import KINDS, POLICY, send  # noqa: E402
from ack_latency import CHANNEL, SIGNING_SECRET, backend_name  # noqa: E402
from common import scratch_database  # noqa: E402

import httpx  # noqa: E402
from slack_bolt import App  # noqa: E402
from slack_bolt.adapter.wsgi import SlackRequestHandler  # noqa: E402
from slack_sdk import WebClient  # noqa: E402

from slack_client import SlackClient  # noqa: E402
from slack_emulator import SlackEmulator  # noqa: E402
from storage.db import make_engine  # noqa: E402

class Dropping(Executor):
    """The listener executor, for acks only: after-ack work is counted, never run."""

    def __init__(self):
        self.dropped = 0

    def submit(self, fn, /, *args, **kwargs):
        self.dropped += 1
        future: Future = Future()
        future.set_result(None)
        return future


class Timed:
    """A WSGI app whose every call's thread CPU time (and wall time) is kept, answer included."""

    def __init__(self, app):
        self.app, self.cpu, self.wall = app, [], []

    def __call__(self, environ, start_response):
        c0, w0 = time.thread_time(), time.perf_counter()
        body = b"".join(self.app(environ, start_response))
        self.cpu.append((time.thread_time() - c0) * 1000)
        self.wall.append((time.perf_counter() - w0) * 1000)
        return [body]


def bot_app(url: str, emulator: SlackEmulator, policy_path: str):
    from commands.clock import SystemClock

    from bot.app import build_app
    from bot.config import load_config, load_policy
    from bot.server import wsgi_app
    from bot.services import build_services

    env = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": emulator.api_url,
           "RELEASE_CHANNEL": CHANNEL, "DATABASE_URL": url}
    config = load_config(env)
    engine = make_engine(url, pool_size=config.db_pool)
    svc = build_services(config, engine, SystemClock(), load_policy(policy_path, required=True))
    executor = Dropping()
    return wsgi_app(build_app(svc, executor), engine, svc), engine, executor


def bare_app(emulator: SlackEmulator):
    app = App(signing_secret=SIGNING_SECRET, token_verification_enabled=False, process_before_response=True,
              client=WebClient(token="xoxb-test", base_url=emulator.api_url))
    app.command("/release")(lambda ack: ack())
    app.action(re.compile(".*"))(lambda ack: ack())
    return SlackRequestHandler(app)


def run(timed: Timed, emulator: SlackEmulator, n: int, first: int, profile: cProfile.Profile | None = None):
    """n requests of each kind, interleaved as in a burst; the CPU and wall times per kind."""
    client = SlackClient("http://bench", SIGNING_SECRET, emulator=emulator)
    client._http = httpx.Client(transport=httpx.WSGITransport(app=timed), timeout=10.0)
    per_kind = {k: [] for k in KINDS}
    try:
        for i in range(first, first + n * len(KINDS)):
            kind = KINDS[i % len(KINDS)]
            if profile:
                profile.enable()
            r = send(client, kind, i)
            if profile:
                profile.disable()
            if r.status_code != 200:
                raise RuntimeError(f"{kind} {i} answered {r.status_code}: {r.text[:200]}")
            per_kind[kind].append((timed.cpu[-1], timed.wall[-1]))
    finally:
        client.close()
    return per_kind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="measured requests of each kind (default 400)")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file in a temp dir")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the bot's acks into FILE")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        url = scratch_database(args.database_url, stack, "ackcpu")
        emulator = SlackEmulator().start()
        stack.callback(emulator.stop)
        policy = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "policy.toml"
        policy.write_text(POLICY)
        bot_wsgi, engine, executor = bot_app(url, emulator, str(policy))
        stack.callback(engine.dispose)
        bot, bare = Timed(bot_wsgi), Timed(bare_app(emulator))
        warm = 25
        run(bare, emulator, warm, 0)
        run(bot, emulator, warm, 0)
        results = {"bare": run(bare, emulator, args.requests, 1_000)}
        profile = cProfile.Profile() if args.profile else None
        results["bot"] = run(bot, emulator, args.requests, 1_000, profile)
        print(f"CPU per ack, in-process, one at a time: {args.requests} of each kind per target, database "
              f"{backend_name(url)}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        print(f"  {'kind':<9}{'bare cpu':>10}{'bot cpu':>10}{'bot wall':>10}   (median ms)")
        for kind in KINDS + ("all",):
            rows = {t: [x for k in KINDS for x in results[t][k]] if kind == "all" else results[t][kind]
                    for t in results}
            bare_cpu = statistics.median(c for c, _ in rows["bare"])
            bot_cpu = statistics.median(c for c, _ in rows["bot"])
            bot_wall = statistics.median(w for _, w in rows["bot"])
            print(f"  {kind:<9}{bare_cpu:>10.2f}{bot_cpu:>10.2f}{bot_wall:>10.2f}")
        print(f"after-ack work handed to the executor (not run): {executor.dropped}")
        if profile:
            profile.dump_stats(args.profile)
            pstats.Stats(args.profile).sort_stats("cumulative").print_stats(45)
    return 0


if __name__ == "__main__":
    sys.exit(main())
