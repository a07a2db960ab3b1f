"""Files the bot uploads (files.uploadV2): the evidence packet, KPI charts.

An upload is an outbox row (commands.announce.upload) naming a producer and its
arguments; the file is made here, when the row is sent, so a retry after Slack
failed re-makes the same file and the row never carries megabytes. Producers are
registered by name at import time; a row naming an unknown producer (written by a
newer version) is left alone like any unknown outbox kind.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from slack_sdk import WebClient
from sqlalchemy.engine import Engine

from commands.clock import Clock
from commands.policy import Policy


@dataclass(frozen=True)
class Upload:
    filename: str
    content: bytes
    title: str
    alt_text: str | None = None  # for images: what a screen reader says


Producer = Callable[..., Upload]  # producer(db, clock, policy, **args) -> Upload
PRODUCERS: dict[str, Producer] = {}


class UnknownProducer(LookupError):
    pass


def producer(name: str) -> Callable[[Producer], Producer]:
    def register(fn: Producer) -> Producer:
        PRODUCERS[name] = fn
        return fn
    return register


def make(name: str, db: Engine, clock: Clock, policy: Policy, args: dict[str, Any]) -> Upload:
    fn = PRODUCERS.get(name)
    if fn is None:
        raise UnknownProducer(f"no producer named {name!r}")
    return fn(db, clock, policy, **args)


def send(client: WebClient, upload: Upload, *, user: str | None = None, channel: str | None = None,
         thread_ts: str | None = None, comment: str | None = None) -> dict:
    """Upload to `user`'s DM (opened first: files.completeUploadExternal takes a channel id, not a user)
    or to `channel`. Raises SlackApiError as any Web API call does; the delivery loop classifies it."""
    if user is not None:
        channel = client.conversations_open(users=user)["channel"]["id"]
    kwargs: dict[str, Any] = {"channel": channel, "content": upload.content, "filename": upload.filename,
                              "title": upload.title}
    if comment:
        kwargs["initial_comment"] = comment
    if thread_ts:
        kwargs["thread_ts"] = thread_ts
    if upload.alt_text:
        kwargs["alt_txt"] = upload.alt_text
    return client.files_upload_v2(**kwargs).data
