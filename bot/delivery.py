"""Delivery: take due outbox rows, render them, call Slack, mark them sent.

A row is marked sent only after Slack accepted it; anything else (429, 5xx,
timeouts, refused connections, ok:false) leaves it for a later try with
backoff. So an outage delays announcements and never drops them.
"""
from __future__ import annotations

import logging
import threading
from datetime import timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.engine import Engine

from commands import announce, reminders
from commands.clock import Clock
from commands.policy import Policy
from commands.deploy import deployment_of
from commands.release import approval_of, load
from storage import outbox
from storage.db import transaction
from storage.models import Outbox

from bot.messages import aftercare
from bot.messages import release as render

log = logging.getLogger(__name__)
MAX_BACKOFF = timedelta(minutes=15)


class Undeliverable(Exception):
    pass


def backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=2 ** min(attempts, 12)), MAX_BACKOFF)


class Delivery:
    def __init__(self, db: Engine, client: WebClient, clock: Clock, channel: str, policy: Policy):
        self._db, self._client, self._clock, self._channel, self._policy = db, client, clock, channel, policy
        self._running = threading.Lock()
        self.inflight = threading.Event()

    def run_once(self, limit: int = 50, max_rounds: int = 20) -> int:
        """Send what is due now. Returns how many rows were sent.

        Loops because sending a release's first row makes its next row due."""
        sent = 0
        for _ in range(max_rounds):
            rows = outbox.claim_due(self._db, self._clock.now(), limit=limit)
            if not rows:
                break
            sent += sum(self._deliver(row) for row in rows)
        return sent

    def _deliver(self, row: Outbox) -> int:
        try:
            self._send(row)
            return 1
        except SlackApiError as exc:
            resp = exc.response
            if resp.status_code == 429:
                retry_after = int(resp.headers.get("Retry-After", resp.headers.get("retry-after", 1)) or 1)
                delay = timedelta(seconds=max(1, retry_after))
            else:
                delay = backoff(row.attempts)
            error = f"{resp.status_code} {resp.get('error') if isinstance(resp.data, dict) else resp.data}"
        except (OSError, TimeoutError, Undeliverable) as exc:  # refused, reset, timed out
            delay, error = backoff(row.attempts), f"{type(exc).__name__}: {exc}"
        log.warning("outbox %s (%s) not delivered: %s; retry in %ss", row.key, row.kind, error,
                    int(delay.total_seconds()))
        outbox.mark_retry(self._db, row, self._clock.now() + delay, error)
        return 0

    def _send(self, row: Outbox) -> None:
        with transaction(self._db) as session:
            release = load(session, row.release_id) if row.release_id else None
            st = approval_of(session, release) if release else None
            dep = deployment_of(session, release) if release else None
        if row.kind == announce.APPROVAL_MESSAGE:
            text, blocks = render.approval_message(release, st, dep)
            if release.message_ts is not None:
                try:
                    self._client.chat_update(channel=release.channel_id, ts=release.message_ts, text=text,
                                             blocks=blocks)
                except SlackApiError as exc:
                    # Someone deleted the approval message: approvers still need one to click.
                    if exc.response.get("error") != "message_not_found":
                        raise
                    log.warning("approval message of %s was deleted; posting it again", release.ref)
                    release.message_ts = None
            if release.message_ts is None:
                resp = self._client.chat_postMessage(channel=self._channel, text=text, blocks=blocks)
                with transaction(self._db) as session:
                    fresh = load(session, release.id)
                    fresh.channel_id, fresh.message_ts = resp["channel"], resp["ts"]
                    outbox.mark_sent(session, row, self._clock.now())
                return
        elif row.kind == announce.THREAD_NOTE:
            text, blocks = aftercare.thread_note(row.payload.get("event", ""), release, row.payload)
            self._post_in_thread(release, text, blocks)
        elif row.kind == announce.REMINDER:
            with transaction(self._db) as session:
                notice = reminders.due(session, row, self._policy)
            if isinstance(notice, reminders.Skip):
                with transaction(self._db) as session:
                    outbox.mark_sent(session, row, self._clock.now(), result=f"skipped: {notice.reason}")
                return
            self._post_in_thread(release, *aftercare.reminder(notice, self._policy))
            with transaction(self._db) as session:
                outbox.mark_sent(session, row, self._clock.now())
                reminders.after_sent(session, row, self._clock.now(), self._policy)
            return
        else:
            # Written by a newer version of the bot; leave it for that version to send.
            raise Undeliverable(f"unknown outbox kind {row.kind}")
        with transaction(self._db) as session:
            outbox.mark_sent(session, row, self._clock.now())

    def _post_in_thread(self, release, text: str, blocks: list[dict] | None) -> None:
        # Before the approval message exists (its post still retrying), a reply
        # would have no thread; it goes to the channel rather than wait.
        self._client.chat_postMessage(channel=release.channel_id or self._channel, thread_ts=release.message_ts,
                                      text=text, **({"blocks": blocks} if blocks else {}))
