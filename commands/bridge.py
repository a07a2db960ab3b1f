"""The emergency bridge (QMS 4.6): where an emergency is worked, and its decision log.

The bridge's channel is made by the delivery loop, after the emergency release
commits, from one outbox row keyed per release: a retry after Slack failed
midway finds the same row and never makes a second channel.
"""
from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from commands import announce
from storage import outbox
from storage.models import Emergency, Release

BRIDGE_OPEN = "bridge_open"


def request_bridge(session: Session, release: Release, emergency: Emergency, now: datetime) -> None:
    """Queue the bridge's opening: a channel (or a thread when policy or Slack says so), invites and the card."""
    outbox.enqueue(session, key=f"bridge-open:{release.id}", kind=BRIDGE_OPEN, release_id=release.id,
                   at=now, stream=announce.stream(release), payload={"bridge_key": emergency.bridge_key})
