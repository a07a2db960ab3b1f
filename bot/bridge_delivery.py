"""Delivering an emergency's bridge: the channel (or thread), the invites, the pinned card and its updates.

Every step is written to the Emergency row as soon as Slack did it, and the
outbox row stays unsent until the last step is done. So a retry after a failure
midway (Slack down, the process killed) picks up where it stopped: a channel
made once is found again by its stored id, or, if the process died before it
could store the id, by its name (`name_taken` -> conversations.list), and is
never made twice.
"""
from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.engine import Engine
from sqlmodel import select

from commands import bridge, decision_log
from commands.clock import Clock
from commands.deploy import deployment_of
from commands.policy import Policy
from storage import audit
from storage.db import read, transaction
from storage.models import Outbox

from bot.messages import bridge as render
from bot.roles import RoleDirectory

log = logging.getLogger(__name__)
# conversations.create refusals that no retry changes: the bridge becomes a thread, which says why.
CHANNEL_REFUSED = {
    "missing_scope": "the app lacks the channels:manage scope",
    "restricted_action": "this workspace lets only some members create channels",
    "name_taken": "a channel of that name exists and is not the bot's",
    "invalid_name": "the name is not a valid channel name", "invalid_name_specials": "the name is not valid",
    "invalid_name_required": "the name is empty", "invalid_name_maxlength": "the name is too long",
    "invalid_name_punctuation": "the name is only punctuation", "no_channel": "Slack gave no channel",
    "not_allowed_token_type": "the bot's token may not create channels",
    "no_permission": "the bot may not create channels", "team_access_not_granted": "the bot may not create channels",
    "ekm_access_denied": "the workspace's key management refused it",
}
_INVITE_DONE = {"already_in_channel", "cant_invite_self"}
_PIN_DONE = {"already_pinned"}


# Not a "no" about this call: Slack is busy or the token is bad. The row is retried (bot.delivery decides how).
_NOT_AN_ANSWER = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout",
                  "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}


def _code(exc: SlackApiError) -> str | None:
    data = exc.response.data
    return data.get("error") if isinstance(data, dict) else None


def _refusal(exc: SlackApiError) -> str:
    """Slack's answer to this very call (already_in_channel, already_pinned, …); anything else is re-raised."""
    code = _code(exc)
    if exc.response.status_code != 200 or code is None or code in _NOT_AN_ANSWER:
        raise exc
    return code


