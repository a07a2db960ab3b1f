"""APScheduler is the clock only: it wakes delivery every few seconds in every process.

Nothing is kept in APScheduler's own job stores; what must happen later is a
row in the database, so any process (or the next one after a restart) sends it.
"""
from __future__ import annotations

from apscheduler.schedulers.background import BackgroundScheduler

from bot.services import Services

TICK_SECONDS = 3


def start_scheduler(svc: Services) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(svc.delivery.run_once, "interval", seconds=TICK_SECONDS, id="deliver",
                      max_instances=1, coalesce=True)
    scheduler.start()
    return scheduler
