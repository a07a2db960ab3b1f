"""Fault script: another writer holds the database; how long do show, list and the acks take?

Starts `releasebot serve` (its own process, waitress, as in production) against a fresh
database, requests one release, then takes the database from this process, as a long write
would (SQLite: BEGIN IMMEDIATE in a connection of its own; PostgreSQL: every table LOCKed IN
EXCLUSIVE MODE, which lets reads through and holds every write), and while it holds it sends:
`/release show`, `/release list`, a Go click, a request form submission and `/release blackout add`.
For each it prints the ack's time, the time until the answer reached Slack (response_url, or
the ack itself), and what the answer said. Then it lets go and sends the same Go click again.

    .venv/bin/python benchmarks/lock_wait.py [--database-url URL]

Without --database-url a fresh SQLite file in a temporary directory is used; with a PostgreSQL
URL a scratch database is made beside it and dropped at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py puts the repo and tests/ on the path
from common import ROOT, free_port, scratch_database  # noqa: E402
from ack_latency import CHANNEL, SIGNING_SECRET, Process, backend_name  # noqa: E402

from sqlalchemy import text  # noqa: E402

from held_locks import writer_holds_the_database  # noqa: E402
from slack_client import SlackClient  # noqa: E402
from slack_emulator import SlackEmulator  # noqa: E402
from storage.db import make_engine  # noqa: E402

LINE = ('request service=payments version=2.3.1 type=minor flags=feature start="2027-01-12 14:00" '
        'tz=Europe/London duration=60m summary="Add refunds"')
BLACKOUT = 'blackout add name="Peak trading" start="2027-02-01 00:00" end="2027-02-03 00:00" tz=UTC'
FORM = {
    "answers": {"answers": {"type": "checkboxes", "selected_options": [{"value": "feature"}]}},
    "type": {"type": {"type": "static_select", "selected_option": None}},
    "service": {"service": {"type": "plain_text_input", "value": "search"}},
    "version": {"version": {"type": "plain_text_input", "value": "1.0.0"}},
    "env": {"env": {"type": "static_select", "selected_option": {"value": "production"}}},
    "start_date": {"start_date": {"type": "datepicker", "selected_date": "2027-01-13"}},
    "start_time": {"start_time": {"type": "timepicker", "selected_time": "14:00"}},
    "tz": {"tz": {"type": "plain_text_input", "value": "Europe/London"}},
    "duration": {"duration": {"type": "plain_text_input", "value": "60m"}},
    "summary": {"summary": {"type": "plain_text_input", "value": "Faster search"}},
    "risk": {"risk": {"type": "plain_text_input", "value": None}},
    "rollback": {"rollback": {"type": "plain_text_input", "value": "redeploy"}},
    "links": {"links": {"type": "plain_text_input", "value": None}},
}
ANSWER_DEADLINE = 40.0  # seconds: longer than the 30 s the old code waited, so a wait shows as a number
CLIENT_TIMEOUT = 40.0


def wait_for(check, deadline: float):
    """Poll `check` until it returns something, or until `deadline` seconds have passed (then None)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(0.02)
    return None


def told(emulator: SlackEmulator) -> list:
    """What the person was told after an ack: on the response_url, or ephemerally."""
    return sorted(emulator.calls_to("response_url") + emulator.calls_to("chat.postEphemeral"), key=lambda c: c.at)


def measure(emulator: SlackEmulator, name: str, send, answered_in_ack) -> tuple[str, float, float | None, str]:
    """(name, ack ms, answer ms or None, answer text)."""
    before = len(told(emulator))
    t0, wall0 = time.perf_counter(), time.time()
    try:
        response = send()
        ack_ms = (time.perf_counter() - t0) * 1000
    except Exception as exc:  # noqa: BLE001 - a timed-out ack is a result here
        return name, (time.perf_counter() - t0) * 1000, None, f"no ack: {type(exc).__name__}"
    if answered_in_ack(response):
        return name, ack_ms, ack_ms, _ack_text(response)
    call = wait_for(lambda: told(emulator)[before:], ANSWER_DEADLINE)
    if not call:
        return name, ack_ms, None, "no answer"
    return name, ack_ms, (call[0].at - wall0) * 1000, (call[0].args.get("text") or "")[:70]


