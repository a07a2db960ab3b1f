"""Delivery: take due outbox rows, render them, call Slack, mark them sent.

A row is marked sent only after Slack accepted it; anything else (429, 5xx,
timeouts, refused connections, ok:false) leaves it for a later try with
backoff. So an outage delays announcements and never drops them.

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

from commands import announce, planning, reminders
from commands.states import LIVE_STATES
from commands.clock import Clock
from commands.policy import Policy
from commands.deploy import deployment_of
from commands.release import approval_of, load
from storage import outbox
from storage.db import transaction
from storage.models import Outbox

from bot.messages import aftercare, calendar
from bot.messages import release as render

log = logging.getLogger(__name__)
MAX_BACKOFF = timedelta(minutes=15)


def _message(text: str, blocks: list[dict]) -> dict:
    return {"text": text, "blocks": blocks}


class Undeliverable(Exception):
    pass


def backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=2 ** min(attempts, 12)), MAX_BACKOFF)


def _retry_after(headers) -> int:
    """Seconds from a 429's Retry-After (at least 1; 1 if missing or not a number)."""
    value = next((v for k, v in (headers or {}).items() if k.lower() == "retry-after"), None)
    try:
        return max(1, int(float(value)))
    except (TypeError, ValueError):
        return 1


class Delivery:
    def __init__(self, db: Engine, client: WebClient, clock: Clock, channel: str, policy: Policy,
                 lease: timedelta = outbox.LEASE):
        self._db, self._client, self._clock, self._channel, self._policy = db, client, clock, channel, policy
        self.lease = lease  # how long a claim holds; RELEASEBOT_OUTBOX_LEASE_SECONDS (bot/cli.py)
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Shutting down: the send under way finishes, nothing new is started or claimed."""
        self._stopping.set()

    def run_once(self, limit: int = 50, max_rounds: int = 20) -> int:
        """Send what is due now. Returns how many rows were sent.

        Loops because sending a release's first row makes its next row due."""
        sent = 0
        for _ in range(max_rounds):
            if self._stopping.is_set():
                break
            rows = outbox.claim_due(self._db, self._clock.now(), limit=limit, lease=self.lease)
            if not rows:
                break
            for i, row in enumerate(rows):
                if self._stopping.is_set() or not self._lease_left(row):
                    self._hand_back(rows[i:])
                    break
                sent += self._deliver(row)
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

    def _deliver(self, row: Outbox) -> int:
        try:
            self._send(row)
            return 1
        except SlackApiError as exc:
            resp = exc.response
            if resp.status_code == 429:
                delay = timedelta(seconds=_retry_after(resp.headers))
            else:
                delay = backoff(row.attempts)
            error = f"{resp.status_code} {resp.get('error') if isinstance(resp.data, dict) else resp.data}"
        except (OSError, TimeoutError, Undeliverable) as exc:  # refused, reset, timed out
            delay, error = backoff(row.attempts), f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - one bad row must not strand the rest of its batch
            log.exception("outbox %s (%s) failed", row.key, row.kind)
            delay, error = backoff(row.attempts), f"{type(exc).__name__}: {exc}"
        log.warning("outbox %s (%s) not delivered: %s; retry in %ss", row.key, row.kind, error,
                    int(delay.total_seconds()))
        outbox.mark_retry(self._db, row, self._clock.now() + delay, error)
        return 0

    def _send(self, row: Outbox) -> None:
        # Each kind loads only what its message shows: reminders and notes are
        # most of the volume, and the approval message is the expensive one.
        send = {announce.APPROVAL_MESSAGE: self._approval_message, announce.THREAD_NOTE: self._thread_note,
                announce.REMINDER: self._reminder, announce.CHANNEL_NOTE: self._channel_note}.get(row.kind)
        if send is None:
            # Written by a newer version of the bot; leave it for that version to send.
            raise Undeliverable(f"unknown outbox kind {row.kind}")
        send(row)

    def _done(self, row: Outbox, result: str = "sent") -> None:
        with transaction(self._db) as session:
            outbox.mark_sent(session, row, self._clock.now(), result=result)

    def _approval_message(self, row: Outbox) -> None:
        with transaction(self._db) as session:
            release = load(session, row.release_id)
            st, dep = approval_of(session, release), deployment_of(session, release)
            flags = planning.open_flags(session, release.id)
            slots = (planning.next_free_slots(session, self._policy, service=release.service,
                                              environment=release.environment, release_type=release.effective_type,
                                              duration=release.end_at - release.start_at, now=self._clock.now(),
                                              exclude=release.id)
                     if planning.blocking(flags) and release.state in LIVE_STATES else [])
        text, blocks = render.approval_message(release, st, dep, calendar.flags_block(flags, slots))
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
        resp = self._client.chat_postMessage(channel=self._channel, text=text, blocks=blocks)
        with transaction(self._db) as session:
            fresh = load(session, release.id)
            fresh.channel_id, fresh.message_ts = resp["channel"], resp["ts"]
            outbox.mark_sent(session, row, self._clock.now())

    def _thread_note(self, row: Outbox) -> None:
        with transaction(self._db) as session:
            release = load(session, row.release_id)
        self._post_in_thread(release, *aftercare.thread_note(row.payload.get("event", ""), release, row.payload))
        self._done(row)

    def _reminder(self, row: Outbox) -> None:
        with transaction(self._db) as session:
            notice = reminders.due(session, row, self._policy)
        if isinstance(notice, reminders.Skip):
            self._done(row, result=f"skipped: {notice.reason}")
            return
        if notice.release is None:
            self._client.chat_postMessage(channel=self._channel, **_message(*calendar.blackout_warning(notice.detail)))
        else:
            self._post_in_thread(notice.release, *aftercare.reminder(notice, self._policy))
        with transaction(self._db) as session:
            outbox.mark_sent(session, row, self._clock.now())
            reminders.after_sent(session, row, self._clock.now(), self._policy)

    def _channel_note(self, row: Outbox) -> None:
        self._client.chat_postMessage(channel=self._channel, text=calendar.channel_note(row.payload))
        self._done(row)

    def _post_in_thread(self, release, text: str, blocks: list[dict] | None) -> None:
        # Before the approval message exists (its post still retrying), a reply
        # would have no thread; it goes to the channel rather than wait.
        self._client.chat_postMessage(channel=release.channel_id or self._channel, thread_ts=release.message_ts,
                                      text=text, **({"blocks": blocks} if blocks else {}))
