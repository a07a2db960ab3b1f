"""Delivery: take due outbox rows, render them, call Slack, mark them sent.

A row is marked sent only after Slack accepted it. What happens otherwise
depends on whose fault the refusal is (classify):
- retryable (429, 5xx, timeouts, refused connections, ratelimited,
  internal_error, unknown codes): tried again with backoff, and dead-lettered
  once it has failed for [delivery] dead_letter_after since its first try;
- permanent for this message (invalid_blocks, not_in_channel, is_archived,
  msg_too_long, …): dead-lettered at once. A message whose blocks or length
  Slack refused goes out once more as plain text with a pointer to
  `/release show REL-n`; into a channel the bot cannot post in (not_in_channel,
  channel_not_found), nothing goes, and the release's requester is told by DM
  (once per release and channel: which channel, `/invite @releasebot`);
- bot-wide (the token was rejected): no message's fault, so never
  dead-lettered; logged as an error and retried with backoff until it is fixed.
A dead letter no longer holds up its release's later messages.

Claims are leased. A row is sent only while at least half its lease is left, so
a send finishes (or times out) before another process may claim the row again;
rows of a batch that waited too long are handed back and claimed afresh. On
stop() (SIGTERM) the send under way finishes and the rest of the batch is
handed back at once, for another process or the next start.
"""
from __future__ import annotations

import logging
import threading
from datetime import timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.engine import Engine

from commands import announce, audit_checkpoint, bridge, deferred, github_gate, nonconformance, planning, reminders
from commands import nonconformance_register as register
from commands.classification import track
from commands.states import LIVE_STATES
from commands.clock import Clock
from commands.policy import Policy
from commands.deploy import deployment_of
from commands.roles import empty_roles
from commands.release import approval_of, load
from storage import outbox
from storage.db import read, transaction
from storage.models import Outbox, Release

from bot import uploads
from bot.bridge_delivery import BridgeDelivery
from bot.nc_delivery import NcDelivery
from bot.roles import RoleDirectory
from bot.github import messages as github_messages
from bot.messages import aftercare, calendar, setup
from bot.messages import audit as audit_msg
from bot.messages import help as help_msg
from bot.messages import release as render

log = logging.getLogger(__name__)
MAX_BACKOFF = timedelta(minutes=15)


class Undeliverable(Exception):
    pass


class RetryLater(Exception):
    """Not now, for no fault of this row (another service's 5xx, 429, or its Retry-After): tried again after
    `delay` seconds, or the usual backoff."""

    def __init__(self, error: str, delay: float | None = None):
        super().__init__(error)
        self.delay = delay


class DeadLetter(Exception):
    """Slack will never take this row as written; `result` says what went instead, if anything."""

    def __init__(self, reason: str, result: str | None = None, response=None):
        super().__init__(reason)
        self.reason, self.result, self.response = reason, result, response


PERMANENT, RETRYABLE, BOT_WIDE = "permanent", "retryable", "bot-wide"
# Slack answered and said no to this message: the same call will be refused again.
_PERMANENT_CODES = frozenset({
    "invalid_blocks", "invalid_blocks_format", "msg_too_long", "no_text", "invalid_arguments", "invalid_payload",
    "invalid_attachments", "too_many_attachments", "channel_not_found", "not_in_channel", "is_archived",
    "message_not_found", "cant_update_message", "edit_window_closed", "restricted_action",
    "restricted_action_read_only_channel", "restricted_action_thread_only_channel",
    "restricted_action_non_threadable_channel", "cannot_reply_to_message", "invalid_ts",
})
# Wrong for every message (the token, the app's scopes): dead-lettering would throw all of them away.
_BOT_WIDE_CODES = frozenset({
    "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "missing_scope",
    "not_allowed_token_type", "team_access_not_granted", "ekm_access_denied", "no_permission",
})
# The bot is not in the channel (or cannot see it): no message can go there until someone invites it.
NOT_IN_CHANNEL_CODES = ("not_in_channel", "channel_not_found")
# Refusals a plain-text copy of the same message gets past.
_CONTENT_CODES = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_too_long"})
FALLBACK_LIMIT = 3000  # well under Slack's 40,000 characters, and what one section block shows whole


