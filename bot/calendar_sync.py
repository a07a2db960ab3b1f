"""Keeping blackouts current: fetch subscribed calendars and roll occurrences forward.

Runs every few hours on the scheduler in every process; each step is
idempotent, so two processes doing it at once change nothing twice.
"""
from __future__ import annotations

import logging

from calendars import ics
from calendars.fetch import FetchError, fetch
from commands import blackout

log = logging.getLogger(__name__)
REFRESH_HOURS = 3


def sync(svc) -> None:
    now, net = svc.clock.now(), svc.config.calendar_net
    for sub in blackout.due_subscriptions(svc.db):
        try:
            got = fetch(sub.url, sub.etag, sub.last_modified, net=net)
            blackout.fetched(svc.db, sub.id, now, svc.policy, body=got.body, etag=got.etag,
                             last_modified=got.last_modified)
        except (FetchError, ics.CalendarError) as exc:
            # str() of these is a category ("HTTP 404", "could not connect", …): it is stored and posted,
            # so it never carries what the server sent.
            if blackout.fetch_failed(svc.db, sub.id, now, str(exc)):
                log.warning("calendar %s (%s) failing: %s", sub.name, sub.url, exc)
    blackout.refresh_all(svc.db, now, svc.policy)
    svc.delivery.run_once()