class BridgeDelivery:
    def __init__(self, db: Engine, client: WebClient, clock: Clock, channel: str, policy: Policy,
                 roles: RoleDirectory):
        self._db, self._client, self._clock, self._channel, self._policy = db, client, clock, channel, policy
        self._roles = roles
        self._bot_user: str | None = None

    # ---- bridge_open ----------------------------------------------------------------------------

    def open(self, row: Outbox, done) -> None:
        v = bridge.view(self._db, row.release_id)
        if v is None:
            done(row, "no emergency record")
            return
        r, e = v.release, v.emergency
        people = self._people(v)
        if e.bridge_kind is None:
            if self._policy.emergency.bridge == "thread":
                bridge.fell_back(self._db, r.id, self._channel, None)
            else:
                self._make_channel(v)
            e = bridge.view(self._db, r.id).emergency
        if e.bridge_kind == "channel":
            self._invite(e.bridge_channel, people)
        elif e.bridge_thread_ts is None:
            resp = self._client.chat_postMessage(channel=e.bridge_channel,
                                                 text=render.thread_root(r, e, e.bridge_fallback_reason, people))
            bridge.thread_started(self._db, r.id, resp["ts"], self._clock.now())
        v = bridge.view(self._db, r.id)
        e = v.emergency
        if e.card_ts is None:
            text, blocks = render.card(v, self._policy.roles)
            resp = self._client.chat_postMessage(channel=e.bridge_channel, thread_ts=e.bridge_thread_ts,
                                                 text=text, blocks=blocks)
            bridge.card_posted(self._db, r.id, resp["ts"], self._clock.now())
            e = bridge.view(self._db, r.id).emergency
        self._pin(e.bridge_channel, e.card_ts)
        done(row, f"bridge {e.bridge_kind} {e.bridge_channel}")

    def _make_channel(self, v: bridge.BridgeView) -> None:
        r = v.release
        name = bridge.channel_name(self._policy.emergency.channel_name, r)
        try:
            channel = self._client.conversations_create(name=name, is_private=False)["channel"]["id"]
        except SlackApiError as exc:
            code = _refusal(exc)  # Slack down, rate limited: the row is retried, nothing is decided yet
            if code not in CHANNEL_REFUSED:
                raise
            channel = self._ours(name) if code == "name_taken" else None
            if channel is None:
                reason = f"{CHANNEL_REFUSED[code]} ({code})"
                log.warning("%s: no bridge channel %s (%s); the bridge is a thread", r.ref, name, code)
                bridge.fell_back(self._db, r.id, self._channel, reason)
                return
            log.info("%s: bridge channel %s was made by an earlier try; using it", r.ref, name)
        bridge.channel_made(self._db, r.id, channel, self._clock.now())

    def _ours(self, name: str) -> str | None:
        """The channel of this name, if this bot made it (an earlier try that died before storing the id)."""
        if self._bot_user is None:
            self._bot_user = self._client.auth_test().get("user_id")
        cursor = None
        while True:
            resp = self._client.conversations_list(types="public_channel", exclude_archived=True, limit=200,
                                                   **({"cursor": cursor} if cursor else {}))
            for ch in resp.get("channels") or []:
                if ch.get("name") == name:
                    return ch["id"] if ch.get("creator") == self._bot_user else None
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None

    def _people(self, v: bridge.BridgeView) -> list[str]:
        people = {v.release.requester_id}
        for role in v.roles:
            people |= self._roles.holders(role)
        return sorted(people)

    def _invite(self, channel: str, people: list[str]) -> None:
        """Invites are harmless to repeat, so a retry invites everyone again; who is in already is fine."""
        try:
            self._client.conversations_invite(channel=channel, users=",".join(people))
            return
        except SlackApiError as exc:
            if _refusal(exc) in _INVITE_DONE and len(people) == 1:
                return
        # One of them could not be invited (already in, deactivated, a guest): the others one by one.
        for user in people:
            try:
                self._client.conversations_invite(channel=channel, users=user)
            except SlackApiError as exc:
                if _refusal(exc) not in _INVITE_DONE:
                    log.warning("could not invite %s to the bridge %s: %s", user, channel, _code(exc))

    def _pin(self, channel: str, ts: str) -> None:
        try:
            self._client.pins_add(channel=channel, timestamp=ts)
        except SlackApiError as exc:
            if _refusal(exc) not in _PIN_DONE:  # no pins:write, not pinnable: the card still stands first
                log.warning("could not pin the bridge card in %s: %s", channel, _code(exc))

    # ---- bridge_card ----------------------------------------------------------------------------

    def card(self, row: Outbox, done) -> None:
        with read(self._db) as session:
            later = session.exec(select(Outbox.id).where(
                Outbox.release_id == row.release_id, Outbox.kind == bridge.BRIDGE_CARD, Outbox.id > row.id,
                Outbox.sent_at.is_(None), Outbox.dead_at.is_(None))).first()
        if later is not None:
            done(row, "coalesced: a later update shows this change too")
            return
        v = bridge.view(self._db, row.release_id)
        if v is None or v.emergency.card_ts is None:
            done(row, "no bridge card yet")
            return
        text, blocks = render.card(v, self._policy.roles)
        self._client.chat_update(channel=v.emergency.bridge_channel, ts=v.emergency.card_ts, text=text,
                                 blocks=blocks)
        done(row)

    # ---- bridge_post: the link in the release channel, the closing summary -------------------------

    def post(self, row: Outbox, done) -> None:
        v = bridge.view(self._db, row.release_id)
        if v is None:
            done(row, "no emergency record")
            return
        r, e = v.release, v.emergency
        what = row.payload.get("what")
        if what == "link":
            self._client.chat_postMessage(channel=self._channel, text=render.link_line(r, e))
            done(row)
            return
        if what != "closed":
            done(row, f"unknown bridge post {what}")
            return
        if not row.payload.get("summary_ts"):
            with read(self._db) as session:
                lines = decision_log.merged(audit.trail(session, r.id), decision_log.entries(session, r.id))
                spans = bridge.durations(e, deployment_of(session, r))
            text, blocks = render.closed_summary(r, e, spans, lines)
            resp = self._client.chat_postMessage(channel=e.bridge_channel, thread_ts=e.bridge_thread_ts,
                                                 text=text, blocks=blocks)
            # Posted: a retry (the archive failed) must not post it again.
            with transaction(self._db) as session:
                fresh = session.get(Outbox, row.id)
                fresh.payload = {**fresh.payload, "summary_ts": resp["ts"]}
                session.add(fresh)
        if e.bridge_kind == "channel":
            try:
                self._client.conversations_archive(channel=e.bridge_channel)
            except SlackApiError as exc:
                if _refusal(exc) != "already_archived":
                    log.warning("could not archive the bridge %s of %s: %s", e.bridge_channel, r.ref, _code(exc))
        done(row, "summary posted" + (", channel archived" if e.bridge_kind == "channel" else ""))
