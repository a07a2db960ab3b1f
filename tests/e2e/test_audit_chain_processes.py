"""Writers at once leave one unbroken chain: threads with their own connections, plain processes appending
through storage.audit.record, and two real `releasebot serve` processes taking a burst of requests on one
database. Waiting for another process is polling the database with a deadline: there is no clock to
inject across processes."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import func
from sqlmodel import Session, select

from storage import audit, audit_chain
from storage.db import make_engine, transaction
from storage.models import AuditEvent, Release

from conftest import SIGNING_SECRET, START
from test_process import ROOT
from test_reminder_processes import Bot

WRITER = r"""
import sys, time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from storage import audit
from storage.db import make_engine, transaction
url, name, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
engine = make_engine(url)
Path(str(go) + "." + name).touch()  # ready
while not go.exists():
    time.sleep(0.001)
at = datetime(2026, 11, 23, 9, tzinfo=timezone.utc)
for i in range(n):
    with transaction(engine) as s:
        # two events in one transaction: the head is held from the first to the commit
        audit.record(s, actor=name, action="vote_go", at=at + timedelta(seconds=i), reason=f"{name} {i}")
        audit.record(s, actor=name, action="approved", at=at + timedelta(seconds=i), after={"i": i})
engine.dispose()
"""


def _actors_by_seq(db) -> list[str]:
    with Session(db) as s:
        return list(s.exec(select(AuditEvent.actor).order_by(AuditEvent.seq)))


def test_threads_with_their_own_connections_append_one_chain(db_url):
    engine = make_engine(db_url, pool_size=8)
    barrier = threading.Barrier(8)

    def writer(w: int) -> None:
        barrier.wait()
        for i in range(25):
            with transaction(engine) as s:
                audit.record(s, actor=f"U{w}", action="vote_go", at=START + timedelta(seconds=i))
                audit.record(s, actor=f"U{w}", action="approved", at=START + timedelta(seconds=i))

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(writer, range(8)))
        result = audit_chain.verify(engine)
        assert result.ok, result.first_bad
        assert result.count == 8 * 25 * 2
        actors = _actors_by_seq(engine)
        # each transaction's two events sit together: nobody appended between them
        assert all(actors[k] == actors[k + 1] for k in range(0, len(actors), 2))
    finally:
        engine.dispose()


def test_two_processes_appending_at_once_leave_one_unbroken_chain(db, db_url, tmp_path):
    go = tmp_path / "go"
    n = 150
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, db_url, name, str(n), str(go)], cwd=ROOT)
             for name in ("UPROC1", "UPROC2")]
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"go.{name}").exists() for name in ("UPROC1", "UPROC2")):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "writers did not start"
            time.sleep(0.01)
        go.touch()
        assert [p.wait(timeout=120) for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    result = audit_chain.verify(db)
    assert result.ok, result.first_bad
    assert result.count == 2 * n * 2
    actors = _actors_by_seq(db)
    assert actors.count("UPROC1") == actors.count("UPROC2") == 2 * n
    # they really ran at once: the chain passes from one to the other more than once
    assert sum(a != b for a, b in zip(actors, actors[1:])) > 1


def _policy(tmp_path) -> str:
    text = (ROOT / "policy.toml").read_text().replace('release_manager = []', 'release_manager = ["U0RM"]')
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return str(path)


def test_two_bots_taking_a_burst_of_requests_leave_one_unbroken_chain(emulator, db_url, db, tmp_path):
    from slack_client import SlackClient
    env = {"RELEASE_POLICY": _policy(tmp_path), "RELEASEBOT_WORKERS": "4"}
    bots = [Bot(emulator, db_url, tmp_path, name, **env) for name in ("one", "two")]
    try:
        for b in bots:
            b.wait_healthy(timeout=90)  # two start at once on a shared, busy machine
        clients = [SlackClient(f"http://127.0.0.1:{b.port}", SIGNING_SECRET, emulator=emulator) for b in bots]

        def send(i: int):
            return clients[i % 2].command(
                f'request service=svc{i % 5} version=1.0.{i} type=minor flags=feature '
                f'start="2027-03-{1 + i // 6:02d} {9 + i % 6:02d}:00" tz=UTC duration=30m summary="burst {i}"',
                user="U0DEV")
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(send, range(24)))
        assert all(a.status_code == 200 and "busy" not in a.text for a in answers)
        deadline = time.monotonic() + 90
        while True:
            with Session(db) as s:
                made = s.scalar(select(func.count()).select_from(Release))
            if made >= 24 or time.monotonic() > deadline:
                break
            assert all(b.proc.poll() is None for b in bots), bots[0].output() + bots[1].output()
            time.sleep(0.2)
        assert made == 24
        for c in clients:
            c.close()
        assert [b.terminate() for b in bots] == [0, 0]  # SIGTERM: work under way finishes first
    finally:
        for b in bots:
            b.close()
    result = audit_chain.verify(db)
    assert result.ok, result.first_bad
    with Session(db) as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "requested")) == 24
    assert result.count == len(_actors_by_seq(db))
