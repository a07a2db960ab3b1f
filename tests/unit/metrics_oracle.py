"""The oracle: commands/metrics.py as it was before the KPIs moved into SQL (issue 13, performance), frozen
here so tests/unit/test_metrics_equivalence.py can compare the fast path with it. Do not "fix" it.

The QMS 4.2 KPIs and the DORA four keys, computed from the record (README "Metrics" defines each).

Every figure is over distinct deployments (commands.metrics_data reads one row per deployment; incidents
and emergencies are looked up per deployment, never joined in), carries its sample size n, and below
[metrics] min_sample says "too few" instead of a number. With explain=True each figure lists the releases
behind it and how each one counted.
"""
from __future__ import annotations

import bisect
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from calendars.timeparse import zone
import metrics_oracle_data as metrics_data
from metrics_oracle_data import Facts, Row
from commands.policy import Policy
from storage.db import read

PERCENT, PER_WEEK, MINUTES = "%", "per week", "minutes"
BUCKETS = ("daily", "weekly", "monthly", "yearly")


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    value: float | None  # None: no sample, or too few to mean anything
    n: int
    unit: str  # "%", "per week" or "minutes"
    target: str | None  # "≥ 98%", "< 15 min"
    met: bool | None  # None when there is no value
    enough: bool  # n reached [metrics] min_sample
    text: str  # "12 per week (n=12)", "4.2% (n=48)", "too few (n=3)"
    releases: tuple[tuple[str, str], ...] = ()  # explain=True: (REL-n, how it counted)


@dataclass(frozen=True)
class Week:
    start: datetime  # Monday 00:00 in the review zone, as UTC
    deployments: int
    successes: int
    failures: int  # change failures

    @property
    def failure_rate(self) -> float | None:
        return 100.0 * self.failures / self.deployments if self.deployments else None


