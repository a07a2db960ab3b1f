"""`releasebot` as an operator runs it: a real process, real configuration, real signals."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory

from conftest import SIGNING_SECRET
from storage.migrate import alembic_config

ROOT = Path(__file__).resolve().parents[2]


def run(args, env, timeout=60):
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def base_env(emulator, db_url, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "RELEASE"))}
    env.update({"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_API_URL": emulator.api_url, "RELEASE_CHANNEL": "C0RELEASES", "DATABASE_URL": db_url})
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    """Wait for another process to start listening: there is no clock to inject across processes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None, "releasebot serve did not start"
        time.sleep(0.1)


def test_missing_configuration_is_one_paragraph_and_exit_2(emulator, db_url):
    env = base_env(emulator, db_url)
    for key in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "RELEASE_CHANNEL"):
        del env[key]
    done = run(["serve"], env)
    assert done.returncode == 2
    for key in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "RELEASE_CHANNEL"):
        assert key in done.stderr
    assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0


def test_invalid_policy_stops_start_up_naming_file_and_key(emulator, db_url, tmp_path):
    bad = tmp_path / "policy.toml"
    bad.write_text('[types.minor]\nlead_time = "a week"\n')
    done = run(["serve"], base_env(emulator, db_url, RELEASE_POLICY=str(bad)))
    assert done.returncode == 2
    assert str(bad) in done.stderr and "types.minor.lead_time" in done.stderr and "Traceback" not in done.stderr


def test_rejected_bot_token_is_a_clear_exit_2(emulator, db_url):
    done = run(["serve"], base_env(emulator, db_url, SLACK_BOT_TOKEN="xoxb-revoked"))
    assert done.returncode == 2 and "invalid_auth" in done.stderr and "Traceback" not in done.stderr


def test_unusable_database_is_a_clear_exit_2(emulator):
    done = run(["migrate"], base_env(emulator, "postgresql://nobody@127.0.0.1:1/none"))
    assert done.returncode == 2 and "DATABASE_URL" in done.stderr and "Traceback" not in done.stderr


def test_migrate_then_serve_answers_slack_and_stops_on_sigterm(emulator, db_url):
    from slack_client import SlackClient
    assert run(["migrate"], base_env(emulator, db_url)).returncode == 0
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], cwd=ROOT,
                            env=base_env(emulator, db_url, PORT=str(port)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    with stopped_at_the_end(proc, log):
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url, proc)
        with SlackClient(url, SIGNING_SECRET, emulator=emulator) as slack:
            r = slack.command('request service=payments version=1.0.0 type=minor flags=feature '
                              'start="2027-01-05 10:00" '
                              'tz=UTC duration=30m summary="from a real process"', user="U0DEV")
            assert r.status_code == 200
            [post] = emulator.wait_for("chat.postMessage", timeout=15)
            assert "payments" in str(post.args["blocks"])
            assert slack.post_raw("x=1", {"Content-Type": "application/x-www-form-urlencoded"}).status_code == 401
    assert "Traceback" not in log[0]


@contextmanager
def stopped_at_the_end(proc, log: list[str]):
    """Run the block against `proc`; after it, SIGTERM must end the process cleanly (exit 0). If the block
    or the stop fails, the process is killed. Its whole log is appended to `log` either way."""
    try:
        yield proc
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.append(proc.stdout.read())


@pytest.mark.parametrize("sub", ["migrate"])
def test_migrate_is_idempotent(emulator, db_url, sub):
    env = base_env(emulator, db_url)
    assert run([sub], env).returncode == 0
    again = run([sub], env)
    assert again.returncode == 0 and "latest schema" in again.stdout


def test_app_token_selects_socket_mode_and_a_rejected_one_is_a_clear_exit_2(emulator, db_url):
    done = run(["serve"], base_env(emulator, db_url, SLACK_APP_TOKEN="xapp-unknown"))
    assert done.returncode == 2 and "SLACK_APP_TOKEN" in done.stderr and "Traceback" not in done.stderr
    [opened] = emulator.calls_to("apps.connections.open")
    assert opened.token == "xapp-unknown"


def serve_until_up(env) -> str:
    """Start `releasebot serve`, wait until it serves, stop it with SIGTERM; its whole log."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], cwd=ROOT, env={**env, "PORT": str(port)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    with stopped_at_the_end(proc, log):
        wait_until_serving(f"http://127.0.0.1:{port}", proc)
    assert "Traceback" not in log[0]
    return log[0]


def facts(out: str) -> list[str]:
    """The log's messages, without time and level."""
    return [line.split(": ", 1)[1] if ": " in line else line for line in out.splitlines() if line.strip()]


def test_start_up_log_is_one_line_per_fact(emulator, db_url):
    out = serve_until_up(base_env(emulator, db_url))
    said = facts(out)
    # the policy's empty roles are a fact too (no policy file here): one line
    assert [f.split(":")[0] for f in said if not f.startswith("nobody holds")] == [
        "database", "channel", "audit checkpoints", "mode", "listening on "]
    database = next(f for f in said if f.startswith("database: "))
    dialect = "postgresql" if db_url.startswith("postgres") else "sqlite"
    # the head read from the migrations themselves: a new migration must not break this test
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert database.startswith(f"database: {dialect} at ") and f"schema {head}" in database
    assert "postgres@" not in database and "password" not in database
    assert "channel: C0RELEASES, the bot is a member" in said
    assert "mode: HTTP, Slack sends its requests to /slack/events (signed)" in said
    assert any(f.startswith("audit checkpoints: off (RELEASEBOT_AUDIT_KEY is not set)") for f in said)
    # alembic's "setup plugin"/"Context impl"/"Running upgrade" lines and Bolt's "token will be ignored" are gone
    assert "alembic" not in out and "token" not in out and "Serving on" not in out


def test_start_up_says_in_one_line_that_the_bot_is_not_in_the_release_channel(emulator, db_url):
    emulator.not_member.add("C0RELEASES")
    out = serve_until_up(base_env(emulator, db_url))
    [line] = [f for f in facts(out) if f.startswith("channel")]
    assert "not a member of C0RELEASES" in line and "/invite @releasebot" in line
    assert out.count("/invite @releasebot") == 1


def test_slack_unreachable_at_start_up_is_said_and_start_up_goes_on(emulator, db_url):
    env = base_env(emulator, db_url, SLACK_API_URL=f"http://127.0.0.1:{free_port()}/api/")
    out = serve_until_up(env)
    [line] = [f for f in facts(out) if f.startswith("channel")]
    assert "could not check that the bot is a member of C0RELEASES" in line and "Slack unreachable" in line
    assert any(f.startswith("listening on ") for f in facts(out))
