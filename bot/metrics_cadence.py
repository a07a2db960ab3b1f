"""The scheduler's hook for the QMS 6.1 reviews (commands.metrics_review): every process ticks, the
database decides which one writes the review (its snapshot's unique period, its outbox key)."""
from __future__ import annotations

import logging

from commands import metrics_review

from bot import metrics_chart  # noqa: F401  (registers the chart producer the review's upload names)
from bot.messages.metrics import review_text
from bot.services import Services

log = logging.getLogger(__name__)
TICK_MINUTES = 1


def tick(svc: Services) -> list[str]:
    """Queue the reviews now due, and send them at once; the delivery loop retries what fails."""
    queued = metrics_review.tick(svc.db, svc.clock.now(), svc.policy, svc.config.release_channel, review_text)
    if queued:
        log.info("metrics reviews queued: %s", ", ".join(queued))
        try:
            svc.delivery.run_once(keys=queued)
        except Exception:  # noqa: BLE001 - the rows stay in the outbox for the scheduler
            log.exception("sending the metrics review failed; the scheduler will retry")
    return queued
