"""Who is a member of the workspace: the people a pipeline may name.

A pipeline names the person it deploys for by Slack user id or email. The
bot believes only an id Slack confirms as an active, human member: an id
nobody holds, a deactivated account or a bot user is not a person who can
be responsible for a deployment. Answers are cached briefly (a deployment
asks the gate, then starts, then reports, within minutes); a failed lookup
is never cached and never read as "not a member".
"""
from __future__ import annotations

import logging
import re
import threading
from datetime import datetime, timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from commands.clock import Clock

log = logging.getLogger(__name__)

USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_ABSENT = {"user_not_found", "users_not_found", "user_not_visible", "account_inactive"}


class NotAMember(Exception):
    """Slack answered: this is not an active person in the workspace."""


class SlackUnavailable(Exception):
    """Slack did not answer; try again."""


NAME_TTL = timedelta(hours=24)  # a renamed person shows under the new name within a day
NAME_LOOKUPS = 50  # users.info calls per names() call at most; the rest are asked for next time


class People:
    def __init__(self, client: WebClient, clock: Clock, ttl: timedelta = timedelta(minutes=5)):
        self._client, self._clock, self._ttl = client, clock, ttl
        self._known: dict[str, tuple[datetime, str | None]] = {}  # id or email -> (when, member id or None)
        self._names: dict[str, tuple[datetime, str]] = {}  # user id -> (when, name)
        self._lock = threading.Lock()

    def names(self, user_ids, lookups: int = NAME_LOOKUPS) -> tuple[dict[str, str], dict[str, str]]:
        """Names to show for Slack user ids (the profile's display name, else the real name), from a cache
        kept NAME_TTL; an id not cached is asked for with users.info, at most `lookups` of them. An id Slack
        does not name (unknown, or Slack not answering) is left out: the caller shows the id.

        Returns those names and, taken at the same moment, every name cached (known_names()), so a
        caller can label what it made from the first with the second."""
        now = self._clock.now()
        for user_id in sorted(set(user_ids)):
            with self._lock:
                cached = self._names.get(user_id)
            if (cached and now - cached[0] < NAME_TTL) or lookups <= 0 or not USER_ID.fullmatch(user_id):
                continue
            lookups -= 1
            try:
                user = self._client.users_info(user=user_id).get("user") or {}
            except SlackApiError as exc:
                data = exc.response.data if isinstance(exc.response.data, dict) else {}
                if data.get("error") in _ABSENT:
                    continue
                # Slack is failing (5xx, 429): the caller holds a render slot, so no more waits this time.
                log.info("users.info for a name failed: %s", data.get("error") or exc.response.status_code)
                break
            except OSError as exc:
                log.info("users.info for a name failed: %s", exc)
                break
            profile = user.get("profile") or {}
            name = str(profile.get("display_name") or profile.get("real_name") or user.get("real_name")
                       or user.get("name") or "")
            # one line of at most 80 characters: it is shown in calendar descriptions
            name = " ".join(_CONTROL.sub(" ", name).split())[:80]
            if name:
                with self._lock:
                    self._names[user_id] = (now, name)
        with self._lock:
            known = {u: name for u, (_, name) in self._names.items()}
        return {u: known[u] for u in set(user_ids) if u in known}, known

    def known_names(self) -> dict[str, str]:
        """Every name cached: what a rendering that uses names() may show."""
        with self._lock:
            return {u: name for u, (_, name) in self._names.items()}

    def member(self, actor: str) -> str:
        """The user id of the active human member `actor` (a user id or an email address) names."""
        if USER_ID.fullmatch(actor):
            key, method, args = actor, "users_info", {"user": actor}
        elif EMAIL.fullmatch(actor):
            key, method, args = actor.lower(), "users_lookupByEmail", {"email": actor}
        else:
            raise ValueError("actor must be a Slack user id (U… or W…) or an email address")
        now = self._clock.now()
        with self._lock:
            cached = self._known.get(key)
        if cached and now - cached[0] < self._ttl:
            found = cached[1]
        else:
            found = self._ask(actor, method, args)
            with self._lock:
                self._known[key] = (now, found)
        if found is None:
            raise NotAMember(f"{actor} is not an active member of the Slack workspace (no such user, "
                             "deactivated, or a bot); name the person who runs the deployment")
        return found

    def _ask(self, actor: str, method: str, args: dict) -> str | None:
        try:
            user = getattr(self._client, method)(**args).get("user") or {}
        except SlackApiError as exc:
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            error = data.get("error") or exc.response.status_code
            if error in _ABSENT:
                return None
            log.warning("%s failed: %s", method.replace("_", "."), error)
            raise SlackUnavailable(f"Slack could not look up {actor} ({error}); nothing was recorded, try again "
                                   "in a minute") from None
        except OSError as exc:
            log.warning("%s failed: %s", method.replace("_", "."), exc)
            raise SlackUnavailable(f"Slack could not be reached to look up {actor}; nothing was recorded, try "
                                   "again in a minute") from None
        user_id = str(user.get("id") or "")
        if not USER_ID.fullmatch(user_id):
            raise SlackUnavailable(f"Slack answered the lookup of {actor} without a user id; try again")
        if user.get("deleted") or user.get("is_bot") or user_id == "USLACKBOT":
            return None
        return user_id
