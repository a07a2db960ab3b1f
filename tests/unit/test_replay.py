"""Delivery identity: which Slack deliveries are "the same one", and the claim that makes the second one a no-op."""
from __future__ import annotations

from datetime import timedelta

from bot.replay import identity
from storage import replay as seen

USER = {"id": "U0QA", "username": "u0qa", "team_id": "T0001"}


def test_slash_command_is_identified_by_its_trigger_id():
    body = {"command": "/release", "text": "go REL-1", "user_id": "U0QA", "trigger_id": "13345.98765.abcd"}
    assert identity(body) == "command:13345.98765.abcd"


def test_block_action_is_identified_by_user_and_action_ts():
    body = {"type": "block_actions", "user": USER, "trigger_id": "1.2.x",
            "actions": [{"action_id": "vote_go", "value": "1", "action_ts": "1700000000.123456"}]}
    assert identity(body) == "action:U0QA:1700000000.123456"
    # the same person's next click is another delivery, however alike
    later = {**body, "actions": [{**body["actions"][0], "action_ts": "1700000002.000001"}]}
    assert identity(later) != identity(body)
    # and another person's click at the same instant is too
    assert identity({**body, "user": {**USER, "id": "U0RM"}}) != identity(body)


def test_view_submission_is_identified_by_view_id_and_hash():
    body = {"type": "view_submission", "user": USER, "trigger_id": "1.2.y",
            "view": {"id": "V0123", "hash": "1700000000.Xy9", "callback_id": "nogo_reason"}}
    assert identity(body) == "view:V0123:1700000000.Xy9"
    # the same modal after Slack redrew it (a new hash) is a new submission
    assert identity({**body, "view": {**body["view"], "hash": "1700000009.Ab1"}}) != identity(body)


def test_event_callback_is_identified_by_event_id():
    body = {"type": "event_callback", "event_id": "Ev0PV52K21", "event": {"type": "app_mention"}}
    assert identity(body) == "event:Ev0PV52K21"


def test_shortcuts_are_identified_by_their_trigger_id():
    glob = {"type": "shortcut", "callback_id": "new_release", "trigger_id": "944.98.ab", "user": USER,
            "action_ts": "1700000000.1"}
    message = {**glob, "type": "message_action", "trigger_id": "944.98.cd"}
    assert identity(glob) == "shortcut:944.98.ab"
    assert identity(message) == "shortcut:944.98.cd"


def test_what_has_no_identity_is_not_claimed():
    assert identity({"type": "block_suggestion", "user": USER, "value": "pay"}) is None
    assert identity({"type": "url_verification", "challenge": "x"}) is None
    assert identity({"type": "block_actions", "user": USER, "actions": []}) is None
    assert identity({"command": "/release", "text": "help"}) is None  # no trigger_id to tell deliveries apart


def test_an_overlong_identity_still_fits_the_column():
    key = identity({"type": "view_submission", "view": {"id": "V" * 200, "hash": "h" * 200}})
    assert key is not None and len(key) <= 255
    assert key == identity({"type": "view_submission", "view": {"id": "V" * 200, "hash": "h" * 200}})


def test_the_first_claim_wins_and_the_second_is_already_done(db, clock):
    assert seen.claim(db, "action:U0QA:1.1", clock.now())
    assert not seen.claim(db, "action:U0QA:1.1", clock.now())
    assert seen.claim(db, "action:U0QA:1.2", clock.now())


def test_a_released_claim_can_be_claimed_again(db, clock):
    assert seen.claim(db, "view:V1:h", clock.now())
    seen.release(db, "view:V1:h")
    assert seen.claim(db, "view:V1:h", clock.now())


def test_prune_keeps_the_replay_window_and_its_margin(db, clock):
    seen.claim(db, "command:old", clock.now())
    clock.advance(minutes=5)
    seen.claim(db, "command:recent", clock.now())
    # Slack accepts a signature up to five minutes off either way: keep what could still verify
    assert seen.KEEP > seen.WINDOW + timedelta(minutes=5)
    assert seen.prune(db, clock.now() + seen.KEEP - timedelta(minutes=5)) == 0
    assert seen.prune(db, clock.now() + seen.KEEP - timedelta(minutes=4)) == 1
    assert not seen.claim(db, "command:recent", clock.now())  # still inside its window
    assert seen.claim(db, "command:old", clock.now())  # long gone: Slack would refuse its signature anyway


def test_the_scheduler_prunes_seen_deliveries(db, clock, policy):
    from bot.config import load_config
    from bot.scheduler import build_scheduler
    from bot.services import build_services

    svc = build_services(load_config({"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "s",
                                      "SLACK_API_URL": "http://127.0.0.1:9/api/", "RELEASE_CHANNEL": "C0R"}),
                         db, clock, policy)
    seen.claim(db, "event:Ev1", clock.now())
    job = build_scheduler(svc).get_job("seen_deliveries")
    clock.advance(minutes=16)
    job.func()
    assert seen.claim(db, "event:Ev1", clock.now())
