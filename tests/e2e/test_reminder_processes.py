"""Reminders and announcements as outbox rows, sent by real `releasebot serve` processes.

The database is the source of truth and APScheduler only the clock, so what
must go out survives kill -9 and restarts, two processes on one database send
each row once, and Slack failures only delay a row. The process tests run on
the database conftest gives: a SQLite file (WAL) shared by the processes, or
PostgreSQL when RELEASEBOT_TEST_DATABASE_URL names one. Waiting for another
process is polling the emulator or the database with a deadline: there is no
clock to inject across processes.
"""
from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import httpx
from slack_sdk import WebClient
from sqlmodel import Session, select

from commands import announce
from storage.db import transaction
from storage.models import Outbox, Release, Task

from conftest import CHANNEL
from test_process import ROOT, base_env, free_port

TICK = 3  # bot/scheduler.py TICK_SECONDS
REF = re.compile(r"\bREL-(\d+)\b")
# A release's stream of thread notes, in the order they are queued, and how each one reads.
NOTES = ("approved", "deployment_success", "closed")
NOTE_TEXT = {"approved": "is *approved*", "deployment_success": "deployed successfully", "closed": "is closed"}
REMINDER_TEXT = "24 hours since"


# ---- rows --------------------------------------------------------------------------------------------


def add_releases(db, n: int, due_at: datetime, *, notes: tuple[str, ...] = ()) -> list[str]:
    """n deployed releases, each owing its 24-hour follow-up: a `followup` task not done and its
    reminder row due at due_at, plus a stream of thread notes due now. Returns the refs."""
    now = datetime.now(timezone.utc)
    refs = []
    with transaction(db) as s:
        for _ in range(n):
            r = Release(service="payments", version="1.0.0", environment="production", requested_type="minor",
                        derived_type="minor", effective_type="minor", required_roles={"release_manager": 1},
                        start_at=due_at - timedelta(days=1), end_at=due_at - timedelta(days=1, minutes=-30),
                        tz="UTC", duration_minutes=30, summary="reminder test", requester_id="U0DEV",
                        state="stabilising", created_at=now, updated_at=now)
            s.add(r)
            s.flush()
            s.add(Task(release_id=r.id, kind="followup", due_at=due_at, created_at=now))
            announce.reminder(s, r, "followup", due_at, now)
            for event in notes:
                announce.note(s, r, event, now)
            refs.append(r.ref)
    return refs


def rows(db) -> list[Outbox]:
    with Session(db) as s:
        return list(s.exec(select(Outbox).order_by(Outbox.id)))


def what(text: str) -> str:
    if REMINDER_TEXT in text:
        return "followup"
    return next((event for event, marker in NOTE_TEXT.items() if marker in text), f"? {text[:60]}")


def delivered(emulator) -> list[tuple[str, str, str | None]]:
    """(ref, what, token) of every chat.postMessage Slack accepted, in the order it accepted them."""
    out = []
    for call in emulator.calls_to("chat.postMessage"):
        if call.ok:
            out.append((f"REL-{REF.search(call.args['text']).group(1)}", what(call.args["text"]), call.token))
    return out


def wait_delivered(emulator, expected: int, timeout: float) -> None:
    """Wait until Slack accepted `expected` posts (no clock crosses processes: poll, with a deadline)."""
    deadline = time.monotonic() + timeout
    while len(delivered(emulator)) < expected:
        assert time.monotonic() < deadline, (f"{len(delivered(emulator))} of {expected} posts after {timeout}s; "
                                             f"calls: {[(c.status, c.args.get('text', '')[:30]) for c in emulator.calls[-10:]]}")
        time.sleep(0.05)


def assert_each_once(emulator, refs: list[str], kinds: tuple[str, ...]) -> None:
    counts = Counter((ref, kind) for ref, kind, _ in delivered(emulator))
    expected = {(ref, kind) for ref in refs for kind in kinds}
    lost = expected - set(counts)
    duplicated = {key: c for key, c in counts.items() if c > 1}
    unexpected = set(counts) - expected
    assert not lost and not duplicated and not unexpected, (
        f"lost {sorted(lost)[:10]}, duplicated {sorted(duplicated.items())[:10]}, unexpected {sorted(unexpected)[:10]}")


# ---- processes ---------------------------------------------------------------------------------------


class Bot:
    """`python -m bot.cli serve` as a child process, output kept in a file (a pipe could fill and stall it)."""

    def __init__(self, emulator, db_url, tmp_path, name: str, **env):
        self.name, self.port = name, free_port()
        self.log = tmp_path / f"{name}.log"
        self._out = open(self.log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], cwd=ROOT, stdout=self._out,
                                     stderr=subprocess.STDOUT,
                                     env=base_env(emulator, db_url, PORT=str(self.port), **env))

    def wait_healthy(self, timeout: float = 30) -> "Bot":
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, f"{self.name} exited {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"{self.name} did not start:\n{self.output()}"
            time.sleep(0.05)

    def terminate(self, timeout: float = 20) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._out.close()


