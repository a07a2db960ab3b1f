"""APScheduler is the clock only: it wakes delivery every few seconds in every process.

Nothing is kept in APScheduler's own job stores; what must happen later is a
row in the database, so any process (or the next one after a restart) sends it.
The first sweep runs at start: what came due while the bot was down goes out at once.
"""
from __future__ import annotations

from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler

from commands import audit_checkpoint
from storage import inbox as inbox_rows
from storage import replay

from bot import metrics_cadence
from bot.calendar_sync import REFRESH_HOURS
from bot.services import Services

TICK_SECONDS = 3
INBOX_SECONDS = 1
PRUNE_MINUTES = 5
CHECKPOINT_MINUTES = 5  # how late into its period a checkpoint may be made


def build_scheduler(svc: Services, inbox=None) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")
    if inbox is not None:
        # Acknowledged work left in the inbox (by a killed or stopped process, or waiting its person's
        # turn) is taken up at start and then every tick, by whichever process sweeps first.
        scheduler.add_job(inbox.sweep, "interval", seconds=INBOX_SECONDS, id="inbox", max_instances=1,
                          coalesce=True, next_run_time=datetime.now(timezone.utc))
        scheduler.add_job(lambda: inbox_rows.prune(svc.db, svc.clock.now()), "interval", hours=1,
                          id="inbox_prune", max_instances=1, coalesce=True)
    def deliver() -> int:
        if inbox is not None:
            inbox.acks.quiet()  # a tick's sends wait for a burst of acks to be answered, as workers do
        return svc.delivery.run_once()

    scheduler.add_job(deliver, "interval", seconds=TICK_SECONDS, id="deliver",
                      max_instances=1, coalesce=True, next_run_time=datetime.now(timezone.utc))
    # Subscribed calendars are fetched and blackout occurrences rolled forward,
    # at start and then every few hours; warnings for the next days are queued then.
    scheduler.add_job(svc.refresh_calendars, "interval", hours=REFRESH_HOURS, id="calendars",
                      max_instances=1, coalesce=True, next_run_time=datetime.now(timezone.utc))
    # Deliveries seen (bot.replay) are kept only while Slack's signature check could let them in again.
    scheduler.add_job(lambda: replay.prune(svc.db, svc.clock.now()), "interval", minutes=PRUNE_MINUTES,
                      id="seen_deliveries", max_instances=1, coalesce=True)
    # QMS 6.1: the weekly review and the monthly KPI report, each queued once (bot/metrics_cadence.py).
    scheduler.add_job(lambda: metrics_cadence.tick(svc), "interval", minutes=metrics_cadence.TICK_MINUTES,
                      id="metrics_reviews", max_instances=1, coalesce=True, next_run_time=datetime.now(timezone.utc))
    if svc.config.audit_key is not None:
        # This period's signed audit checkpoint, by whichever process ticks first (one per period: its key).
        scheduler.add_job(lambda: audit_checkpoint.due(svc.db, svc.config.audit_key, svc.clock.now(),
                                                       svc.policy.audit.checkpoint_every, svc.config.audit_channel),
                          "interval", minutes=CHECKPOINT_MINUTES, id="audit_checkpoint", max_instances=1,
                          coalesce=True, next_run_time=datetime.now(timezone.utc))
    return scheduler