@dataclass(frozen=True)
class MetricsReport:
    start: datetime
    end: datetime
    service: str | None
    environment: str
    figures: tuple[Figure, ...]
    weeks: tuple[Week, ...]
    dora_bucket: str  # daily | weekly | monthly | yearly (fourkeys' median rule)
    rollbacks: tuple[str, ...] = ()  # REL-n of each rollback decided in the period
    emergencies: tuple[str, ...] = ()  # REL-n of each emergency deployment
    min_sample: int = 5

    def figure(self, key: str) -> Figure:
        return next(f for f in self.figures if f.key == key)

    def outside_target(self) -> tuple[Figure, ...]:
        return tuple(f for f in self.figures if f.met is False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, without the explain lists: what a snapshot freezes and --format json prints."""
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "service": self.service,
                "environment": self.environment, "dora_bucket": self.dora_bucket, "min_sample": self.min_sample,
                "figures": [{k: v for k, v in asdict(f).items() if k != "releases"} for f in self.figures],
                "weeks": [{"start": w.start.isoformat(), "deployments": w.deployments, "successes": w.successes,
                           "failures": w.failures} for w in self.weeks],
                "rollbacks": list(self.rollbacks), "emergencies": list(self.emergencies)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MetricsReport":
        """A frozen report as it was stored (commands.metrics_review)."""
        return cls(datetime.fromisoformat(data["from"]), datetime.fromisoformat(data["to"]), data.get("service"),
                   data["environment"], tuple(Figure(**f) for f in data["figures"]),
                   tuple(Week(datetime.fromisoformat(w["start"]), w["deployments"], w["successes"], w["failures"])
                         for w in data["weeks"]),
                   data["dora_bucket"], tuple(data.get("rollbacks", ())), tuple(data.get("emergencies", ())),
                   data.get("min_sample", 5))


def compute(db: Engine, start: datetime, end: datetime, *, service: str | None = None, policy: Policy,
            explain: bool = False) -> MetricsReport:
    """The figures for deployments started in [start, end), of one service or all."""
    with read(db) as session:
        return compute_in(session, start, end, service=service, policy=policy, explain=explain)


def compute_in(session: Session, start: datetime, end: datetime, *, service: str | None = None, policy: Policy,
               explain: bool = False) -> MetricsReport:
    mp = policy.metrics
    facts = metrics_data.load(session, start, end, mp.environment, service)
    return _report(facts, start, end, service, policy, explain)


# ---- one deployment's facts ---------------------------------------------------

def _emergency_between(facts: Facts, row: Row, after: float, until: float) -> int | None:
    """An emergency release of row's service requested in (after, until], other than row's own."""
    found = facts.emergencies.get(row.service, [])
    i = bisect.bisect_right(found, (after, float("inf")))
    while i < len(found) and found[i][0] <= until:
        if found[i][1] != row.release_id:
            return found[i][1]
        i += 1
    return None


@dataclass
class _Counted:
    success: bool
    success_why: str
    failure: str | None  # why it is a change failure
    rollback_in_window: bool
    stabilised: bool
    breach: str | None
    restore: float | None  # seconds to restore a failure, where recorded


def _count(facts: Facts, row: Row, policy: Policy, success_window: float) -> _Counted:
    incidents = facts.incidents.get(row.release_id, ())
    window_end = row.stabilisation_ends if row.stabilisation_ends is not None else (row.finished or row.started)
    early = [x for x in incidents if x.opened <= window_end]
    em = None
    if row.outcome == "success" and row.finished is not None and row.stabilisation_ends is not None:
        em = _emergency_between(facts, row, row.finished, row.stabilisation_ends)
    fix = None
    if row.outcome == "success" and row.finished is not None:
        fix = _emergency_between(facts, row, row.finished, row.finished + success_window)
    success = row.outcome == "success" and row.rollback_decided is None and fix is None
    success_why = ("succeeded" if success else f"emergency REL-{fix} within {_span(policy.metrics.success_window)}"
                   if fix else "rollback decided" if row.rollback_decided else row.outcome.replace("_", " "))
    if row.outcome in ("rolled_back", "failed"):
        failure: str | None = row.outcome.replace("_", " ")
    elif row.rollback_decided is not None:
        failure = "rolling back"
    elif early:
        failure = "incident " + ", ".join(x.key for x in early)
    elif em is not None:
        failure = f"followed by emergency REL-{em}"
    else:
        failure = None
    rollback_in_window = row.rollback_decided is not None and (
        row.stabilisation_ends is None or row.rollback_decided <= row.stabilisation_ends)
    breach = None
    if row.stabilisation_ends is not None:
        if row.rollback_decided is not None and row.rollback_decided <= row.stabilisation_ends:
            breach = "rolled back in the window"
        elif early:
            breach = "incident " + ", ".join(x.key for x in early)
    restore = None
    if failure is not None:
        if row.rollback_decided is not None and row.restored is not None:
            restore = row.restored - row.rollback_decided
        elif incidents and all(x.resolved is not None for x in incidents) and row.finished is not None:
            restore = max(x.resolved for x in incidents) - row.finished  # type: ignore[type-var]
    return _Counted(success, success_why, failure, rollback_in_window, row.stabilisation_ends is not None,
                    breach, restore)


# ---- figures --------------------------------------------------------------------

def _span(d: timedelta | float) -> str:
    minutes = (d.total_seconds() if isinstance(d, timedelta) else d) / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:.1f}".rstrip("0").rstrip(".") + " h"
    return f"{minutes / 1440:.1f}".rstrip("0").rstrip(".") + " d"


def _pct(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".") + "%"


class _Builder:
    def __init__(self, policy: Policy, explain: bool):
        self.min, self.targets, self.explain, self.out = policy.metrics.min_sample, policy.metrics.targets, explain, []

    def rate(self, key: str, label: str, counted: list[tuple[Row, bool, str]], target: str, below: bool) -> None:
        n, hits = len(counted), sum(1 for _, hit, _ in counted if hit)
        goal = self.targets[target]
        enough = n >= self.min
        value = 100.0 * hits / n if enough else None
        met = None if value is None else (value < goal if below else value >= goal)
        text = f"{_pct(value)} ({hits} of {n})" if value is not None else _few(n)
        self.out.append(Figure(key, label, value, n, PERCENT, f"{'<' if below else '≥'} {_pct(goal)}", met, enough,
                               text, self._list((r, why) for r, _, why in counted)))

    def median(self, key: str, label: str, samples: list[tuple[Row, float]], target: str | None) -> None:
        n = len(samples)
        enough = n >= self.min
        value = statistics.median(s for _, s in samples) / 60 if enough else None
        goal = self.targets[target] if target else None
        met = None if value is None or goal is None else value * 60 < goal.total_seconds()
        text = f"{_span(value * 60)} median (n={n})" if value is not None else _few(n)
        self.out.append(Figure(key, label, value, n, MINUTES, f"< {_span(goal)}" if goal else None, met, enough, text,
                               self._list((r, _span(s)) for r, s in samples)))

    def _list(self, items) -> tuple[tuple[str, str], ...]:
        return tuple((r.ref, why) for r, why in items) if self.explain else ()


def _few(n: int) -> str:
    return f"too few (n={n})" if n else "none (n=0)"


def _report(facts: Facts, start: datetime, end: datetime, service: str | None, policy: Policy,
            explain: bool) -> MetricsReport:
    rows = facts.rows
    window = policy.metrics.success_window.total_seconds()
    counted = [(row, _count(facts, row, policy, window)) for row in rows]
    b = _Builder(policy, explain)
    successes = [r for r in rows if r.outcome == "success"]
    weeks_long = max((end - start).total_seconds() / (7 * 86400), 1 / 7)
    per_week = len(successes) / weeks_long
    bucket = dora_bucket([r.started for r in successes], start, end, policy.metrics.review_tz)
    goal = policy.metrics.targets["deployments_per_week"]
    b.out.append(Figure("deployment_frequency", "Deployment frequency", per_week, len(successes), PER_WEEK,
                        f"≥ {goal:g} per week", per_week >= goal, True,
                        f"{per_week:.1f}".rstrip("0").rstrip(".") + f" per week, DORA {bucket} (n={len(successes)})",
                        b._list((r, "succeeded") for r in successes)))
    b.rate("success_rate", "Deployment success rate", [(r, c.success, c.success_why) for r, c in counted],
           "success_rate", below=False)
    b.rate("change_failure_rate", "Change failure rate",
           [(r, c.failure is not None, c.failure or "no failure") for r, c in counted], "change_failure_rate", below=True)
    b.median("time_to_restore", "Time to restore", [(r, c.restore) for r, c in counted if c.restore is not None],
             "time_to_restore")
    b.median("lead_time", "Lead time for changes (commit to production)",
             [(r, r.finished - r.commit_time) for r in successes if r.commit_time is not None and r.finished],
             "lead_time")
    b.median("lead_time_request", "Lead time (request to production)",
             [(r, r.finished - r.requested) for r in successes if r.finished], None)
    b.rate("rollback_rate", "Rollback rate",
           [(r, c.rollback_in_window, "rolled back in the window" if c.rollback_in_window else
             "rollback after the window" if r.rollback_decided else "no rollback") for r, c in counted],
           "rollback_rate", below=True)
    b.median("time_to_deploy", "Mean time to deploy (applications)",
             [(r, r.finished - r.started) for r in successes if r.finished and r.type != "infrastructure"],
             "time_to_deploy")
    b.median("time_to_deploy_infrastructure", "Mean time to deploy (infrastructure)",
             [(r, r.finished - r.started) for r in successes if r.finished and r.type == "infrastructure"],
             "time_to_deploy_infrastructure")
    b.median("rollback_execution", "Rollback execution time",
             [(r, r.restored - r.rollback_decided) for r in rows if r.restored and r.rollback_decided],
             "rollback_execution")
    b.median("approval_standard", "Approval cycle time (standard)",
             [(r, r.approved - r.requested) for r in rows if r.approved and r.type != "emergency"], "approval_standard")
    b.median("approval_emergency", "Approval cycle time (emergency)",
             [(r, r.approved - r.requested) for r in rows if r.approved and r.type == "emergency"], "approval_emergency")
    b.rate("stabilisation_breach_rate", "Stabilisation breach rate",
           [(r, c.breach is not None, c.breach or "held") for r, c in counted if c.stabilised],
           "stabilisation_breach_rate", below=True)
    b.rate("documentation_completeness", "Documentation completeness",
           [(r, bool(r.package_complete), "complete" if r.package_complete else "incomplete")
            for r in rows if r.package_complete is not None], "documentation_completeness", below=False)
    return MetricsReport(start, end, service, policy.metrics.environment, tuple(b.out),
                         _weeks(counted, start, end, policy.metrics.review_tz), bucket,
                         tuple(r.ref for r in rows if r.rollback_decided is not None),
                         tuple(r.ref for r in rows if r.type == "emergency"), policy.metrics.min_sample)


# ---- by week, and the DORA bucket --------------------------------------------------

def _monday(t: float, tz: str) -> date:
    d = datetime.fromtimestamp(t, timezone.utc).astimezone(zone(tz)).date()
    return d - timedelta(days=d.weekday())


def _mondays(start: datetime, end: datetime, tz: str) -> list[date]:
    first, last = _monday(start.timestamp(), tz), _monday(end.timestamp() - 1e-3, tz)
    return [first + timedelta(days=7 * i) for i in range((last - first).days // 7 + 1)]


def _utc(d: date, tz: str) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=zone(tz)).astimezone(timezone.utc)


def _local_days(start: datetime, end: datetime, tz: str) -> tuple[list[date], list[float]]:
    """Each local day from the Monday of start's week to end, and the epoch second each begins: a row's
    day is then a bisect, not a zone conversion (100k rows)."""
    first = _mondays(start, end, tz)[0]
    last = datetime.fromtimestamp(end.timestamp() - 1e-3, timezone.utc).astimezone(zone(tz)).date()
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return days, [_utc(d, tz).timestamp() for d in days]


def _day_of(t: float, days: list[date], starts: list[float]) -> date:
    return days[max(0, bisect.bisect_right(starts, t) - 1)]


def _weeks(counted: list[tuple[Row, _Counted]], start: datetime, end: datetime, tz: str) -> tuple[Week, ...]:
    days, starts = _local_days(start, end, tz)
    by: dict[date, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row, c in counted:
        day = _day_of(row.started, days, starts)
        w = by[day - timedelta(days=day.weekday())]
        w[0] += 1
        w[1] += row.outcome == "success"
        w[2] += c.failure is not None
    return tuple(Week(_utc(m, tz), *by.get(m, (0, 0, 0))) for m in _mondays(start, end, tz))


def dora_bucket(deployed: list[float], start: datetime, end: datetime, tz: str) -> str:
    """fourkeys' rule over the period's weeks: daily when the median week has deployments on 3 days or
    more; weekly when the median week has one; monthly when the median week's month had a week with one;
    else yearly."""
    local, starts = _local_days(start, end, tz)
    days: dict[date, set[date]] = defaultdict(set)
    for t in deployed:
        day = _day_of(t, local, starts)
        days[day - timedelta(days=day.weekday())].add(day)
    mondays = _mondays(start, end, tz)
    days_deployed = [len(days.get(m, ())) for m in mondays]
    week_deployed = [1 if days.get(m) else 0 for m in mondays]
    per_month: dict[tuple[int, int], int] = defaultdict(int)
    for m, hit in zip(mondays, week_deployed):
        per_month[(m.year, m.month)] += hit
    monthly = [per_month[(m.year, m.month)] for m in mondays]
    if statistics.median(days_deployed) >= 3:
        return "daily"
    if statistics.median(week_deployed) >= 1:
        return "weekly"
    if statistics.median(monthly) >= 1:
        return "monthly"
    return "yearly"
