"""What Slack must be told, queued as outbox rows inside the deciding transaction.

Keys are stable, so the same decision replayed (a retried delivery, a double
click that slipped through) finds its row already there and posts nothing new.
The bot renders the rows; nothing here knows Slack.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session

from storage import outbox
from storage.db import transaction
from storage.models import AuditEvent, Release

APPROVAL_MESSAGE = "approval_message"
THREAD_NOTE = "thread_note"
REMINDER = "reminder"
CHANNEL_NOTE = "channel_note"  # to the release channel, about no one release
BRIDGE_CARD = "bridge_card"  # an emergency's pinned bridge card, updated in place
SETUP_NOTICE = "setup_notice"  # to a person by DM, about the bot's own setup (the channel it is not in)
WELCOME = "welcome"  # to a channel the bot was just added to: what it does and which roles are empty
FILE_UPLOAD = "file_upload"  # a file (an evidence packet, a chart) made at send time by a named producer


def stream(release: Release) -> str:
    # A release's announcements keep their order: the approval message must
    # exist before a reply can go into its thread.
    return f"release:{release.id}"


def not_in_channel(session: Session, release: Release, channel: str, now: datetime) -> str | None:
    """The requester hears that the bot cannot post their release's messages in `channel`: once per release
    and channel however many of its messages fail there. No stream: it must not wait behind them.
    Returns the row's key if this call queued it."""
    key = f"not-in-channel:{release.id}:{channel}"
    added = outbox.enqueue(session, key=key, kind=SETUP_NOTICE, release_id=release.id,
                           payload={"user": release.requester_id, "channel": channel}, at=now)
    return key if added else None


def welcome(db: Engine, channel: str, joined: str, now: datetime) -> str | None:
    """The welcome for a channel the bot joined, queued so a Slack outage delays it instead of losing it.
    `joined` names the join (Slack's event_id): one welcome per join, however often Slack retries it.
    Returns the row's key if this call queued it."""
    key = f"welcome:{channel}:{joined}"[:255]
    with transaction(db) as session:
        added = outbox.enqueue(session, key=key, kind=WELCOME, payload={"channel": channel}, at=now)
    return key if added else None


def approval_message(session: Session, release: Release, now: datetime) -> None:
    outbox.enqueue(session, key=f"approval:{release.id}:post", kind=APPROVAL_MESSAGE, release_id=release.id,
                   at=now, stream=stream(release))


def approval_update(session: Session, release: Release, now: datetime, cause: AuditEvent) -> None:
    outbox.enqueue(session, key=f"approval:{release.id}:event:{cause.id}", kind=APPROVAL_MESSAGE,
                   release_id=release.id, at=now, stream=stream(release))
    bridge_card(session, release, now, f"event:{cause.id}")
    from commands import github_gate  # here: it imports commands.deploy, which imports this module
    github_gate.release_changed(session, release, now, cause)  # a GitHub deployment waiting on it


def bridge_card(session: Session, release: Release, now: datetime, cause: str) -> None:
    """An emergency's bridge card shows what just changed. One row per change (the key names it); the card is
    rendered when the row is sent, and a row with a later one behind it is skipped, so a burst costs one update."""
    if release.effective_type != "emergency":
        return
    outbox.enqueue(session, key=f"bridge-card:{release.id}:{cause}"[:200], kind=BRIDGE_CARD,
                   release_id=release.id, at=now, stream=stream(release))


def note(session: Session, release: Release, event: str, now: datetime, key_suffix: str = "",
         **payload) -> bool:
    """A line in the release's thread; False if this key was already queued (a replay)."""
    added = outbox.enqueue(session, key=f"note:{release.id}:{event}:{key_suffix}", kind=THREAD_NOTE,
                           release_id=release.id, payload={"event": event, **payload}, at=now,
                           stream=stream(release))
    if added:
        bridge_card(session, release, now, f"note:{event}:{key_suffix}")
    return added


def reminder(session: Session, release: Release, what: str, due_at: datetime, now: datetime,
             key_suffix: str = "", **payload) -> None:
    """A reminder in the release's thread at due_at. Whether it is still owed is
    decided when it comes due, so finishing the work early needs no cancelling."""
    outbox.enqueue(session, key=f"reminder:{release.id}:{what}:{key_suffix}", kind=REMINDER,
                   release_id=release.id, payload={"reminder": what, **payload}, at=now, due_at=due_at)


STUCK_REMINDERS = ("stuck_deployment", "stuck_escalation")


def stuck_deployment(session: Session, release: Release, grace: timedelta, now: datetime) -> None:
    """A deployment still running a grace period after its window ends reminds the deployer, and one more
    grace period later escalates to the release managers. Both are written when it starts; a deployment
    that has finished by then skips them (commands.reminders.due)."""
    reminder(session, release, "stuck_deployment", release.end_at + grace, now)
    reminder(session, release, "stuck_escalation", release.end_at + 2 * grace, now)


def upload(session: Session, *, key: str, producer: str, args: dict, now: datetime, user: str | None = None,
           channel: str | None = None, thread_ts: str | None = None, comment: str | None = None,
           release_id: int | None = None) -> bool:
    """A file to upload to `user`'s DM or to `channel`, made when it is sent by the producer named here
    (bot/uploads.py registers them), so the outbox row stays small and the file shows the record as it
    is then. False if this key was already queued (a replay)."""
    if (user is None) == (channel is None):
        raise ValueError("an upload goes to a user's DM or to a channel")
    return outbox.enqueue(session, key=key, kind=FILE_UPLOAD, release_id=release_id, at=now,
                          payload={"producer": producer, "args": args, "user": user, "channel": channel,
                                   "thread_ts": thread_ts, "comment": comment})