def _ack_text(response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:70]
    return json.dumps(body.get("errors") or body.get("text") or body)[:70]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None, help="sqlite:///path or postgresql://user@host:port/db")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        url = scratch_database(args.database_url, stack, label="lockwait")
        db = make_engine(url)
        stack.callback(db.dispose)
        emulator = SlackEmulator().start()
        stack.callback(emulator.stop)
        policy = stack.enter_context(tempfile.TemporaryDirectory(prefix="releasebot-lockwait-")) + "/policy.toml"
        Path(policy).write_text((ROOT / "policy.toml").read_text().replace('qa_lead = []', 'qa_lead = ["U0QA"]')
                                .replace('release_manager = []', 'release_manager = ["U0RM"]'))
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "RELEASE"))},
               "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
               "SLACK_API_URL": emulator.api_url, "RELEASE_CHANNEL": CHANNEL, "DATABASE_URL": url,
               "RELEASE_POLICY": policy}
        port = free_port()
        bot = Process([sys.executable, "-m", "bot.cli", "serve"], {**env, "PORT": str(port)}, port)
        stack.callback(bot.close)
        slack = stack.enter_context(SlackClient(bot.url, SIGNING_SECRET, emulator=emulator))
        slack._http.timeout = CLIENT_TIMEOUT

        slack.command(LINE, user="U0DEV", channel=CHANNEL)
        post = wait_for(lambda: emulator.calls_to("chat.postMessage"), 30)
        if not post:
            raise RuntimeError("the bot did not post the approval message")
        where = dict(channel=post[0].response["channel"], message_ts=post[0].response["ts"])
        sent: list = []
        keep = slack.post_raw

        def recording(body, headers):
            sent.append((body, headers))
            return keep(body, headers)

        slack.post_raw = recording
        ack_only = lambda r: False  # noqa: E731 - answered on response_url
        in_ack = lambda r: True  # noqa: E731
        results = []
        t_held = time.perf_counter()
        with writer_holds_the_database(url):
            results.append(measure(emulator, "show REL-1", lambda: slack.command("show REL-1", user="U0DEV",
                                                                                 channel=CHANNEL), ack_only))
            results.append(measure(emulator, "list", lambda: slack.command("list", user="U0DEV", channel=CHANNEL),
                                   ack_only))
            results.append(measure(emulator, "Go click", lambda: slack.block_action("vote_go", "1", user="U0QA",
                                                                                  **where), ack_only))
            go = sent[-1]
            results.append(measure(emulator, "request form", lambda: slack.view_submission(
                "release_request", FORM, user="U0DEV"), in_ack))
            results.append(measure(emulator, "blackout add", lambda: slack.command(BLACKOUT, user="U0RM",
                                                                                   channel=CHANNEL), in_ack))
            held = time.perf_counter() - t_held
        results.append(measure(emulator, "Go click, sent again after", lambda: keep(*go), ack_only))
        with db.connect() as conn:
            votes = conn.execute(text("SELECT count(*) FROM vote")).scalar_one()

        print(f"lock waits: another connection held the {backend_name(url)} database for {held:.1f} s "
              "while these were sent (client timeout 40 s)")
        print(f"{'request':<28}{'ack ms':>9}{'answer ms':>11}  answer")
        for name, ack_ms, answer_ms, said in results:
            shown = f"{answer_ms:>11.0f}" if answer_ms is not None else f"{'-':>11}"
            print(f"{name:<28}{ack_ms:>9.0f}{shown}  {said}")
        print(f"votes recorded: {votes} (the busy click kept nothing; the same click sent again counted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
