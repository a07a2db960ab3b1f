"""App Home through Slack (issue 13): signed app_home_opened events publish one Home per role, its buttons
are the channel's own, the tab is drawn again after acting on it, and a second open within a minute is
drawn from the data already read."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from sqlmodel import Session

from storage.models import NonConformance, Release, Task

from package_steps import form_values, ready

UTC = timezone.utc
LINE = ('request service=payments version={version} type=minor flags=feature start="2026-12-15 10:00" tz=UTC '
        'duration=60m summary="Add refunds"')
IN_WINDOW = datetime(2026, 12, 15, 10, 5, tzinfo=UTC)
ALL_CHECKED = {"checklist": {"checklist": {"selected_options": [{"value": "monitoring"}, {"value": "rollback"},
                                                                 {"value": "oncall"}]}}}


def open_home(bot, user: str, **kw) -> dict | None:
    bot.slack.app_home_opened(user, **kw)
    bot.idle()
    return bot.emulator.home_views.get(user)


def publishes(bot, user: str) -> list:
    return [c for c in bot.emulator.calls_to("views.publish") if c.args.get("user_id") == user and c.ok]


def text_of(view: dict) -> str:
    return json.dumps(view["blocks"], ensure_ascii=False)


def buttons(view: dict) -> list[tuple[str, str]]:
    found = [e for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]]
    found += [b["accessory"] for b in view["blocks"] if b.get("accessory")]
    return [(e["action_id"], e["value"]) for e in found]


def request(bot, version: str = "2.3.1", user: str = "U0DEV"):
    bot.command(LINE.format(version=version), user=user)


def test_an_approver_sees_what_awaits_their_vote_votes_from_the_tab_and_sees_it_redrawn(bot, db):
    request(bot)
    request(bot, "2.3.2", user="U0QAGROUP")  # their own request: they cannot vote on it
    # U0QAGROUP holds qa_lead only through the user group S0QALEADS, resolved through Slack
    view = open_home(bot, "U0QAGROUP")
    shown = text_of(view)
    assert view["type"] == "home" and len(view["blocks"]) <= 100
    assert "Awaiting your vote (1)" in shown and "your Go fills *qa_lead*" in shown
    assert ("vote_go", "1") in buttons(view) and ("vote_nogo", "1") in buttons(view)
    assert ("vote_go", "2") not in buttons(view)
    assert "Live releases you cannot vote on (1)" in shown and "You requested REL-2, so you cannot vote on it" in shown

    bot.slack.home_action("vote_go", "1", user="U0QAGROUP", view=view)
    bot.idle()
    with Session(db) as s:
        assert s.get(Release, 1).state == "pending"  # the release manager's Go is still needed
    assert len(publishes(bot, "U0QAGROUP")) == 2  # drawn again after the vote, from the record as it now is
    after = text_of(bot.emulator.home_views["U0QAGROUP"])
    assert "Awaiting your vote (0)" in after and "Your Go on REL-1 as qa_lead is already recorded." in after
    assert any("recorded as qa_lead" in t for t in bot.emulator.said_to("U0QAGROUP"))  # answered, by DM


def test_a_no_go_from_the_tab_opens_the_channels_form_and_its_submission_redraws_the_tab(bot, db):
    request(bot)
    view = open_home(bot, "U0RM")
    bot.slack.home_action("vote_nogo", "1", user="U0RM", view=view)
    bot.idle()
    form = bot.emulator.calls_to("views.open")[-1].args["view"]
    assert form["callback_id"] == "nogo_reason"
    bot.submit("nogo_reason", {"reason": {"reason": {"value": "load test failed"}}}, user="U0RM",
               private_metadata=form["private_metadata"])
    assert len(publishes(bot, "U0RM")) == 2
    after = text_of(bot.emulator.home_views["U0RM"])
    assert "Blocked releases (1)" in after and "No-go from U0RM (release_manager): load test failed" in after


def test_a_deployer_sees_approved_releases_whose_window_is_near_or_open_and_starts_one_from_the_tab(bot, db, clock):
    request(bot)
    request(bot, "2.3.2")
    ready(bot, 1)  # the test phases and documents the gate asks for (QMS 4.3, 4.4)
    for user in ("U0RM", "U0QA"):
        bot.command("go REL-1", user=user)
    assert "Approved, window open or near (0)" in text_of(open_home(bot, "U0PL"))  # three weeks away

    clock.set(IN_WINDOW - timedelta(hours=3))
    shown = text_of(open_home(bot, "U0PL"))
    assert "Approved, window open or near (1)" in shown and "window opens" in shown and "REL-2" not in shown
    clock.set(IN_WINDOW)
    view = open_home(bot, "U0PL")
    assert "window open now" in text_of(view) and ("deploy_start", "1") in buttons(view)

    bot.slack.home_action("deploy_start", "1", user="U0PL", view=view)
    bot.idle()
    form = bot.emulator.calls_to("views.open")[-1].args["view"]
    assert form["callback_id"] == "deploy_checklist"
    # a production start by hand names the artefact and commit and is justified in writing (QMS 4.4)
    bot.submit("deploy_checklist", {**ALL_CHECKED, **form_values()}, user="U0PL",
               private_metadata=form["private_metadata"])
    with Session(db) as s:
        assert s.get(Release, 1).state == "deploying"
    assert "Approved, window open or near (0)" in text_of(bot.emulator.home_views["U0PL"])


def test_a_release_manager_sees_blocked_releases_overdue_tasks_non_conformances_and_the_weeks_metrics(bot, db, clock):
    bot.command('request service=payments version=9.9.9 type=minor flags=feature start="2026-11-24 10:00" tz=UTC '
                'duration=60m summary="Too soon"', user="U0DEV")  # inside the 7-day lead time: flagged
    with Session(db) as s:
        s.add(Task(release_id=1, kind="followup", due_at=clock.now() - timedelta(hours=2), created_at=clock.now()))
        s.add(NonConformance(release_id=1, kind="deferred_step_overdue", subject="t1", detail="<!channel> late",
                             reported_by="releasebot", at=clock.now(), due_at=clock.now() + timedelta(days=5)))
        s.commit()
    shown = text_of(open_home(bot, "U0RM"))
    assert "Blocked releases (1)" in shown and "lead_time:" in shown and ("home_show", "1") in buttons(
        bot.emulator.home_views["U0RM"])
    assert "Overdue tasks and deferred steps (1)" in shown and "24-hour follow-up: :red_circle: overdue" in shown
    assert "Open non-conformances (1)" in shown and "*NC-1* deferred_step_overdue on REL-1" in shown
    assert "&lt;!channel&gt; late" in shown and "<!channel>" not in shown
    assert "This week's metrics" in shown
    # a qa lead is an approver, not a release manager: none of that is theirs
    qa = text_of(open_home(bot, "U0QA"))
    assert "Blocked releases" not in qa and "This week's metrics" not in qa and "Awaiting your vote (1)" in qa


def test_a_plain_requester_sees_their_requests_and_the_next_blackouts_and_show_sends_the_record(bot, db):
    request(bot)
    bot.command('blackout add name="Year-end freeze" start="2026-12-20 00:00" end="2026-12-28 00:00" tz=UTC',
                user="U0RM")
    view = open_home(bot, "U0DEV")
    shown = text_of(view)
    assert "Your requests (1)" in shown and "*REL-1* payments `2.3.1`" in shown
    assert "Next blackouts" in shown and "Year-end freeze" in shown
    assert "Awaiting your vote" not in shown and "Approved, window" not in shown and "Blocked" not in shown

    bot.slack.home_action("home_show", "1", user="U0DEV", view=view)
    bot.idle()
    dm = [c for c in bot.emulator.calls_to("chat.postMessage") if c.args.get("channel") == "U0DEV"]
    assert dm and "*REL-1*: pending" in json.dumps(dm[-1].args["blocks"])
    assert len(publishes(bot, "U0DEV")) == 1  # Show changes nothing: the tab is not drawn again


def test_an_open_within_a_minute_is_drawn_from_the_data_read_and_the_messages_tab_is_not_drawn(bot, db, clock):
    request(bot)
    first = text_of(open_home(bot, "U0DEV"))
    request(bot, "2.3.2")
    clock.advance(seconds=30)
    assert text_of(open_home(bot, "U0DEV")) == first  # from the data read 30 s ago: REL-2 not yet
    assert len(publishes(bot, "U0DEV")) == 2
    clock.advance(seconds=31)
    assert "Your requests (2)" in text_of(open_home(bot, "U0DEV"))

    before = len(bot.emulator.calls_to("views.publish"))
    open_home(bot, "U0DEV", tab="messages")
    assert len(bot.emulator.calls_to("views.publish")) == before


def test_publishing_is_throttled_per_person(bot, db, clock):
    from bot.home_cache import PUBLISHES
    for _ in range(PUBLISHES + 3):
        open_home(bot, "U0DEV")
        clock.advance(seconds=1)
    assert len(publishes(bot, "U0DEV")) == PUBLISHES
    open_home(bot, "U0RM")
    assert len(publishes(bot, "U0RM")) == 1  # another person's tab is drawn
    clock.advance(seconds=60)
    open_home(bot, "U0DEV")
    assert len(publishes(bot, "U0DEV")) == PUBLISHES + 1


def test_the_emulator_refuses_a_home_view_slack_would_refuse(emulator):
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError
    client = WebClient(token="xoxb-test", base_url=emulator.api_url)
    ok = client.views_publish(user_id="U1", view={"type": "home", "blocks": [{"type": "divider"}] * 100})
    assert ok["ok"] and len(emulator.home_views["U1"]["blocks"]) == 100
    for bad in ({"type": "home", "blocks": [{"type": "divider"}] * 101},
                {"type": "modal", "blocks": []},
                {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]},
                {"type": "home", "blocks": [{"type": "divider", "block_id": "a"}, {"type": "divider", "block_id": "a"}]}):
        try:
            client.views_publish(user_id="U1", view=bad)
            raise AssertionError(f"accepted {bad['type']} with {len(bad['blocks'])} blocks")
        except SlackApiError as exc:
            assert exc.response["error"] == "invalid_arguments"
    assert len(emulator.home_views["U1"]["blocks"]) == 100  # the refused ones changed nothing
