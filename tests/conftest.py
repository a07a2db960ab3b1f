"""Shared fixtures: a real database (SQLite file, or PostgreSQL when
RELEASEBOT_TEST_DATABASE_URL names one), a fixed clock, the Slack emulator,
and the real bot served over HTTP by waitress on a free port."""
from __future__ import annotations

import os
import shutil
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from commands.clock import FixedClock
from commands.outcome import Actor
from commands.policy import Policy
from storage.db import make_engine, normalise_url
from storage.migrate import upgrade

PG_URL = os.environ.get("RELEASEBOT_TEST_DATABASE_URL", "")
TABLES = ("vote", "audit_event", "outbox", "deployment", "signoff", "task", "nonconformance", "release_flag",
          "blackout_occurrence", "blackout", "calendar_subscription", "release", "seen_delivery", "inbox", "decision_log", "emergency",
          "test_result", "waiver", "incident", "metric_snapshot", "unmatched_deployment",
          "github_request", "audit_chain_head", "audit_checkpoint", "deployment_fact")
SIGNING_SECRET = "test-signing-secret"
CHANNEL = "C0RELEASES"
START = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)  # a Monday

# Everyone has one role, but two CAB members and a QA lead reachable only through a user group.
ROLES = {
    "release_manager": ["U0RM"],
    "engineering_lead": ["U0EL"],
    "qa_lead": ["U0QA", "S0QALEADS"],
    "security": ["U0SEC"],
    "platform_lead": ["U0PL"],
    "operations": ["U0OPS"],
    "cab": ["U0CAB1", "U0CAB2", "U0CAB3"],
    "executive": ["U0EXEC"],
    "product_owner": ["U0PO"],
    "auditor": ["U0AUD"],
}
QA_GROUP_MEMBERS = ["U0QAGROUP"]


def actor(user_id: str) -> Actor:
    roles = frozenset(r for r, members in ROLES.items() if user_id in members)
    if user_id in QA_GROUP_MEMBERS:
        roles |= {"qa_lead"}
    return Actor(user_id, roles)


@pytest.fixture
def policy() -> Policy:
    return Policy.from_mapping({"roles": ROLES}, source="test policy")


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture(scope="session")
def _database_template(tmp_path_factory):
    if PG_URL:
        admin = make_engine(PG_URL)
        name = f"releasebot_test_{uuid.uuid4().hex[:8]}"
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = normalise_url(PG_URL).rsplit("/", 1)[0] + f"/{name}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    else:
        path = tmp_path_factory.mktemp("template") / "template.db"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        engine.dispose()
        yield str(path)


def _empty_every_table(conn) -> None:
    """Each test starts from empty tables and ids from 1. TRUNCATE of all 26 tables took 0.33 s a test (it
    makes new files for every table and index); most tables are empty already, so only the others are
    emptied: DELETE with triggers and foreign keys off for this transaction (the append-only triggers refuse
    DELETE otherwise; superuser, as the suite's PostgreSQL is), else TRUNCATE of just those."""
    probe = " UNION ALL ".join(f"SELECT '{t}' WHERE EXISTS (SELECT 1 FROM {t})" for t in TABLES)
    used = [row[0] for row in conn.execute(text(probe))]
    if used:
        if conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar():
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            for t in used:
                conn.execute(text(f"DELETE FROM {t}"))
        else:
            conn.execute(text(f"TRUNCATE {', '.join(used)} CASCADE"))
    # every sequence of this scratch database is a table's id (alembic's own table has none)
    conn.execute(text("SELECT setval(c.oid::regclass, 1, false) FROM pg_class c JOIN pg_namespace n "
                      "ON n.oid = c.relnamespace WHERE c.relkind = 'S' AND n.nspname = current_schema()"))


@pytest.fixture
def db_url(_database_template, tmp_path) -> str:
    if PG_URL:
        engine = make_engine(_database_template)
        with engine.begin() as conn:
            _empty_every_table(conn)
        engine.dispose()
        return _database_template
    path = tmp_path / "releasebot.db"
    shutil.copy(_database_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def db(db_url):
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def emulator():
    from slack_emulator import SlackEmulator
    emu = SlackEmulator().start()
    emu.user_groups["S0QALEADS"] = list(QA_GROUP_MEMBERS)
    yield emu
    emu.stop()


class TrackingExecutor(ThreadPoolExecutor):
    """Bolt runs listeners here after ack(); tests wait for it to go idle
    instead of sleeping and hoping the work is done."""

    def __init__(self):
        super().__init__(max_workers=8)
        self._pending = 0
        self._cond = threading.Condition()

    def submit(self, fn, /, *args, **kwargs):
        with self._cond:
            self._pending += 1
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _future):
        with self._cond:
            self._pending -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float = 60.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._pending == 0, timeout):
                raise AssertionError(f"listeners still running after {timeout}s")


class RunningBot:
    """The real app, served over HTTP, with its services exposed for assertions."""

    def __init__(self, svc, server, thread, slack, emulator, executor):
        self.svc, self.server, self.thread, self.slack, self.emulator = svc, server, thread, slack, emulator
        self.executor = executor

    def idle(self) -> None:
        """Wait until every listener has finished its after-ack work, and the calendar fetches it asked for."""
        from bot import calendar_sync
        self.executor.wait_idle()
        calendar_sync.wait_idle()

    def command(self, text: str, user: str, **kw):
        response = self.slack.command(text, user=user, **kw)
        self.idle()
        return response

    def click(self, action_id: str, value: str, user: str, **kw):
        response = self.slack.block_action(action_id, value, user=user, **kw)
        self.idle()
        return response

    def submit(self, callback_id: str, values: dict, user: str, **kw):
        response = self.slack.view_submission(callback_id, values, user=user, **kw)
        self.idle()
        return response

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.effective_port}"

    def deliver(self) -> int:
        """What the scheduler's tick does, on demand."""
        return self.svc.delivery.run_once()


def _serve_until_closed(server) -> None:
    try:
        server.run()
    except (OSError, ValueError):
        # close() from the test thread pulls the socket out from under select();
        # that is how this server stops, not a failure.
        pass


def start_bot(db, clock, policy, emulator, env_overrides=None) -> RunningBot:
    import waitress

    from bot.app import build_app
    from bot.config import load_config
    from bot.server import wsgi_app
    from bot.services import build_services
    from slack_client import SlackClient

    env = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "SLACK_API_URL": emulator.api_url, "RELEASE_CHANNEL": CHANNEL, **(env_overrides or {})}
    svc = build_services(load_config(env), db, clock, policy)
    executor = TrackingExecutor()
    server = waitress.create_server(wsgi_app(build_app(svc, executor), db, svc), host="127.0.0.1", port=0, threads=8,
                                    asyncore_loop_timeout=0.05)  # so close() is noticed at once
    thread = threading.Thread(target=_serve_until_closed, args=(server,), daemon=True)
    thread.start()
    slack = SlackClient(f"http://127.0.0.1:{server.effective_port}", SIGNING_SECRET, emulator=emulator)
    return RunningBot(svc, server, thread, slack, emulator, executor)


def serving(running: RunningBot):
    """Yield a started bot to a test, then stop it: `yield from serving(start_bot(...))` in a fixture."""
    yield running
    running.slack.close()
    running.server.close()
    running.thread.join(timeout=5)
    running.executor.shutdown(wait=True)


@pytest.fixture
def bot(db, clock, policy, emulator):
    yield from serving(start_bot(db, clock, policy, emulator))
