"""Sending the non-conformance register's outbox rows: its change notes and its reminders.

Both go in the NC's release's thread, or in the release channel for an NC that names no release (a
deployment reported for none). A reminder is judged when it comes due
(commands.nonconformance_register.reminder_due); the escalation, once sent, is marked on the NC in the
transaction that marks the row sent, so it is said once whichever process sends it."""
from __future__ import annotations

from typing import Callable

from sqlalchemy.engine import Engine

from commands import nonconformance_register as register
from commands.clock import Clock
from commands.policy import Policy
from storage import outbox
from storage.db import read, transaction
from storage.models import NonConformance, Outbox, Release

from bot.messages import nonconformance as render


class NcDelivery:
    def __init__(self, db: Engine, clock: Clock, channel: str, policy: Policy,
                 post: Callable[..., object], post_in_thread: Callable[..., None],
                 done: Callable[..., None]):
        self._db, self._clock, self._channel, self._policy = db, clock, channel, policy
        self._post, self._post_in_thread, self._done = post, post_in_thread, done

    def _say(self, release: Release | None, ref: str, text: str, blocks: list[dict]) -> None:
        if release is not None:
            self._post_in_thread(release, text, blocks)
        else:
            self._post(self._channel, text, blocks, ref=None)

    def note(self, row: Outbox) -> None:
        with read(self._db) as session:
            nc = session.get(NonConformance, row.payload.get("nc"))
            release = session.get(Release, nc.release_id) if nc is not None and nc.release_id else None
        if nc is None:
            self._done(row, result="skipped: no such non-conformance")
            return
        self._say(release, nc.ref, *render.change_note(row.payload, nc, self._policy))
        self._done(row)

    def reminder(self, row: Outbox) -> None:
        with read(self._db) as session:
            notice = register.reminder_due(session, row)
        if isinstance(notice, register.Skip):
            self._done(row, result=f"skipped: {notice.reason}")
            return
        self._say(notice.release, notice.nc.ref, *render.reminder(notice, self._policy))
        now = self._clock.now()
        with transaction(self._db) as session:
            if outbox.mark_sent(session, row, now) and notice.what == "nc_escalation":
                register.escalated(session, notice.nc.id, now)
