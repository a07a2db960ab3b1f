"""10,000 reminders come due at once; two `releasebot serve` processes sweep them into Slack.

Both processes run on one PostgreSQL database (FOR UPDATE SKIP LOCKED claims) and
post to the Slack emulator, which runs in this process and records every call.
Each reminder is the 24-hour follow-up of its own release (REL-n in the text), so
every post is counted against its release: a release posted twice is a duplicate,
one never posted is a loss. Both must be 0.

The rows are written while both processes run, all due at one instant a moment
later; the clock starts at that instant and stops at the last post Slack accepted.

    .venv/bin/python benchmarks/reminder_sweep.py [--reminders 10000] [--processes 2] [--database-url URL]

The default database is a scratch one created beside
postgresql://postgres@127.0.0.1:5432/test and dropped at the end. A sqlite:/// URL
(or `--database-url sqlite`) runs it on a SQLite file in WAL mode instead.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py puts the repo and tests/ on the path
from common import ROOT, free_port, scratch_database  # noqa: E402

from sqlalchemy import insert, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from slack_emulator import SlackEmulator  # noqa: E402
from storage.db import make_engine, normalise_url  # noqa: E402
from storage.models import Outbox, Release, Task  # noqa: E402

DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/test"
CHANNEL = "C0RELEASES"
SIGNING_SECRET = "bench-signing-secret"
REF = re.compile(r"^REL-(\d+):")
DUE_IN = 3.0  # seconds between writing the rows and their coming due
CHUNK = 1000


class Bot:
    """`python -m bot.cli serve` in a child process; its log goes to a file (a pipe could fill and stall it)."""

    def __init__(self, name: str, env: dict[str, str], logdir: Path):
        self.name = name
        self.port = free_port()
        self.log = logdir / f"{name}.log"
        self._out = open(self.log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], cwd=ROOT, stdout=self._out,
                                     stderr=subprocess.STDOUT, env={**env, "PORT": str(self.port)})

    def wait_listening(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"bot {self.name} did not start:\n{self.log.read_text()[-3000:]}")
                time.sleep(0.05)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return self.proc.returncode






def write_reminders(db, n: int, due_at: datetime) -> None:
    """n deployed releases, each owing its follow-up (a task not done) and its reminder row, due at due_at.
    The rows are what commands.announce.reminder() writes, inserted in bulk."""
    now = datetime.now(timezone.utc)
    window = due_at - timedelta(days=1)
    with db.begin() as conn:
        for first in range(1, n + 1, CHUNK):
            ids = range(first, min(n, first + CHUNK - 1) + 1)
            conn.execute(insert(Release.__table__), [dict(
                id=i, service=f"svc{i % 50}", version=f"1.{i}.0", environment="production", requested_type="minor",
                derived_type="minor", effective_type="minor", classification_answered=True, answers={},
                misclassified=False, required_roles={"release_manager": 1}, start_at=window,
                end_at=window + timedelta(minutes=30), tz="UTC", duration_minutes=30, summary=f"sweep {i}",
                requester_id="U0DEV", state="stabilising", round=1, approval_seq=0, revision=0, created_at=now,
                updated_at=now) for i in ids])
            conn.execute(insert(Task.__table__), [dict(release_id=i, kind="followup", due_at=due_at, created_at=now,
                                                       details={}) for i in ids])
            conn.execute(insert(Outbox.__table__), [dict(
                key=f"reminder:{i}:followup:", kind="reminder", release_id=i, payload={"reminder": "followup"},
                created_at=now, due_at=due_at, attempts=0) for i in ids])
        if db.dialect.name == "postgresql":  # ids were given: move the sequence past them
            conn.execute(text("SELECT setval(pg_get_serial_sequence('release', 'id'), :n)"), {"n": n})


def accepted_posts(emulator: SlackEmulator) -> list:
    return [c for c in emulator.calls_to("chat.postMessage") if c.ok]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reminders", type=int, default=10_000, help="reminders due at once (default 10000)")
    parser.add_argument("--processes", type=int, default=2, help="`releasebot serve` processes (default 2)")
    parser.add_argument("--database-url", default=DEFAULT_DB,
                        help=f"PostgreSQL server to make a scratch database beside (default {DEFAULT_DB}), "
                             "or sqlite for a SQLite file")
    parser.add_argument("--deadline", type=float, default=900, help="give up after this many seconds (default 900)")
    args = parser.parse_args(argv)
    n = args.reminders
    load_before = os.getloadavg()[0]

    with ExitStack() as stack:
        url = scratch_database(args.database_url, stack)
        db = make_engine(url)
        stack.callback(db.dispose)
        emulator = SlackEmulator().start()
        stack.callback(emulator.stop)
        tokens = [f"xoxb-sweep-{i}" for i in range(args.processes)]
        emulator.valid_tokens |= set(tokens)  # each process posts with its own token: who sent what
        logdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="releasebot-sweep-logs-")))

        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "RELEASE"))},
               "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": emulator.api_url,
               "RELEASE_CHANNEL": CHANNEL, "DATABASE_URL": url}
        bots = [Bot(f"bot{i}", {**env, "SLACK_BOT_TOKEN": token}, logdir) for i, token in enumerate(tokens)]
        exit_codes: list[int | None] = []
        try:
            for bot in bots:
                bot.wait_listening()

            due_at = datetime.now(timezone.utc) + timedelta(seconds=DUE_IN)
            t_write = time.monotonic()
            write_reminders(db, n, due_at)
            write_s = time.monotonic() - t_write
            if datetime.now(timezone.utc) >= due_at:
                print(f"warning: writing the rows took {write_s:.1f}s, past their due time")

            deadline = time.monotonic() + args.deadline
            while time.monotonic() < deadline:
                if len(emulator.calls) >= n and len(accepted_posts(emulator)) >= n:  # cheap test first
                    with db.connect() as conn:
                        if conn.execute(text("SELECT count(*) FROM outbox WHERE sent_at IS NULL")).scalar_one() == 0:
                            break
                time.sleep(0.5)
        finally:
            # SIGTERM lets each process finish the send under way, so the record below is complete.
            exit_codes = [bot.stop() for bot in bots]

        posts = accepted_posts(emulator)
        per_release = Counter(int(REF.match(c.args["text"]).group(1)) for c in posts)
        duplicates = sum(count - 1 for count in per_release.values() if count > 1)
        losses = sum(1 for i in range(1, n + 1) if i not in per_release)
        with db.connect() as conn:
            unsent = conn.execute(text("SELECT count(*) FROM outbox WHERE sent_at IS NULL")).scalar_one()
            attempts = conn.execute(text("SELECT coalesce(sum(attempts), 0) FROM outbox")).scalar_one()
        due_epoch = due_at.timestamp()
        last = max((c.at for c in posts), default=due_epoch)
        first = min((c.at for c in posts), default=due_epoch)
        elapsed = last - due_epoch
        split = Counter(c.token for c in posts)
        failed_calls = sum(1 for c in emulator.calls_to("chat.postMessage") if not c.ok)
        tracebacks = sum(bot.log.read_text().count("Traceback") for bot in bots)

        backend = make_url(normalise_url(url)).get_backend_name()
        print(f"reminder sweep: {n} reminders due at once, {args.processes} `releasebot serve` processes, "
              f"database {backend}, Slack emulator in the benchmark process")
        print(f"machine: {os.cpu_count()} cores, load average {load_before:.1f} at start, "
              f"{os.getloadavg()[0]:.1f} at the end (other work on the machine slows every figure)")
        print(f"rows written in {write_s:.1f}s, due {DUE_IN:.0f}s after writing began")
        print(f"first post {first - due_epoch:.2f}s after due; all delivered {elapsed:.1f}s after due "
              f"({len(posts) / elapsed if elapsed > 0 else 0:.0f} posts/s)")
        print("posts per process: " + ", ".join(f"bot{i} {split.get(t, 0)}" for i, t in enumerate(tokens)))
        print(f"chat.postMessage calls: {len(posts)} accepted, {failed_calls} failed; claims (attempts) {attempts}")
        print(f"duplicates: {duplicates}")
        print(f"losses: {losses}")
        print(f"unsent outbox rows: {unsent}; process exit codes: {exit_codes}; tracebacks in logs: {tracebacks}")
        ok = duplicates == 0 and losses == 0 and unsent == 0 and tracebacks == 0
        print("result: " + ("OK (0 duplicates, 0 losses)" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