def spawn(emulator, db_url, tmp_path, name, started: list, **env) -> Bot:
    bot = Bot(emulator, db_url, tmp_path, name, **env)
    started.append(bot)
    return bot


def close_all(started: list[Bot]) -> None:
    for bot in started:
        bot.close()


# ---- tests over real processes -----------------------------------------------------------------------


def test_two_processes_send_every_reminder_and_announcement_exactly_once_in_order(db_url, db, emulator, tmp_path):
    """Two `serve` processes on one database (PostgreSQL, or one SQLite file in WAL mode) sweep the same
    due rows: each reminder and each note goes out once, and a release's notes keep their order."""
    emulator.valid_tokens |= {"xoxb-process-a", "xoxb-process-b"}  # who sent each post
    emulator.delay("chat.postMessage", 0.02)  # a little Slack latency, so both processes get to work
    started: list[Bot] = []
    try:
        a = spawn(emulator, db_url, tmp_path, "a", started, SLACK_BOT_TOKEN="xoxb-process-a")
        b = spawn(emulator, db_url, tmp_path, "b", started, SLACK_BOT_TOKEN="xoxb-process-b")
        a.wait_healthy(), b.wait_healthy()
        refs = add_releases(db, 40, datetime.now(timezone.utc) - timedelta(minutes=1), notes=NOTES)
        expected = len(refs) * (1 + len(NOTES))
        wait_delivered(emulator, expected, timeout=30)
        # SIGTERM waits for sends under way: whatever either process was still sending is in the record now.
        assert a.terminate() == 0 and b.terminate() == 0
        assert "Traceback" not in a.output() + b.output(), a.output() + b.output()
    finally:
        close_all(started)
    assert_each_once(emulator, refs, ("followup", *NOTES))
    posts = delivered(emulator)
    assert {token for _, _, token in posts} == {"xoxb-process-a", "xoxb-process-b"}  # both did share the work
    order = defaultdict(list)
    for ref, kind, _ in posts:
        if kind != "followup":
            order[ref].append(kind)
    assert all(kinds == list(NOTES) for kinds in order.values()), dict(order)
    assert all(r.sent_at and r.result == "sent" for r in rows(db))


def test_kill_9_while_sending_then_restart_sends_each_reminder_once(db_url, db, emulator, tmp_path):
    """A is killed with a batch claimed and a send stuck in Slack. Its claims expire after the lease;
    B sends them, and the reminders that came due while no bot ran go out as B starts."""
    before_kill = add_releases(db, 6, datetime.now(timezone.utc) - timedelta(hours=2))
    emulator.fail_next("chat.postMessage", status=503)  # the stuck call is never accepted
    emulator.delay("chat.postMessage", 30)
    started: list[Bot] = []
    try:
        a = spawn(emulator, db_url, tmp_path, "a", started, RELEASEBOT_OUTBOX_LEASE_SECONDS="3")
        emulator.wait_in_flight("chat.postMessage", timeout=30)
        claimed = [r for r in rows(db) if r.claimed_until and not r.sent_at]
        assert len(claimed) == len(before_kill)  # A holds the whole batch
        a.kill9()

        while_down = add_releases(db, 2, datetime.now(timezone.utc) - timedelta(minutes=5))
        emulator.heal()
        b = spawn(emulator, db_url, tmp_path, "b", started)
        # A's claims run out 3 s after it took them; B sweeps at start and every TICK seconds.
        wait_delivered(emulator, len(before_kill) + len(while_down), timeout=20)
        assert b.terminate() == 0
        assert "Traceback" not in b.output(), b.output()
    finally:
        close_all(started)
    assert_each_once(emulator, before_kill + while_down, ("followup",))
    assert all(r.sent_at for r in rows(db))
    assert all(r.attempts == 1 for r in rows(db) if r.release_id > len(before_kill))  # sent at B's first try


