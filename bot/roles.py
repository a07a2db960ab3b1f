"""Who holds which role: policy names users and user groups; groups resolve through Slack.

Group membership is cached briefly. Roles are how real organisations keep
approvers in sync with their identity provider, so a change there must reach
the bot within minutes, but one vote must not cost one API call per group.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from commands.clock import Clock
from commands.policy import Policy

log = logging.getLogger(__name__)


class RoleLookupError(Exception):
    pass


class RoleDirectory:
    def __init__(self, policy: Policy, client: WebClient, clock: Clock, ttl: timedelta = timedelta(minutes=5)):
        self._policy, self._client, self._clock, self._ttl = policy, client, clock, ttl
        self._groups: dict[str, tuple[datetime, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def resolve(self, user_id: str) -> tuple[frozenset[str], frozenset[str]]:
        """(roles held, roles that could not be checked because Slack did not answer).

        A group Slack cannot list right now does not fail the whole lookup: a
        release manager named directly can still vote while Slack's API is down."""
        roles, unresolved = set(), set()
        for role, members in self._policy.roles.items():
            if user_id in members:
                roles.add(role)
                continue
            for group in (m for m in members if m.startswith("S")):
                try:
                    if user_id in self._group(group):
                        roles.add(role)
                        break
                except RoleLookupError as exc:
                    log.warning("%s", exc)
                    unresolved.add(role)
        return frozenset(roles), frozenset(unresolved - roles)

    def members(self, group_id: str) -> frozenset[str] | None:
        """A group's members through the same cache, or None when Slack could not say (for listings)."""
        try:
            return self._group(group_id)
        except RoleLookupError as exc:
            log.warning("%s", exc)
            return None
    def holders(self, role: str) -> set[str]:
        """Everyone holding the role: the users policy names and the members of its user groups.
        A group Slack cannot list right now is left out (logged), not fatal: who else holds the role still counts."""
        users = set()
        for member in self._policy.roles.get(role, ()):
            if not member.startswith("S"):
                users.add(member)
                continue
            try:
                users |= self._group(member)
            except RoleLookupError as exc:
                log.warning("%s", exc)
        return users

    def _group(self, group_id: str) -> frozenset[str]:
        now = self._clock.now()
        with self._lock:
            cached = self._groups.get(group_id)
        if cached and now - cached[0] < self._ttl:
            return cached[1]
        try:
            resp = self._client.usergroups_users_list(usergroup=group_id)
            users = frozenset(resp.get("users") or [])
        except SlackApiError as exc:
            if cached:  # a stale answer beats refusing every approver while Slack hiccups
                log.warning("usergroups.users.list %s failed (%s); using cached members", group_id, exc)
                return cached[1]
            raise RoleLookupError(f"could not look up user group {group_id}: "
                                  f"{exc.response.get('error', 'error')}") from None
        except OSError as exc:
            if cached:
                return cached[1]
            raise RoleLookupError(f"could not reach Slack to look up user group {group_id}: {exc}") from None
        with self._lock:
            self._groups[group_id] = (now, users)
        return users
