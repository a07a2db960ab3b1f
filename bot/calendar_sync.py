"""Keeping blackouts current: fetch subscribed calendars and roll occurrences forward.

Runs every few hours on the scheduler in every process; each step is
idempotent, so two processes doing it at once change nothing twice.

A fetch can take up to a minute per calendar, so one asked for from Slack (a new
subscription) never runs on the listener executor, where it would hold a worker
every other person's click waits for: it goes to this module's own small pool,
and the person is told the result when it is in.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from sqlmodel import Session

from calendars import ics
from calendars.fetch import FetchError, fetch
from commands import blackout
from storage.models import CalendarSubscription

log = logging.getLogger(__name__)
REFRESH_HOURS = 3
CALENDAR_WORKERS = 2  # fetches wait on the network, not on us; two keep one slow host from holding up the next

_pool = ThreadPoolExecutor(max_workers=CALENDAR_WORKERS, thread_name_prefix="calendar")
_lock = threading.Condition()
_queued: Future | None = None  # a sync not started yet: later asks join it instead of queueing another
_pending = 0


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


def sync_soon(svc, then: Callable[[], None] | None = None) -> None:
    """Sync on the calendar pool, then call `then` (on that pool). Asks made while a sync waits to start
    share it: five subscriptions in a row are one more sync, not five."""
    global _queued, _pending
    with _lock:
        if _queued is None or _queued.running() or _queued.done():
            _queued = _pool.submit(_run, svc)
        _pending += 1
        _queued.add_done_callback(lambda _f: _after(then))


def wait_idle(timeout: float = 30.0) -> None:
    """Tests: wait until every sync asked for has run and told its person."""
    with _lock:
        if not _lock.wait_for(lambda: _pending == 0, timeout):
            raise AssertionError(f"calendar syncs still running after {timeout}s")


def result_text(db, sub_id: int) -> str:
    """What the person who subscribed is told once their calendar was fetched."""
    with Session(db) as session:
        sub = session.get(CalendarSubscription, sub_id)
        if sub is None or sub.removed_at is not None:
            return f"The calendar subscription {sub_id} was removed before it was fetched."
        if sub.last_error:
            return (f"The calendar '{sub.name}' could not be fetched ({sub.last_error}); the last good copy, if "
                    "any, stays, and it is tried again every few hours.")
        return f"The calendar '{sub.name}' is fetched: its events are blackouts now (/release blackout list)."


def _run(svc) -> None:
    try:
        sync(svc)
    except Exception:  # noqa: BLE001 - the scheduler's next refresh tries again
        log.exception("calendar sync failed")


def _after(then: Callable[[], None] | None) -> None:
    global _pending
    try:
        if then is not None:
            then()
    except Exception:  # noqa: BLE001
        log.exception("could not tell the result of a calendar sync")
    finally:
        with _lock:
            _pending -= 1
            _lock.notify_all()
