"""The bot added to a channel: it says what it does, where to start, and which roles nobody holds yet."""
from __future__ import annotations

import logging
import threading

from slack_bolt import App
from slack_sdk.errors import SlackApiError

from commands import announce

from bot.listeners.common import just_ack, kick
from bot.services import Services

log = logging.getLogger(__name__)


def register(app: App, svc: Services) -> None:
    known: dict[str, str] = {}
    lock = threading.Lock()

    def bot_user_id(body: dict, client) -> str | None:
        """The bot's own user id: Slack names it in the event's authorizations; else auth.test, once."""
        for a in body.get("authorizations") or []:
            if a.get("is_bot") and a.get("user_id"):
                return a["user_id"]
        with lock:
            if "id" in known:
                return known["id"]
        try:
            found = client.auth_test().get("user_id")
        except (SlackApiError, OSError) as exc:
            log.warning("auth.test failed, so a channel join could not be checked: %s", exc)
            return None
        with lock:
            known["id"] = found
        return found

    # Once per join: the replay guard (bot.replay) claims the event_id before the ack, and the outbox row's
    # key holds it too. The welcome goes out through the outbox, so a Slack outage delays it, never loses it.
    def joined(body, event, client):
        if not event.get("user") or event.get("user") != bot_user_id(body, client):
            return  # someone else joined: not ours to greet
        joined_as = body.get("event_id") or event.get("event_ts") or ""
        key = announce.welcome(svc.db, event["channel"], joined_as, svc.clock.now())
        if key:
            kick(svc, [key])

    app.event("member_joined_channel")(ack=just_ack, lazy=[joined])
