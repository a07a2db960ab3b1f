"""Tests for the test doubles themselves: if these lie, every bot test lies."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

# tests/ is not a package today (pytest puts tests/ itself on sys.path); keep working if it becomes one.
try:
    from tests.slack_client import SlackClient
    from tests.slack_emulator import SlackEmulator
except ImportError:
    from slack_client import SlackClient
    from slack_emulator import SlackEmulator

SECRET = "test-signing-secret"


@pytest.fixture
def emu():
    emulator = SlackEmulator().start()
    yield emulator
    emulator.stop()


@pytest.fixture
def web(emu):
    return WebClient(token="xoxb-test", base_url=emu.api_url)


def test_post_message_then_update_is_stored_and_recorded(emu, web):
    posted = web.chat_postMessage(channel="C1", text="v1.2 pending", blocks=[{"type": "divider"}])
    updated = web.chat_update(channel="C1", ts=posted["ts"], text="v1.2 approved")
    second = web.chat_postMessage(channel="C1", text="reply", thread_ts=posted["ts"])

    assert updated["ts"] == posted["ts"] and updated["text"] == "v1.2 approved"
    assert float(second["ts"]) > float(posted["ts"])
    stored = emu.messages[("C1", posted["ts"])]
    assert stored["text"] == "v1.2 approved"
    assert stored["blocks"] == [{"type": "divider"}]  # update without blocks keeps them
    assert emu.messages[("C1", second["ts"])]["thread_ts"] == posted["ts"]
    assert [c.method for c in emu.calls] == ["chat.postMessage", "chat.update", "chat.postMessage"]
    first = emu.calls[0]
    assert first.token == "xoxb-test" and first.status == 200
    assert first.args == {"channel": "C1", "text": "v1.2 pending", "blocks": [{"type": "divider"}]}


def test_update_of_unknown_message_is_message_not_found(web):
    with pytest.raises(SlackApiError) as exc:
        web.chat_update(channel="C1", ts="1.000000", text="x")
    assert exc.value.response["error"] == "message_not_found"


def test_channel_not_found(emu, web):
    with pytest.raises(SlackApiError) as exc:
        web.chat_postMessage(channel="X_NOT_A_CHANNEL", text="hi")
    assert exc.value.response.status_code == 200
    assert exc.value.response["error"] == "channel_not_found"
    assert emu.messages == {}
    assert emu.calls_to("chat.postMessage")[0].response == {"ok": False, "error": "channel_not_found"}


def test_no_text(web):
    with pytest.raises(SlackApiError) as exc:
        # Raw api_call: chat_postMessage() would also warn about the missing text.
        web.api_call("chat.postMessage", json={"channel": "C1"})
    assert exc.value.response["error"] == "no_text"


def test_invalid_auth_for_unknown_token(emu):
    with pytest.raises(SlackApiError) as exc:
        WebClient(token="xoxb-wrong", base_url=emu.api_url).auth_test()
    assert exc.value.response["error"] == "invalid_auth"
    assert emu.calls[0].token == "xoxb-wrong"


def test_token_from_form_field_and_missing_token(emu):
    # slack_sdk always moves the token to the Authorization header, so use raw HTTP here.
    assert httpx.post(emu.api_url + "auth.test", data={"token": "xoxb-test"}).json()["user_id"] == "UBOT"
    assert httpx.post(emu.api_url + "auth.test").json() == {"ok": False, "error": "not_authed"}
    assert "token" not in emu.calls[0].args


def test_unknown_method(web):
    with pytest.raises(SlackApiError) as exc:
        web.api_call("chat.teleport")
    assert exc.value.response["error"] == "unknown_method"


def test_form_encoded_blocks_are_json_decoded(emu, web):
    web.api_call("chat.postMessage", params={"channel": "C1", "text": "x", "blocks": '[{"type": "divider"}]'})
    assert emu.calls[0].args["blocks"] == [{"type": "divider"}]


def test_fail_next_429_sets_retry_after_and_is_one_shot(emu, web):
    emu.fail_next("chat.postMessage", status=429, retry_after=7)

    with pytest.raises(SlackApiError) as exc:
        web.chat_postMessage(channel="C1", text="x")

    assert exc.value.response.status_code == 429
    assert exc.value.response.headers["Retry-After"] == "7"
    assert exc.value.response["error"] == "ratelimited"
    assert web.chat_postMessage(channel="C1", text="x")["ok"]
    assert [(c.status, c.injected) for c in emu.calls] == [(429, True), (200, False)]


def test_fail_next_500_for_any_method(emu, web):
    emu.fail_next("*", status=500)

    with pytest.raises(SlackApiError) as exc:
        web.users_info(user="U_ALICE")

    assert exc.value.response.status_code == 500
    assert emu.calls[0].status == 500 and emu.calls[0].injected
    assert web.users_info(user="U_ALICE")["user"]["profile"]["email"] == "u_alice@example.com"


def test_usergroups_users_list(emu, web):
    emu.user_groups["S_APPROVERS"] = ["U_BOB", "U_CAROL"]

    assert web.usergroups_users_list(usergroup="S_APPROVERS")["users"] == ["U_BOB", "U_CAROL"]
    with pytest.raises(SlackApiError) as exc:
        web.usergroups_users_list(usergroup="S_NOPE")
    assert exc.value.response["error"] == "no_such_subteam"


def test_views_open_returns_view_with_id(web):
    view = {"type": "modal", "callback_id": "release_form", "title": {"type": "plain_text", "text": "R"}, "blocks": []}
    opened = web.views_open(trigger_id="1.2.abc", view=view)["view"]
    assert opened["id"].startswith("V") and opened["callback_id"] == "release_form"
    with pytest.raises(SlackApiError) as exc:
        web.views_open(trigger_id="", view=view)
    assert exc.value.response["error"] == "invalid_trigger_id"


def test_response_url_records_json_and_answers_ok(emu):
    reply = httpx.post(emu.response_url("cmd"), json={"text": "queued"})
    assert (reply.status_code, reply.text) == (200, "ok")
    [call] = emu.calls_to("response_url")
    assert call.response_url_name == "cmd" and call.args == {"text": "queued"}


def test_wait_for_blocks_until_a_call_from_another_thread(emu, web):
    worker = threading.Thread(target=web.chat_postMessage, kwargs={"channel": "C1", "text": "later"})
    started = time.monotonic()
    worker.start()
    calls = emu.wait_for("chat.postMessage", timeout=5)
    worker.join()
    assert calls[0].args["text"] == "later"
    # Woken by the recorded call, not by running out the timeout.
    assert time.monotonic() - started < 4


def test_wait_for_timeout_ignores_failed_calls_and_summarises(emu, web):
    emu.fail_next("chat.postMessage", error="channel_not_found")
    with pytest.raises(SlackApiError):
        web.chat_postMessage(channel="C1", text="x")

    with pytest.raises(AssertionError, match=r"chat\.postMessage -> 200 channel_not_found \(injected\)"):
        emu.wait_for("chat.postMessage", timeout=0.05)


def test_reset_clears_calls_failures_and_messages(emu, web):
    web.chat_postMessage(channel="C1", text="x")
    emu.fail_next("auth.test", status=503)
    emu.reset()
    assert emu.calls == [] and emu.messages == {}
    assert web.auth_test()["ok"]


def test_signed_headers_verify_with_slack_sdk():
    body = "command=%2Frelease&text=v1.2"
    with SlackClient("http://unused", SECRET) as client:
        headers = client.signed_headers(body)
        stale = client.signed_headers(body, timestamp=1_000_000)

    assert SignatureVerifier(SECRET).is_valid_request(body, headers)
    assert not SignatureVerifier("another-secret").is_valid_request(body, headers)
    assert not SignatureVerifier(SECRET).is_valid_request(body + "&x=1", headers)
    assert not SignatureVerifier(SECRET).is_valid_request(body, stale)


@pytest.fixture
def bolt_url(emu):
    """A real Bolt app behind a minimal HTTP server, to prove the client's payloads parse like Slack's."""
    app = App(
        client=WebClient(token="xoxb-test", base_url=emu.api_url),
        signing_secret=SECRET,
        process_before_response=True,  # listeners finish before the HTTP answer: no waiting in tests
    )
    seen = {}

    @app.command("/release")
    def on_command(ack, command, respond):
        ack()
        seen["command"] = (command["text"], command["user_id"], command["channel_id"])
        respond("queued")

    @app.action("approve")
    def on_approve(ack, body, action):
        ack()
        seen["action"] = (action["value"], body["user"]["id"], body["message"]["text"])

    @app.view("release_form")
    def on_submit(ack, view):
        ack()
        seen["view"] = (view["state"]["values"], view["private_metadata"])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            resp = app.dispatch(BoltRequest(body=body, headers={k: v for k, v in self.headers.items()}))
            payload = resp.body.encode()
            self.send_response(resp.status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_client_payloads_are_accepted_by_bolt(emu, web, bolt_url):
    url, seen = bolt_url
    posted = web.chat_postMessage(channel="C_RELEASES", text="Approve v1.2?")
    state = {"version": {"input": {"type": "plain_text_input", "value": "1.2"}}}

    with SlackClient(url, SECRET, emulator=emu) as slack:
        assert slack.command("v1.2 go", user="U_ALICE").status_code == 200
        assert slack.block_action("approve", "yes", user="U_BOB", message_ts=posted["ts"]).status_code == 200
        assert slack.view_submission("release_form", state, private_metadata="m1").status_code == 200
        assert slack.command("x", retry_num=1).status_code == 200

    assert seen["command"] == ("x", "U_ALICE", "C_RELEASES")
    assert seen["action"] == ("yes", "U_BOB", "Approve v1.2?")
    assert seen["view"] == (state, "m1")
    assert [c.args["text"] for c in emu.calls_to("response_url")] == ["queued", "queued"]


def test_bolt_rejects_forged_and_stale_requests(bolt_url):
    url, seen = bolt_url
    body = "command=%2Frelease&text=evil&user_id=U_EVE"
    with SlackClient(url, SECRET) as slack:
        forged = SlackClient(url, "wrong-secret")
        try:
            assert forged.post_raw(body, forged.signed_headers(body)).status_code == 401
        finally:
            forged.close()
        assert slack.post_raw(body, {"Content-Type": "application/x-www-form-urlencoded"}).status_code == 401
        assert slack.command("v1", timestamp=1_000_000).status_code == 401
    assert "command" not in seen


def test_users_can_be_missing_deactivated_or_bots(emu, web):
    emu.missing_users.add("U0GONE")
    emu.deleted_users.add("U0LEFT")
    emu.bot_users.add("U0BOT")
    with pytest.raises(SlackApiError) as exc:
        web.users_info(user="U0GONE")
    assert exc.value.response["error"] == "user_not_found"
    with pytest.raises(SlackApiError):
        web.users_lookupByEmail(email="u0gone@example.com")
    assert web.users_info(user="U0LEFT")["user"]["deleted"] is True
    assert web.users_lookupByEmail(email="u0bot@example.com")["user"]["is_bot"] is True
    assert web.users_info(user="U_ALICE")["user"]["deleted"] is False


def test_bridge_methods_answer_like_slack():
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    from slack_emulator import SlackEmulator

    def code(call) -> str:
        with pytest.raises(SlackApiError) as err:
            call()
        return err.value.response["error"]

    with SlackEmulator() as emu:
        c = WebClient(token="xoxb-test", base_url=emu.api_url)
        ch = c.conversations_create(name="rel-1-payments-emergency")["channel"]["id"]
        assert code(lambda: c.conversations_create(name="rel-1-payments-emergency")) == "name_taken"
        assert code(lambda: c.conversations_create(name="Has Spaces")) == "invalid_name_specials"
        assert code(lambda: c.conversations_create(name="x" * 81)) == "invalid_name_maxlength"
        c.conversations_invite(channel=ch, users="U1,U2")
        assert code(lambda: c.conversations_invite(channel=ch, users="U2")) == "already_in_channel"
        assert code(lambda: c.conversations_invite(channel="C0NONE", users="U2")) == "channel_not_found"
        [listed] = c.conversations_list(exclude_archived=True)["channels"]
        assert listed["name"] == "rel-1-payments-emergency" and listed["creator"] == "UBOT"
        ts = c.chat_postMessage(channel=ch, text="card")["ts"]
        reply = emu.post_as(ch, "U1", "in thread", thread_ts=ts)
        c.pins_add(channel=ch, timestamp=ts)
        assert code(lambda: c.pins_add(channel=ch, timestamp=ts)) == "already_pinned"
        assert code(lambda: c.pins_add(channel=ch, timestamp="1.2")) == "message_not_found"
        assert [m["ts"] for m in c.conversations_history(channel=ch, latest=ts, inclusive=True, limit=1)["messages"]] \
            == [ts]
        assert [m["ts"] for m in c.conversations_history(channel=ch)["messages"]] == [ts]  # no replies
        got = c.conversations_replies(channel=ch, ts=ts, oldest=reply, latest=reply, inclusive=True)["messages"]
        assert [m["ts"] for m in got] == [ts, reply]
        emu.unreadable.add(ch)
        assert code(lambda: c.conversations_history(channel=ch)) == "not_in_channel"
        c.conversations_archive(channel=ch)
        assert code(lambda: c.conversations_archive(channel=ch)) == "already_archived"
        assert code(lambda: c.chat_postMessage(channel=ch, text="x")) == "is_archived"
        assert c.conversations_list(exclude_archived=True)["channels"] == []
def test_a_channel_the_bot_is_not_in_refuses_posts_and_says_so_in_conversations_info(emu, web):
    emu.not_member.add("C_OUTSIDE")
    for call in (lambda: web.chat_postMessage(channel="C_OUTSIDE", text="hi"),
                 lambda: web.chat_postEphemeral(channel="C_OUTSIDE", user="U_ALICE", text="hi")):
        with pytest.raises(SlackApiError) as exc:
            call()
        assert exc.value.response["error"] == "not_in_channel"
    assert web.conversations_info(channel="C_OUTSIDE")["channel"]["is_member"] is False
    assert web.conversations_info(channel="C_RELEASES")["channel"]["is_member"] is True


def test_a_dm_between_people_is_invisible_and_a_user_id_opens_the_bots_own_dm(emu, web):
    with pytest.raises(SlackApiError) as exc:
        web.chat_postEphemeral(channel="D0PEOPLE", user="U_ALICE", text="hi")
    assert exc.value.response["error"] == "channel_not_found"
    with pytest.raises(SlackApiError):
        web.chat_postEphemeral(channel="U_ALICE", user="U_ALICE", text="hi")  # ephemeral needs a channel
    sent = web.chat_postMessage(channel="U_ALICE", text="hello")
    assert sent["channel"] == "DU_ALICE" and ("DU_ALICE", sent["ts"]) in emu.messages
    assert emu.said_to("U_ALICE") == ["hello"]
