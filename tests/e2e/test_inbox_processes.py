"""Acknowledged work survives kill -9: the ack path writes the delivery to the inbox, workers apply it.

Real `releasebot serve` processes on the database conftest gives. Slack's answers to the
person (response_url, chat.postEphemeral) are held by the emulator during the burst, so the
first process's workers are stuck after their first few rows when it is killed; whatever was
acknowledged must then be applied by the next process, exactly once. Waiting for another
process is polling the database with a deadline: there is no clock to inject across processes.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import func
from sqlmodel import Session, select

from bot.messages.release import GO_ACTION
from storage.models import AuditEvent, InboxRow, Release, Vote

from conftest import SIGNING_SECRET
from test_process import ROOT
from test_reminder_processes import Bot

ENV = {"RELEASEBOT_INBOX_LEASE_SECONDS": "3", "RELEASEBOT_WORKERS": "4"}


def _policy(tmp_path: Path) -> str:
    text = (ROOT / "policy.toml").read_text().replace('release_manager = []', 'release_manager = ["U0RM"]')
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return str(path)


def _burst(bot: Bot, emulator, sends) -> int:
    """Send from 8 threads at once; return how many were acknowledged (a 200 that is not "busy")."""
    from slack_client import SlackClient
    with SlackClient(f"http://127.0.0.1:{bot.port}", SIGNING_SECRET, emulator=emulator) as slack:
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda send: send(slack), sends))
    return sum(1 for r in answers if r.status_code == 200 and "busy" not in r.text)


def _wait(db, count_of, expected: int, bot: Bot, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while True:
        with Session(db) as s:
            got = count_of(s)
        if got >= expected or time.monotonic() > deadline:
            return got
        assert bot.proc.poll() is None, bot.output()
        time.sleep(0.2)


def test_kill_9_in_a_burst_loses_no_acknowledged_request_or_vote(emulator, db_url, db, tmp_path):
    env = dict(ENV, RELEASE_POLICY=_policy(tmp_path))
    requests = [
        (lambda slack, i=i: slack.command(
            f'request service=payments version=1.0.{i} type=minor flags=feature '
            f'start="2027-02-{1 + i // 6:02d} {9 + i % 6:02d}:00" tz=UTC duration=30m summary="burst {i}"',
            user="U0DEV"))
        for i in range(25)]
    # The person is told nothing for now: each worker stalls on its first answer, the rest waits.
    emulator.delay("response_url", 600)
    first = Bot(emulator, db_url, tmp_path, "first", **env).wait_healthy()
    try:
        acked = _burst(first, emulator, requests)
        first.kill9()
    finally:
        first.close()
    assert acked == 25
    emulator.heal()
    second = Bot(emulator, db_url, tmp_path, "second", **env).wait_healthy()
    try:
        made = _wait(db, lambda s: s.scalar(select(func.count()).select_from(Release)), acked, second)
        assert made == acked, f"{acked} acknowledged, {made} applied"
        with Session(db) as s:
            releases = list(s.exec(select(Release)))
            assert sorted(r.summary for r in releases) == sorted(f"burst {i}" for i in range(25))
            assert s.scalar(select(func.count()).select_from(AuditEvent)
                            .where(AuditEvent.action == "requested")) == 25
        ids = [r.id for r in releases][:20]

        # Go clicks on 20 releases, the process killed once they are acknowledged.
        emulator.delay("chat.postEphemeral", 600)
        emulator.delay("response_url", 600)
        clicks = [(lambda slack, rid=rid: slack.block_action(GO_ACTION, str(rid), user="U0RM")) for rid in ids]
        votes_acked = _burst(second, emulator, clicks)
        second.kill9()
    finally:
        second.close()
    assert votes_acked == 20
    emulator.heal()
    third = Bot(emulator, db_url, tmp_path, "third", **env).wait_healthy()
    try:
        recorded = _wait(db, lambda s: s.scalar(select(func.count()).select_from(Vote)), votes_acked, third)
        assert recorded == votes_acked, f"{votes_acked} acknowledged, {recorded} applied"
        with Session(db) as s:
            votes = list(s.exec(select(Vote)))
            assert sorted(v.release_id for v in votes) == sorted(ids) and {v.voter_id for v in votes} == {"U0RM"}
            assert s.scalar(select(func.count()).select_from(AuditEvent)
                            .where(AuditEvent.action == "vote_go")) == 20
        assert third.terminate() == 0  # SIGTERM: the rows under way finish and are marked done
    finally:
        third.close()
    with Session(db) as s:
        rows = list(s.exec(select(InboxRow)))
    assert len(rows) == acked + votes_acked and all(r.done_at is not None for r in rows)