def classify(status: int, code: str | None) -> str:
    if status == 429 or code == "ratelimited":
        return RETRYABLE
    if code in _BOT_WIDE_CODES:
        return BOT_WIDE
    if status >= 500:
        return RETRYABLE
    # Codes not known to be permanent (internal_error, fatal_error, service_unavailable,
    # request_timeout, anything new) are retried: dead_letter_after bounds them.
    return PERMANENT if code in _PERMANENT_CODES else RETRYABLE


def _code(exc: SlackApiError) -> str | None:
    data = exc.response.data
    return data.get("error") if isinstance(data, dict) else None


def plain_fallback(text: str, ref: str | None) -> str:
    """The message's own (already escaped) text, cut so no mention, link or entity is left half open."""
    pointer = ("\n_(Plain text: Slack refused the full message."
               + (f" `/release show {ref}` has everything.)_" if ref else ")_"))
    room = FALLBACK_LIMIT - len(pointer)
    if len(text) > room:
        cut = text[:room - 1]
        lt, amp = cut.rfind("<"), cut.rfind("&")
        if lt > cut.rfind(">"):
            cut = cut[:lt]
        if amp > cut.rfind(";") and len(cut) - amp <= 6:
            cut = cut[:amp]
        text = cut + "…"
    return text + pointer


def _assess(exc: Exception, row: Outbox) -> tuple[str, timedelta, str, str]:
    """(kind, delay before the next try, error for last_error, reason for a dead letter)."""
    if isinstance(exc, SlackApiError):
        resp, code = exc.response, _code(exc)
        delay = timedelta(seconds=_retry_after(resp.headers)) if resp.status_code == 429 else backoff(row.attempts)
        error = f"{resp.status_code} {code if code is not None else resp.data}"
        reason = (code or "no error code") + ("" if resp.status_code == 200 else f" (HTTP {resp.status_code})")
        return classify(resp.status_code, code), delay, error, reason
    if isinstance(exc, RetryLater):
        delay = timedelta(seconds=exc.delay) if exc.delay else backoff(row.attempts)
        return RETRYABLE, delay, str(exc), str(exc)
    if not isinstance(exc, (OSError, TimeoutError, Undeliverable)):  # refused, reset, timed out are expected
        log.error("outbox %s (%s) failed", row.key, row.kind, exc_info=exc)
    error = f"{type(exc).__name__}: {exc}"
    return RETRYABLE, backoff(row.attempts), error, error


def backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=2 ** min(attempts, 12)), MAX_BACKOFF)


def _span(d: timedelta) -> str:
    hours, rest = divmod(int(d.total_seconds()), 3600)
    return f"{hours}h{rest // 60:02d}m" if rest else f"{hours}h"


def _retry_after(headers) -> int:
    """Seconds from a 429's Retry-After (at least 1; 1 if missing or not a number)."""
    value = next((v for k, v in (headers or {}).items() if k.lower() == "retry-after"), None)
    try:
        return max(1, int(float(value)))
    except (TypeError, ValueError):
        return 1


