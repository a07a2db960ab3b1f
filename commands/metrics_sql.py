"""The KPIs counted in the database (issue 13: a quarter of 100k deployments in under 1 s).

The same definitions as commands.metrics' per-deployment classification (README "Metrics"), written as
SQL over deployment_fact (storage/deployment_facts.py: each deployment with its release's service and type,
its last approval and its times already in epoch seconds, kept by triggers), so that no deployment row
crosses into Python except as a median's sample:

1. one GROUP BY local day of the period's rows: how many deployments, successes, change failures, window
   rollbacks... each a SUM(CASE ...), counted as if no deployment had a linked incident or an emergency
   release after it (no join: a join, or a look-up per row, cost more than the rest of the counting);
2. the few thousand deployments that have one (`special`: the linked incidents, one row per causing
   release, and the first emergency after each successful deployment's finish, found from the
   emergencies' side), with what that changes on their day, added to the first pass's days (exact: counts
   are integers), and their times to restore by incidents. commands.metrics sums the days into weeks and
   the period, and counts the days with a success for the DORA bucket;
3. the other medians' samples, one column each (NULL where a deployment is not in that sample);
4. the REL-n of the period's rollbacks and emergency deployments.

Times are compared as the epoch seconds of storage.deployment_facts.epoch (on SQLite julianday rounded to
the millisecond), exactly the floats the Python classification compared, so the figures are the same to the
last digit. A row's local day is a bisect over the days' first seconds, computed from the zone's offsets (a
nested CASE bisect where a zone changes its clock at midnight).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import (Float, Integer, and_, bindparam, case, cast, false, func, literal, null, or_, select, text,
                        true, union, union_all)
from sqlmodel import Session

from calendars.timeparse import zone
from commands.metrics_data import _AFTER, _raw
from commands.states import CANCELLED
from storage.deployment_facts import DeploymentFact, epoch
from storage.models import Incident, Release


@dataclass
class Day:
    deployments: int = 0
    outcome_success: int = 0  # outcome == success (the frequency, the chart's successes)
    failures: int = 0  # change failures
    successes: int = 0  # the success rate's hits
    rollbacks_in_window: int = 0
    stabilised: int = 0
    breaches: int = 0
    documented: int = 0  # package_complete recorded
    complete: int = 0


@dataclass
class Counts:
    days: dict[int, Day]  # by index into the period's local days
    samples: dict[str, list[float]] = field(default_factory=dict)  # median key -> seconds
    rollbacks: tuple[str, ...] = ()
    emergencies: tuple[str, ...] = ()


_MEDIANS = ("time_to_restore", "lead_time", "lead_time_request", "time_to_deploy", "time_to_deploy_infrastructure",
            "rollback_execution", "approval_standard", "approval_emergency")


def _bisect(t, starts: list[float], lo: int, hi: int):
    """max(0, bisect_right(starts, t) - 1) as a nested CASE: the index of t's local day."""
    if lo >= hi:
        return literal(lo)
    mid = (lo + hi + 1) // 2
    return case((t >= bindparam(None, starts[mid], type_=Float), _bisect(t, starts, mid, hi)),
                else_=_bisect(t, starts, lo, mid - 1))


def _offset_at(t: float, tz: str) -> int:
    return int(datetime.fromtimestamp(t, timezone.utc).astimezone(zone(tz)).utcoffset().total_seconds())


