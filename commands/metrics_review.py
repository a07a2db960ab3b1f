"""The QMS 6.1 review cadences: the weekly metrics review and the monthly KPI report.

Each review is about one period (the week, or the month, before it falls due) and is written once: its
figures are frozen in a MetricSnapshot row (unique per kind and period, with the sha256 of its canonical
JSON) and in an audit event, and its post is an outbox row with a stable key (`metrics-weekly:2026-W48`,
`metrics-monthly:2026-11`), all in one transaction. So however many processes tick, and however often
they restart, a review is posted once; and an incident linked later changes the live figures but never
what was reported (`releasebot metrics --snapshot 2026-11` reprints it from the row).
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from commands import announce
from commands.metrics import MetricsReport, compute_in
from commands.metrics_period import Period, monthly_due, weekly_due
from commands.policy import Policy
from storage import audit
from storage.db import read, transaction
from storage.models import MetricSnapshot, Outbox, Release

WEEKLY, MONTHLY = "weekly", "monthly"
PRODUCER = "metrics_chart"  # bot/metrics_chart.py
ACTOR = "releasebot"
CHART_WEEKS = 8  # the weekly review's chart: the week reviewed and the seven before it
# A review is posted up to this long after it fell due (the bot was down on the day); an older one is
# not news any more, and the next one covers the ground.
LATE_LIMIT = {WEEKLY: timedelta(days=6), MONTHLY: timedelta(days=20)}

# render(kind, period, report, previous report) -> the post's text (bot/messages/metrics.py)
Render = Callable[[str, Period, MetricsReport, MetricsReport], str]


def digest(figures: dict) -> str:
    canonical = json.dumps(figures, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def find(session: Session, kind: str, period: str) -> MetricSnapshot | None:
    return session.exec(select(MetricSnapshot).where(MetricSnapshot.kind == kind,
                                                     MetricSnapshot.period == period)).first()


def freeze(session: Session, kind: str, period: Period, policy: Policy, now: datetime) -> tuple[MetricSnapshot, bool]:
    """The snapshot of this review, and whether this call made it (audited as `metrics_snapshot`)."""
    found = find(session, kind, period.label)
    if found is not None:
        return found, False
    figures = compute_in(session, period.start, period.end, policy=policy).as_dict()
    row = MetricSnapshot(kind=kind, period=period.label, from_at=period.start, to_at=period.end, figures=figures,
                         digest=digest(figures), created_at=now)
    try:
        with session.begin_nested():  # another process froze it a moment ago: theirs stands
            session.add(row)
            session.flush()
    except IntegrityError:
        return find(session, kind, period.label), False  # type: ignore[return-value]
    audit.record(session, actor=ACTOR, action="metrics_snapshot", at=now, reason=f"{kind} review {period.label}",
                 after={"kind": kind, "period": period.label, "digest": row.digest, "figures": figures})
    return row, True


def frozen(db: Engine, period: str, kind: str = MONTHLY) -> tuple[MetricsReport, MetricSnapshot] | None:
    """A stored report as it was posted, or None if that review was never made."""
    with read(db) as session:
        row = find(session, kind, period)
        return (MetricsReport.from_dict(row.figures), row) if row is not None else None


def due_reviews(now: datetime, policy: Policy) -> list[tuple[str, Period, datetime]]:
    return [(WEEKLY, *weekly_due(now, policy.metrics)), (MONTHLY, *monthly_due(now, policy.metrics))]


def key(kind: str, period: Period) -> str:
    return f"metrics-{kind}:{period.label}"


def tick(db: Engine, now: datetime, policy: Policy, channel: str, render: Render) -> list[str]:
    """Queue the reviews that are due and not yet queued; returns the keys this call queued."""
    queued = []
    for kind, period, due_at in due_reviews(now, policy):
        if now - due_at > LATE_LIMIT[kind]:
            continue
        k = key(kind, period)
        with read(db) as session:  # every tick asks; only the first after it falls due computes
            if session.exec(select(Outbox.id).where(Outbox.key == k)).first() is not None:
                continue
            # A period from before the record began (a new install, a new database) has nothing to review.
            if session.exec(select(Release.id).where(Release.created_at < period.end).limit(1)).first() is None:
                continue
        with transaction(db) as session:
            snap, _ = freeze(session, kind, period, policy, now)
            report = MetricsReport.from_dict(snap.figures)
            before = period.previous(policy.metrics.review_tz)
            earlier = find(session, kind, before.label)
            previous = (MetricsReport.from_dict(earlier.figures) if earlier is not None
                        else compute_in(session, before.start, before.end, policy=policy))
            if kind == WEEKLY:
                args = {"start": (period.end - timedelta(weeks=CHART_WEEKS)).isoformat(),
                        "end": period.end.isoformat(), "service": None, "title": f"{CHART_WEEKS} weeks to {period.label}"}
            else:
                args = {"snapshot": kind, "period": period.label, "title": f"KPI report {period.label}"}
            if announce.upload(session, key=k, producer=PRODUCER, args=args, now=now, channel=channel,
                               comment=render(kind, period, report, previous)):
                queued.append(k)
    return queued

