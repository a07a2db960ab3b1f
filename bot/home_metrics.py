"""This week's metrics for a release manager's App Home, from commands.metrics when it is there.

commands.metrics (the KPIs, issue 13) is built beside App Home; until it is merged, or when it
fails, the Home says "metrics unavailable" instead of failing whole. The contract coded against:
compute(db, start, end, *, service=None, policy) -> MetricsReport, whose .figures are Figure(key,
label, value, n, unit, target, met, enough, text)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from commands.policy import Policy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Line:
    label: str
    text: str  # the display string, with its sample size
    target: str | None
    met: bool | None


@dataclass(frozen=True)
class WeekMetrics:
    start: datetime
    end: datetime
    lines: tuple[Line, ...] = ()
    unavailable: str | None = None  # why there are no figures


def week_of(now: datetime) -> tuple[datetime, datetime]:
    """The ISO week so far, Monday 00:00 UTC to now."""
    start = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, now


def this_week(db: Engine, now: datetime, policy: Policy) -> WeekMetrics:
    start, end = week_of(now)
    try:
        from commands.metrics import compute
    except ImportError:
        return WeekMetrics(start, end, unavailable="metrics unavailable")
    try:
        report = compute(db, start, end, policy=policy)
        lines = tuple(Line(str(f.label), str(f.text), f.target, f.met) for f in report.figures)
    except Exception:  # noqa: BLE001 - the rest of the Home still shows; the log has the traceback
        log.exception("this week's metrics failed")
        return WeekMetrics(start, end, unavailable="metrics unavailable (the computation failed; see the log)")
    return WeekMetrics(start, end, lines)