class Delivery:
    def __init__(self, db: Engine, client: WebClient, clock: Clock, channel: str, policy: Policy,
                 lease: timedelta = outbox.LEASE, roles: RoleDirectory | None = None):
        self._db, self._client, self._clock, self._channel, self._policy = db, client, clock, channel, policy
        self._roles = roles or RoleDirectory(policy, client, clock)
        self._bridge = BridgeDelivery(db, client, clock, channel, policy, self._roles)
        self._nc = NcDelivery(db, clock, channel, policy, self._post, self._post_in_thread, self._done)
        self.lease = lease  # how long a claim holds; RELEASEBOT_OUTBOX_LEASE_SECONDS (bot/cli.py)
        self._stopping = threading.Event()
        self.github = None  # bot.github.worker.GitHubDelivery when the GitHub App is configured (bot.services)

    def stop(self) -> None:
        """Shutting down: the send under way finishes, nothing new is started or claimed."""
        self._stopping.set()

    def run_once(self, limit: int = 50, max_rounds: int = 20, keys: list[str] | None = None) -> int:
        """Send what is due now (only the rows with these keys, when given). Returns how many rows were sent.

        Loops because sending a release's first row makes its next row due."""
        keys = list(keys) if keys is not None else None  # grows by the notices its rows queue (_deliver)
        sent = 0
        for _ in range(max_rounds):
            if self._stopping.is_set():
                break
            rows = outbox.claim_due(self._db, self._clock.now(), limit=limit, lease=self.lease, keys=keys)
            if not rows:
                break
            for i, row in enumerate(rows):
                if self._stopping.is_set() or not self._lease_left(row):
                    self._hand_back(rows[i:])
                    break
                sent += self._deliver(row, keys)
        return sent

    def _lease_left(self, row: Outbox) -> bool:
        # Half the lease must remain, more than a send takes (10 s client timeout,
        # one reconnect): a send never overlaps another process's claim of the row.
        return row.claimed_until is not None and self._clock.now() + self.lease / 2 < row.claimed_until

    def _hand_back(self, rows: list[Outbox]) -> None:
        """Unsent claims go back at once (due as before) instead of waiting out their lease.
        A row another process has claimed since is not ours any more: mark_retry leaves it."""
        for row in rows:
            outbox.mark_retry(self._db, row, row.due_at, row.last_error or "")

    def _deliver(self, row: Outbox, keys: list[str] | None = None) -> int:
        """Send one row. `keys` (run_once's, when it sends only some rows) gains the requester's notice
        queued when this row finds the bot outside its channel, so that notice goes in the same run."""
        try:
            self._send(row)
            return 1
        except DeadLetter as exc:
            self._bury(row, exc.reason, exc.result)
            return 0
        except Exception as exc:  # noqa: BLE001 - one bad row must not strand the rest of its batch
            kind, delay, error, reason = _assess(exc, row)
            code = _code(exc) if isinstance(exc, SlackApiError) else None
        if kind == PERMANENT:
            # (A notice that cannot reach the requester is not told about again.)
            notice = self._bury(row, reason, tell_requester=code in NOT_IN_CHANNEL_CODES
                                and row.kind != announce.SETUP_NOTICE)
            if notice and keys is not None:
                keys.append(notice)
            return 0
        if kind == BOT_WIDE:
            log.error("Slack rejected the bot token (%s): nothing can be sent until SLACK_BOT_TOKEN is fixed; "
                      "outbox %s (%s) kept, retry in %ss", error, row.key, row.kind, int(delay.total_seconds()))
        elif row.dead_reason is not None:
            # An operator asked for one more try (`releasebot outbox --retry`), not another dead_letter_after.
            self._bury(row, f"{reason}, on the one more try asked for")
            return 0
        else:
            limit, since = self._policy.delivery.dead_letter_after, row.first_attempt_at or row.due_at
            if self._clock.now() - since >= limit:
                self._bury(row, f"{reason}, still failing {_span(limit)} after the first try at {since.isoformat()}")
                return 0
            log.warning("outbox %s (%s) not delivered: %s; retry in %ss", row.key, row.kind, error,
                        int(delay.total_seconds()))
        outbox.mark_retry(self._db, row, self._clock.now() + delay, error)
        return 0

    def _bury(self, row: Outbox, reason: str, result: str | None = None, tell_requester: bool = False) -> str | None:
        """Dead-letter the row: its release's later messages go on without it. With tell_requester (the bot
        is not in the channel), its requester's notice is queued with the burial; returns its key if new."""
        now = self._clock.now()
        notice = None
        with transaction(self._db) as session:
            if not outbox.mark_dead(session, row, now, reason, result):
                return None  # another process holds it now
            release = session.get(Release, row.release_id) if tell_requester and row.release_id else None
            if release is not None:
                notice = announce.not_in_channel(session, release, release.channel_id or self._channel, now)
            if row.kind == announce.REMINDER:
                try:
                    with session.begin_nested():  # the next nudge is still owed; the burial stands without it
                        reminders.after_sent(session, row, now, self._policy)
                except Exception:  # noqa: BLE001 - a failure here must not strand the rest of the batch
                    log.exception("outbox %s: scheduling the reminder after it failed", row.key)
        log.error("outbox %s (%s, id %s) is a dead letter: %s%s. Later messages of its release go on; "
                  "`releasebot outbox --dead` lists it, `--retry %s` tries it once more.", row.key, row.kind,
                  row.id, reason, f"; {result}" if result else "; nothing sent instead", row.id)
        return notice

    def _send(self, row: Outbox) -> None:
        # Each kind loads only what its message shows: reminders and notes are
        # most of the volume, and the approval message is the expensive one.
        send = {announce.APPROVAL_MESSAGE: self._approval_message, announce.THREAD_NOTE: self._thread_note,
                announce.REMINDER: self._reminder, announce.CHANNEL_NOTE: self._channel_note,
                bridge.BRIDGE_OPEN: self._bridge_open, bridge.BRIDGE_CARD: self._bridge_card,
                bridge.BRIDGE_POST: self._bridge_post, announce.SETUP_NOTICE: self._setup_notice,
                announce.WELCOME: self._welcome, announce.FILE_UPLOAD: self._file_upload,
                deferred.DEADLINE: self._deferred_deadline,
                nonconformance.NC_REMINDER: self._nc.reminder, register.NC_NOTE: self._nc.note,
                audit_checkpoint.KIND: self._audit_checkpoint}.get(row.kind)
        if send is None and row.kind.startswith("github_") and self.github is not None:
            send = lambda r: self.github.send(r, self._done)  # noqa: E731 - the GitHub App's rows
        if send is None:
            # Written by a newer version of the bot; leave it for that version to send.
            raise Undeliverable(f"unknown outbox kind {row.kind}")
        send(row)

    # The emergency bridge (bot/bridge_delivery.py): its channel or thread, the card, its posts.
    def _bridge_open(self, row: Outbox) -> None:
        self._bridge.open(row, self._done)

    def _bridge_card(self, row: Outbox) -> None:
        self._bridge.card(row, self._done)

    def _bridge_post(self, row: Outbox) -> None:
        self._bridge.post(row, self._done)

    def _deferred_deadline(self, row: Outbox) -> None:
        """A deferred step's deadline: still open, it is a non-conformance. Nothing goes to Slack from here
        (the non-conformance queues its own announcements), so Slack being down does not hold it up."""
        now = self._clock.now()
        with transaction(self._db) as session:
            if outbox.mark_sent(session, row, now, result="checked"):  # the claim is ours: check once
                result = deferred.deadline_reached(session, row.release_id, row.payload.get("step", ""), now,
                                                   policy=self._policy)
                outbox.mark_sent(session, row, now, result=result)  # and what the check found

    def _file_upload(self, row: Outbox) -> None:
        p = row.payload
        try:
            made = uploads.make(p.get("producer", ""), self._db, self._clock, self._policy, p.get("args") or {})
        except uploads.UnknownProducer as exc:
            raise Undeliverable(str(exc)) from None
        uploads.send(self._client, made, user=p.get("user"), channel=p.get("channel"),
                     thread_ts=p.get("thread_ts"), comment=p.get("comment"))
        self._done(row)

    def _done(self, row: Outbox, result: str = "sent") -> None:
        with transaction(self._db) as session:
            outbox.mark_sent(session, row, self._clock.now(), result=result)

    def _approval_message(self, row: Outbox) -> None:
        with read(self._db) as session:  # what to render: a writer holding the database does not hold it up
            release = load(session, row.release_id)
            st, dep = approval_of(session, release), deployment_of(session, release)
            flags = planning.open_flags(session, release.id)
            github = github_messages.waiting_blocks(github_gate.waiting(session, release.id))
            slots = (planning.next_free_slots(session, self._policy, service=release.service,
                                              environment=release.environment, release_type=track(release),
                                              duration=release.end_at - release.start_at, now=self._clock.now(),
                                              not_before=release.start_at, tz=release.tz, exclude=release.id)
                     if planning.blocking(flags) and release.state in LIVE_STATES else [])
        text, blocks = render.approval_message(release, st, dep, calendar.flags_block(flags, slots)
                                               + render.reschedule_actions(release, slots) + github)
        if release.message_ts is not None:
            try:
                self._client.chat_update(channel=release.channel_id, ts=release.message_ts, text=text, blocks=blocks)
                self._done(row)
                return
            except SlackApiError as exc:
                # Someone deleted the approval message: approvers still need one to click.
                if exc.response.get("error") != "message_not_found":
                    raise
                log.warning("approval message of %s was deleted; posting it again", release.ref)
        try:
            resp, dead = self._post(self._channel, text, blocks, ref=release.ref), None
        except DeadLetter as exc:
            if exc.response is None:
                raise
            # The plain-text stand-in anchors the thread; a later update may bring the buttons back.
            resp, dead = exc.response, exc
        with transaction(self._db) as session:
            fresh = load(session, release.id)
            fresh.channel_id, fresh.message_ts = resp["channel"], resp["ts"]
            if dead is None:
                outbox.mark_sent(session, row, self._clock.now())
        if dead is not None:
            raise dead

    def _thread_note(self, row: Outbox) -> None:
        with read(self._db) as session:
            release = load(session, row.release_id)
        self._post_in_thread(release, *aftercare.thread_note(row.payload.get("event", ""), release, row.payload))
        self._done(row)

    def _reminder(self, row: Outbox) -> None:
        with read(self._db) as session:
            notice = reminders.due(session, row, self._policy)
        if isinstance(notice, reminders.Skip):
            self._done(row, result=f"skipped: {notice.reason}")
            return
        if notice.release is None:
            self._post(self._channel, *calendar.blackout_warning(notice.detail))
        else:
            target = notice.detail.get("post_to")  # an emergency's bridge
            if target:
                self._post(target[0], *aftercare.reminder(notice, self._policy), thread_ts=target[1],
                           ref=notice.release.ref)
            else:
                self._post_in_thread(notice.release, *aftercare.reminder(notice, self._policy))
        with transaction(self._db) as session:
            outbox.mark_sent(session, row, self._clock.now())
            reminders.after_sent(session, row, self._clock.now(), self._policy)

    def _channel_note(self, row: Outbox) -> None:
        text = (aftercare.nonconformance_note(row.payload, self._policy) if row.payload.get("event") == "nonconformance"
                else calendar.channel_note(row.payload))
        self._client.chat_postMessage(channel=self._channel, text=text)
        self._done(row)

    def _audit_checkpoint(self, row: Outbox) -> None:
        # To AUDIT_CHANNEL, not the release channel: the witness sits where the database owner cannot reach.
        self._client.chat_postMessage(channel=row.payload["channel"],
                                      **dict(zip(("text", "blocks"), audit_msg.checkpoint_message(row.payload["text"]))))
        self._done(row)

    def _welcome(self, row: Outbox) -> None:
        # Rendered when sent: the empty roles are the ones empty now, read through the group cache.
        text, blocks = help_msg.welcome(empty_roles(self._policy, self._roles.members), self._policy.source,
                                        self._channel)
        self._client.chat_postMessage(channel=row.payload["channel"], text=text, blocks=blocks)
        self._done(row)

    def _setup_notice(self, row: Outbox) -> None:
        # To the user id: Slack opens the bot's own DM with them, which needs no channel membership.
        with read(self._db) as session:
            ref = load(session, row.release_id).ref
        self._client.chat_postMessage(channel=row.payload["user"],
                                      text=setup.not_in_channel(ref, row.payload["channel"]))
        self._done(row)

    def _post_in_thread(self, release, text: str, blocks: list[dict] | None) -> None:
        # Before the approval message exists (its post still retrying), a reply
        # would have no thread; it goes to the channel rather than wait.
        self._post(release.channel_id or self._channel, text, blocks, thread_ts=release.message_ts, ref=release.ref)

    def _post(self, channel: str, text: str, blocks: list[dict] | None, thread_ts: str | None = None,
              ref: str | None = None):
        """chat.postMessage. If Slack refuses the blocks or the length, once more as plain text, and the
        row is a dead letter either way (DeadLetter carries the stand-in's response)."""
        try:
            return self._client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text,
                                                 **({"blocks": blocks} if blocks else {}))
        except SlackApiError as exc:
            code = _code(exc)
            if code not in _CONTENT_CODES:
                raise
        resp = self._client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=plain_fallback(text, ref))
        raise DeadLetter(code, "plain-text fallback sent", resp)
