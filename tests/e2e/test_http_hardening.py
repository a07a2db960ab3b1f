"""The public port under hostile or heavy traffic: nothing unsigned is parsed, nothing big is read, idle
sockets and calendar clients cannot take Slack's capacity."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

import bot.feed as feed_module
from conftest import SIGNING_SECRET
from test_process import ROOT, base_env, free_port, run, wait_until_serving

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# --- bodies are capped and verified before anything parses them -----------------------------------------------

def test_an_unsigned_body_that_is_not_utf8_is_401_not_a_traceback(bot):
    r = bot.slack.post_raw(b"payload=\xff\xfe\xfa" * 1000, FORM)
    assert r.status_code == 401 and "Traceback" not in r.text
    assert bot.emulator.calls == []


@pytest.mark.parametrize("body", [b"", b"payload=%7B", b"\x00" * 10, b"command=/release&text=" + b"%" * 50])
def test_malformed_unsigned_bodies_are_refused_never_500(bot, body):
    r = bot.slack.post_raw(body, FORM)
    assert r.status_code in (400, 401) and "Traceback" not in r.text


def test_a_forged_signature_is_401_before_bolt_reads_the_body(bot):
    body = b"command=%2Frelease&text=status&user_id=U0DEV\xff"
    headers = {**FORM, "X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=" + "0" * 64}
    r = bot.slack.post_raw(body, headers)
    assert r.status_code == 401 and "Traceback" not in r.text


def test_a_signed_but_stale_request_is_401(bot):
    r = bot.slack.command("status", user="U0DEV", timestamp=int(time.time()) - 3600)
    assert r.status_code == 401


def test_a_signed_body_over_the_cap_is_413(bot):
    body = "text=" + "a" * (1024 * 1024 + 10)
    r = bot.slack.post_raw(body.encode(), bot.slack.signed_headers(body))
    assert r.status_code == 413
    assert bot.emulator.calls == []


def test_a_signed_body_within_the_cap_is_still_answered(bot):
    assert bot.command("status", user="U0DEV").status_code == 200


def test_an_oversized_api_body_is_401_without_a_token_and_413_with_one(bot):
    big = b"{" + b" " * (200 * 1024) + b"}"
    assert httpx.post(f"{bot.url}/api/v1/releases/REL-1/deployments", content=big).status_code == 401


# --- a real `releasebot serve`: waitress's own limits --------------------------------------------------------

@pytest.fixture
def served(emulator, db_url):
    assert run(["migrate"], base_env(emulator, db_url)).returncode == 0
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], cwd=ROOT,
                            env=base_env(emulator, db_url, PORT=str(port)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, proc)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.parametrize("path", [b"/slack/events", b"/api/v1/releases/REL-1/deployments"])
def test_a_200_mib_content_length_is_413_before_the_body_is_sent(served, path):
    with socket.create_connection(("127.0.0.1", served), timeout=10) as s:
        s.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                  b"Content-Length: 209715200\r\n\r\n" + b"a" * 1024)
        head = s.recv(200)  # the answer comes without the other 200 MiB
    assert head.startswith(b"HTTP/1.1 413")


def test_signed_commands_are_acknowledged_while_150_idle_sockets_are_held(served, emulator):
    from slack_client import SlackClient
    idle = []
    try:
        for _ in range(150):
            s = socket.create_connection(("127.0.0.1", served), timeout=10)
            s.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\n")  # half a request, then nothing
            idle.append(s)
        with SlackClient(f"http://127.0.0.1:{served}", SIGNING_SECRET, emulator=emulator) as slack:
            acks = [slack.command("status", user="U0DEV").status_code for _ in range(5)]
        assert acks == [200] * 5
    finally:
        for s in idle:
            s.close()


# --- the feed cannot starve Slack ----------------------------------------------------------------------------

def test_twenty_commands_are_acknowledged_while_twelve_feed_renders_are_held(bot, monkeypatch):
    release, lock = threading.Event(), threading.Lock()
    rendering = {"now": 0, "most": 0}
    render = feed_module.feed

    def held(*args, **kwargs):
        with lock:
            rendering["now"] += 1
            rendering["most"] = max(rendering["most"], rendering["now"])
        release.wait(30)
        with lock:
            rendering["now"] -= 1
        return render(*args, **kwargs)

    monkeypatch.setattr(feed_module, "feed", held)
    urls = [f"{bot.url}/calendar.ics?token={feed_module.token_for(bot.svc, f'U0FEED{i}')}" for i in range(12)]
    with ThreadPoolExecutor(12) as pool:
        try:
            feeds = [pool.submit(httpx.get, u, timeout=60) for u in urls]
            deadline = time.monotonic() + 10
            # every request is either rendering (held) or answered, or every server thread is held
            while not (rendering["now"] >= 2 and (sum(f.done() for f in feeds) + rendering["now"] == 12
                                                  or rendering["now"] >= 8)):
                assert time.monotonic() < deadline, f"feed requests neither rendering nor answered: {rendering}"
                time.sleep(0.01)
            acks = [bot.slack.command("status", user="U0DEV").status_code for _ in range(20)]
            assert acks == [200] * 20
            assert not release.is_set() and rendering["now"] >= 2  # every ack came while feeds were held
        finally:
            release.set()
        answers = [f.result() for f in feeds]
    bot.idle()
    statuses = sorted(a.status_code for a in answers)
    assert rendering["most"] <= 2
    assert statuses.count(200) == rendering["most"] and statuses.count(503) == 12 - rendering["most"]
    assert all(a.headers.get("Retry-After", "").isdigit() for a in answers if a.status_code == 503)


# --- the pipeline API cannot starve Slack either -------------------------------------------------------------

API_TOKEN = "dp-0123456789abcdef0123"


@pytest.fixture
def api_bot(db, clock, policy, emulator):
    from conftest import start_bot
    from test_calendar import serving
    running = start_bot(db, clock, policy, emulator, {"RELEASEBOT_API_TOKENS": f"deploy-pipeline={API_TOKEN}"})
    yield from serving(running)
    running.executor.shutdown(wait=True)


def test_commands_are_acknowledged_while_slow_api_requests_hold_their_share(api_bot, monkeypatch):
    import bot.api as api_module
    release, lock, inside = threading.Event(), threading.Lock(), {"now": 0}
    route = api_module._route

    def slow(*args, **kwargs):
        with lock:
            inside["now"] += 1
        release.wait(30)
        return route(*args, **kwargs)

    monkeypatch.setattr(api_module, "_route", slow)
    gate = f"{api_bot.url}/api/v1/releases/REL-1/gate?actor=U0PL"
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    with ThreadPoolExecutor(10) as pool:
        try:
            calls = [pool.submit(httpx.get, gate, headers=auth, timeout=60) for _ in range(10)]
            deadline = time.monotonic() + 10
            while not (sum(c.done() for c in calls) + inside["now"] == 10 or inside["now"] >= 8):
                assert time.monotonic() < deadline, f"API requests neither held nor answered: {inside}"
                time.sleep(0.01)
            acks = [api_bot.slack.command("status", user="U0DEV").status_code for _ in range(10)]
            assert acks == [200] * 10 and not release.is_set()
        finally:
            release.set()
        answers = [c.result() for c in calls]
    api_bot.idle()
    busy = [a for a in answers if a.status_code == 503]
    assert len(busy) == 10 - 3 and all(a.headers["Retry-After"].isdigit() for a in busy)