def _segments(day_starts: list[float], end: float, tz: str) -> list[tuple[float, int]] | None:
    """The zone's UTC offset over the period as [(from epoch second, offset)], or None where a local day
    does not begin at its midnight (a zone that changes its clock at 00:00): the caller bisects then."""
    points = [*day_starts, end]
    segments = [(float("-inf"), _offset_at(points[0], tz))]
    for a, b in zip(points, points[1:]):
        if _offset_at(b, tz) != _offset_at(a, tz):
            lo, hi = int(a), int(b)  # the first second of the new offset; zones change on whole seconds
            while lo < hi:
                mid = (lo + hi) // 2
                lo, hi = (mid + 1, hi) if _offset_at(mid, tz) == _offset_at(a, tz) else (lo, mid)
            segments.append((float(lo), _offset_at(lo, tz)))
    local = lambda t: int((t + next(o for at, o in reversed(segments) if t >= at)) // 86400)  # noqa: E731
    first = local(day_starts[0])
    if any(local(t) != first + k or local(t - 1e-3) != first + k - 1 for k, t in enumerate(day_starts)):
        return None
    return segments


def _local_day(t, day_starts: list[float], end: float, tz: str, dialect: str):
    """t's local day, as an index into day_starts (the days' first seconds): what bisecting day_starts
    gives, computed as (t + the zone's offset) // 86400 less the first day's number."""
    segments = _segments(day_starts, end, tz)
    if segments is None:
        return _bisect(t, day_starts, 0, len(day_starts) - 1)
    offset = literal(segments[0][1])
    for at, o in segments[1:]:
        offset = case((t >= bindparam(None, at, type_=Float), literal(o)), else_=offset)
    first = int((day_starts[0] + segments[0][1]) // 86400)
    days = (t + offset) / 86400.0
    whole = cast(days, Integer) if dialect == "sqlite" else cast(func.floor(days), Integer)  # t > 0: truncation
    return whole - first


def _conditions(t, first, following, success_window: float):
    """A deployment row's flags (t has deployment_fact's columns) in Day's order after `deployments`, and
    whether it is a change failure. first: when its first linked incident was opened; following: the first
    emergency release after its finish; None where the query leaves them out (no incident, no emergency)."""
    S, F, RB, SE = t.c.started, t.c.finished, t.c.rollback_decided, t.c.stabilisation_ends
    success_outcome = t.c.outcome == "success"
    # some incident opened by the window's end
    early = false() if first is None else and_(first.is_not(None), first <= func.coalesce(SE, F, S))
    fix = followed = false()
    if following is not None:
        fix = and_(success_outcome, F.is_not(None), following.is_not(None), following <= F + success_window)
        followed = and_(success_outcome, F.is_not(None), SE.is_not(None), following.is_not(None), following <= SE)
    rb, stabilised = RB.is_not(None), SE.is_not(None)
    failure = or_(t.c.outcome.in_(("rolled_back", "failed")), rb, early, followed)
    return failure, (success_outcome, failure, and_(success_outcome, ~rb, ~fix), and_(rb, or_(~stabilised, RB <= SE)),
                     stabilised, and_(stabilised, or_(and_(rb, RB <= SE), early)), t.c.package_complete.is_not(None),
                     t.c.package_complete.is_(True))


def _flag(condition):
    return case((condition, 1), else_=0)


@dataclass
class _Period:
    """What every pass filters by: the period's deployments of the environment (and service)."""
    session: Session
    dialect: str
    start: datetime
    end: datetime
    environment: str
    service: str | None
    success_window: float
    day_starts: list[float]
    tz: str

    def where(self, f) -> list:
        w = [f.c.environment == self.environment, f.c.started_at >= self.start, f.c.started_at < self.end,
             f.c.outcome.is_not(None)]
        return [*w, f.c.service == self.service] if self.service else w

    def day_of(self, t):
        return _local_day(t, self.day_starts, self.end.timestamp(), self.tz, self.dialect)


def count(session: Session, start: datetime, end: datetime, environment: str, service: str | None,
          success_window: float, day_starts: list[float], tz: str) -> Counts:
    """Three passes over the period's rows of deployment_fact and one over a few thousand: each day's counts
    as if no deployment had a linked incident or an emergency after it; then, for the deployments that do
    (`special`), what that changes on their day, and their times to restore by incidents; the medians'
    samples; the REL-n lists."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":  # compiling these plans to machine code took longer than running them
        session.execute(text("SET LOCAL jit = off"))
    p = _Period(session, dialect, start, end, environment, service, success_window, day_starts, tz)
    days: dict[int, Day] = {}

    def add(index: int, sums) -> None:
        got = days.setdefault(min(max(0, int(index)), len(day_starts) - 1), Day())  # bisect's clamp: a start
        for name, v in zip(vars(got), sums):  # before the first day is in it
            setattr(got, name, getattr(got, name) + int(v or 0))

    samples: dict[str, list[float]] = {k: [] for k in _MEDIANS}
    longest = _plain_days(p, add)
    _special_days(p, longest, add, samples["time_to_restore"])
    _samples(p, samples)
    f = DeploymentFact.__table__
    rb, em = f.c.rollback_decided.is_not(None), f.c.type == "emergency"
    refs = _raw(session, select(f.c.release_id, rb, em).where(*p.where(f), or_(rb, em))
                .order_by(f.c.started_at, f.c.release_id))
    return Counts(days, samples, tuple(f"REL-{x[0]}" for x in refs if x[1]),
                  tuple(f"REL-{x[0]}" for x in refs if x[2]))


def _plain_days(p: _Period, add) -> float:
    """Each day's counts as if no deployment had a linked incident or an emergency after it; returns the
    longest stabilisation window of the period's successful deployments (how far the next pass looks)."""
    f = DeploymentFact.__table__
    _, plain = _conditions(f, None, None, p.success_window)
    window = case((f.c.outcome == "success", f.c.stabilisation_ends - f.c.finished))
    # per row in a subquery, summed outside: PostgreSQL groups by the day's column, not by a copy of its CASE
    rows = select(p.day_of(f.c.started).label("day"), *(_flag(c) for c in plain), window).where(*p.where(f))
    rows = rows.subquery()
    day, *flags, windows = rows.c
    longest = 0.0
    for index, n, *sums, widest in _raw(p.session, select(day, func.count(), *(func.sum(c) for c in flags),
                                                          func.max(windows)).group_by(day)):
        add(index, (n, *sums))
        longest = max(longest, widest or 0.0)
    return longest


def _special_days(p: _Period, longest: float, add, restores: list[float]) -> None:
    """What linked incidents and emergency releases change on their deployments' days, and the times to
    restore of the failures restored by their incidents.

    The incidents are one row per causing release. The emergencies are those commands.metrics_data.load
    reads (requested from the period's start to 8 days after its end), and the one that matters is the
    first after a successful deployment's finish, other than its own: found from the emergencies' side, a
    few thousand a quarter, each looking up the deployments of its service that finished shortly before it
    (ix_deployment_fact_service). One counts only within the success window or the stabilisation window
    after the finish, so the longer of the two (+1 s, for the rounding of `at - reach`) is as far back as
    such a deployment can have finished."""
    f, i, r = DeploymentFact.__table__, Incident.__table__, Release.__table__
    E = lambda column: epoch(column, p.dialect)  # noqa: E731
    fi, fe = f.alias("fi"), f.alias("fe")
    inc = (select(i.c.caused_by_release_id.label("rid"), func.min(E(i.c.opened_at)).label("first"),
                  func.count().label("n"), func.count(i.c.resolved_at).label("resolved"),
                  func.max(E(i.c.resolved_at)).label("last"))
           .select_from(i.join(fi, fi.c.release_id == i.c.caused_by_release_id))
           .where(fi.c.environment == p.environment, fi.c.started_at >= p.start, fi.c.started_at < p.end)
           .group_by(i.c.caused_by_release_id).cte("inc"))
    em = (select(r.c.service, r.c.id, E(r.c.start_at).label("at"))
          .where(r.c.effective_type == "emergency", r.c.state != CANCELLED, r.c.environment == p.environment,
                 r.c.start_at >= p.start, r.c.start_at < p.end + _AFTER,
                 *([r.c.service == p.service] if p.service else []))
          .cte("em"))
    reach = bindparam("reach", max(p.success_window, longest) + 1.0, type_=Float)
    near = [fe.c.environment == p.environment, fe.c.service == em.c.service, fe.c.finished < em.c.at,
            fe.c.finished > em.c.at - reach, fe.c.started_at >= p.start, fe.c.started_at < p.end,
            fe.c.outcome == "success", fe.c.release_id != em.c.id]
    if p.dialect == "postgresql":  # each emergency's range of the index (OFFSET 0: as a loop, not flattened
        # into a join): the planner misjudges a join on ranges, and once hashed 2.4M pairs instead (2.3 s)
        found = select(fe.c.release_id).where(*near).offset(0).lateral("found")
        pairs = select(found.c.release_id.label("rid"), em.c.at).select_from(em.join(found, true()))
    else:
        pairs = select(fe.c.release_id.label("rid"), em.c.at).where(*near)
    pairs = pairs.subquery("pairs")
    following = select(pairs.c.rid, func.min(pairs.c.at).label("at")).group_by(pairs.c.rid).cte("following")
    special = (select(*(f.c[c] for c in ("started", "finished", "rollback_decided", "restored", "stabilisation_ends",
                                         "outcome", "package_complete")),
                      inc.c.first, inc.c.n, inc.c.resolved, inc.c.last, following.c.at.label("following"))
               .select_from(f.outerjoin(inc, inc.c.rid == f.c.release_id)
                            .outerjoin(following, following.c.rid == f.c.release_id))
               .where(*p.where(f), f.c.release_id.in_(union(select(inc.c.rid), select(following.c.rid))))
               .cte("special"))
    failure, full = _conditions(special, special.c.first, special.c.following, p.success_window)
    _, without = _conditions(special, None, None, p.success_window)
    changes = select(p.day_of(special.c.started).label("day"),
                     *(_flag(a) - _flag(b) for a, b in zip(full, without))).subquery()
    day, *deltas = changes.c
    per_day = select(day, literal(0), *(func.sum(c) for c in deltas), cast(null(), Float)).group_by(day)
    # a failure without a rollback restored, where all its incidents are resolved, when the last one was;
    # rows of their own beside the days (day NULL), so that the small sets are made once
    by_incidents = (select(*(null() for _ in range(len(full) + 2)), special.c.last - special.c.finished)
                    .where(special.c.n <= special.c.resolved, special.c.finished.is_not(None), failure,
                           ~and_(special.c.rollback_decided.is_not(None), special.c.restored.is_not(None))))
    for index, *sums, restore in _raw(p.session, union_all(per_day, by_incidents)):
        if index is None:
            restores.append(restore)
        else:
            add(index, sums)


def _samples(p: _Period, samples: dict[str, list[float]]) -> None:
    """The other medians' samples, one column each (NULL where a deployment is not in that sample)."""
    f = DeploymentFact.__table__
    S, F, RB, RS, kind = f.c.started, f.c.finished, f.c.rollback_decided, f.c.restored, f.c.type
    done = and_(f.c.outcome == "success", F.is_not(None))
    columns = {("rollback_execution", "time_to_restore"): case((and_(RB.is_not(None), RS.is_not(None)), RS - RB)),
               ("lead_time",): case((and_(done, f.c.commit_time.is_not(None)), F - f.c.commit_time)),
               ("lead_time_request",): case((done, F - f.c.requested)),
               ("time_to_deploy",): case((and_(done, kind != "infrastructure"), F - S)),
               ("time_to_deploy_infrastructure",): case((and_(done, kind == "infrastructure"), F - S)),
               ("approval_standard",): case((kind != "emergency", f.c.approved - f.c.requested)),
               ("approval_emergency",): case((kind == "emergency", f.c.approved - f.c.requested))}
    rows = _raw(p.session, select(*columns.values()).where(*p.where(f)), binary=True)
    for k, keys in enumerate(columns):
        values = [row[k] for row in rows if row[k] is not None]
        for key in keys:
            samples[key].extend(values)
