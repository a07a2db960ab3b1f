"""Unauthenticated load on the public port (issue 8, item 6): idle sockets and oversized bodies.

Starts `releasebot serve` in its own process, then
1. opens 150 TCP connections that send nothing (half-open, idle clients) and, while they are held,
   sends signed `/release status` commands one after another, measuring each ack;
2. announces a 200 MiB unsigned body to `/slack/events` and to `/api/v1/…` (Content-Length only),
   and reports the answer and how much the server's resident memory grew.

    .venv/bin/python benchmarks/public_port.py [--idle 150] [--commands 20] [--database-url URL]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py puts the repo and tests/ on the path
from ack_latency import Process  # noqa: E402
from common import free_port, percentile, scratch_database  # noqa: E402

import httpx  # noqa: E402

from slack_client import SlackClient  # noqa: E402
from slack_emulator import SlackEmulator  # noqa: E402

SIGNING_SECRET = "bench-signing-secret"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def huge_body(port: int, path: str, size: int = 200 * 1024 * 1024) -> str:
    """Announce `size` bytes, send 64 KiB of them, and return the status line the server answers with."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {size}\r\n\r\n".encode() + b"x" * 65536)
        try:
            return s.recv(200).split(b"\r\n", 1)[0].decode(errors="replace") or "(closed)"
        except (ConnectionResetError, socket.timeout) as exc:
            return f"({type(exc).__name__})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=150)
    parser.add_argument("--commands", type=int, default=20)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        url = scratch_database(args.database_url, stack, label="port")
        emulator = SlackEmulator().start()
        stack.callback(emulator.stop)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "RELEASE"))},
               "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
               "SLACK_API_URL": emulator.api_url, "RELEASE_CHANNEL": "C0RELEASES", "DATABASE_URL": url}
        port = free_port()
        bot = Process([sys.executable, "-m", "bot.cli", "serve"], {**env, "PORT": str(port)}, port)
        stack.callback(bot.close)
        slack = stack.enter_context(SlackClient(bot.url, SIGNING_SECRET, emulator=emulator))
        slack.command("status", user="U0BENCH")  # warm-up

        idle = []
        for _ in range(args.idle):
            idle.append(stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10)))
        acks, failed = [], 0
        for _ in range(args.commands):
            t0 = time.perf_counter()
            try:
                ok = slack.command("status", user="U0BENCH").status_code == 200
            except httpx.HTTPError:
                ok = False
            acks.append((time.perf_counter() - t0) * 1000)
            failed += not ok
        print(f"{args.commands} signed commands while {args.idle} idle connections are held open: "
              f"ack p50 {statistics.median(acks):.0f} ms, p99 {percentile(acks, 99):.0f} ms, "
              f"max {max(acks):.0f} ms, not answered 200: {failed}")
        before = rss_kib(bot.proc.pid)
        for path in ("/slack/events", "/api/v1/releases/REL-1/deployments"):
            answer = huge_body(port, path)
            print(f"200 MiB Content-Length to {path}: {answer}; server RSS {before // 1024} MiB -> "
                  f"{rss_kib(bot.proc.pid) // 1024} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