def test_sigterm_finishes_the_send_in_flight_then_exits_and_hands_back_the_rest(db_url, db, emulator, tmp_path):
    refs = add_releases(db, 5, datetime.now(timezone.utc) - timedelta(minutes=1))
    emulator.delay("chat.postMessage", 1.5)
    started: list[Bot] = []
    try:
        a = spawn(emulator, db_url, tmp_path, "a", started)
        # The first send of A's start-up sweep is under way (its answer 1.5 s late): stop A now.
        emulator.wait_in_flight("chat.postMessage", timeout=60)
        assert a.terminate() == 0  # after the send under way is done and recorded
        assert "Traceback" not in a.output(), a.output()
        [(ref, _, _)] = delivered(emulator)
        sent = [r for r in rows(db) if r.sent_at]
        assert [f"REL-{r.release_id}" for r in sent] == [ref]
        # The rest of A's batch went back at once: nobody has to wait out A's 60 s lease.
        assert all(r.claimed_until is None for r in rows(db) if not r.sent_at)

        emulator.heal()
        b = spawn(emulator, db_url, tmp_path, "b", started)
        wait_delivered(emulator, len(refs), timeout=15)
        assert b.terminate() == 0
    finally:
        close_all(started)
    assert_each_once(emulator, refs, ("followup",))
    assert all(r.sent_at for r in rows(db))


# ---- Slack failures, in process with the injected clock ---------------------------------------------


def test_reminder_429_then_500_then_ok_is_posted_exactly_once(bot, db, clock):
    [ref] = add_releases(db, 1, clock.now())
    bot.emulator.fail_next("chat.postMessage", status=429, retry_after=7)
    assert bot.deliver() == 0
    [row] = rows(db)
    assert row.due_at == clock.now() + timedelta(seconds=7) and "429" in row.last_error  # Retry-After honoured
    assert row.claimed_until is None and row.sent_at is None
    assert bot.deliver() == 0 and len(bot.emulator.calls_to("chat.postMessage")) == 1  # not before Retry-After

    bot.emulator.fail_next("chat.postMessage", status=500)
    clock.advance(seconds=7)
    assert bot.deliver() == 0
    [row] = rows(db)
    assert "500" in row.last_error and row.due_at > clock.now()  # backoff
    clock.advance(minutes=1)
    assert bot.deliver() == 1
    assert bot.deliver() == 0
    assert [(r, k) for r, k, _ in delivered(bot.emulator)] == [(ref, "followup")]
    assert len(bot.emulator.calls_to("chat.postMessage")) == 3
    [row] = rows(db)
    assert row.sent_at == clock.now() and row.attempts == 3


def _delivery(db, clock, policy, api_url: str, timeout: float):
    from bot.delivery import Delivery
    from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler
    client = WebClient(token="xoxb-test", base_url=api_url, timeout=timeout,
                       retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=1)])  # as bot/services.py
    return Delivery(db, client, clock, CHANNEL, policy)


def test_reminder_after_a_timeout_and_a_refused_connection_is_posted_once(db, clock, policy, emulator):
    [ref] = add_releases(db, 1, clock.now())
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    refused = _delivery(db, clock, policy, f"http://127.0.0.1:{closed_port}/api/", timeout=2)
    assert refused.run_once() == 0
    [row] = rows(db)
    assert row.sent_at is None and row.claimed_until is None and "URLError" in row.last_error

    emulator.fail_next("chat.postMessage", status=503)  # Slack stalls, then fails: it never accepted
    emulator.delay("chat.postMessage", 5)
    slow = _delivery(db, clock, policy, emulator.api_url, timeout=0.3)
    clock.advance(minutes=1)
    assert slow.run_once() == 0
    [row] = rows(db)
    assert row.sent_at is None and row.claimed_until is None and "timed out" in row.last_error.lower()
    emulator.heal()

    clock.advance(minutes=1)
    assert slow.run_once() == 1
    assert [(r, k) for r, k, _ in delivered(emulator)] == [(ref, "followup")]


def test_a_batch_whose_lease_ran_low_is_handed_back_not_sent(db, clock, policy, emulator):
    """A process that fell behind in its batch (slow Slack) must not send rows whose lease is about to
    run out: another process may claim them then, and both would post."""
    add_releases(db, 3, clock.now())
    delivery = _delivery(db, clock, policy, emulator.api_url, timeout=5)
    seen = []
    real_deliver = delivery._deliver

    def slow_deliver(row, *rest):
        seen.append(row.id)
        clock.advance(seconds=31)  # more than half the 60 s lease goes on this one send
        return real_deliver(row, *rest)

    delivery._deliver = slow_deliver
    assert delivery.run_once(max_rounds=1) == 1
    assert seen == [1]
    fresh = rows(db)
    assert fresh[0].sent_at and all(r.sent_at is None and r.claimed_until is None for r in fresh[1:])
    assert delivery.run_once() == 2  # claimed afresh, with a fresh lease


def test_a_malformed_outbox_lease_stops_start_up_with_a_clear_exit_2(emulator, db_url):
    from test_process import run
    done = run(["serve"], base_env(emulator, db_url, RELEASEBOT_OUTBOX_LEASE_SECONDS="soon"))
    assert done.returncode == 2 and "RELEASEBOT_OUTBOX_LEASE_SECONDS" in done.stderr
    assert "Traceback" not in done.stderr
