"""The KPIs counted in the database (issue 13: a quarter of 100k deployments in under 1 s).

The same definitions as commands.metrics' per-deployment classification (README "Metrics"), written as
SQL so that no deployment row crosses into Python:

1. one GROUP BY local day: how many deployments, successes, change failures, window rollbacks... each a
   SUM(CASE ...) over flags from the linked incidents (joined as one row per causing release) and EXISTS
   on the service's emergency releases (ix_release_emergency). commands.metrics sums the days into weeks
   and the period, and counts the days with a success for the DORA bucket;
2. the medians' samples, one column each (NULL where a deployment is not in that sample);
3. the REL-n of the period's rollbacks and emergency deployments.

Times are compared as the epoch seconds of commands.metrics_data.epoch (on SQLite julianday rounded to the
millisecond), exactly the floats the Python classification compared, so the figures are the same to the
last digit; the raw timestamp ranges beside them are only there to let the indexes narrow the search
(each is implied by the exact comparison). A row's local day is a bisect over the days' first seconds,
computed from the zone's offsets (a nested CASE bisect where a zone changes its clock at midnight).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import Float, Integer, Interval, and_, bindparam, case, cast, exists, func, literal, or_, select
from sqlmodel import Session

from calendars.timeparse import zone
from commands.metrics_data import _AFTER, _raw, epoch
from commands.states import CANCELLED
from storage.models import AuditEvent, Deployment, Incident, Release


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


def _later(column, seconds: float, dialect: str):
    """A raw timestamp at least `seconds` (+2 s) after column: an upper bound for an index range only."""
    if dialect == "sqlite":  # datetime() drops the fraction: 'YYYY-MM-DD HH:MM:SS' sorts before any '…SS.ffffff'
        return func.datetime(column, f"+{int(seconds) + 2} seconds")
    return column + literal(timedelta(seconds=int(seconds) + 2), Interval())


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


def count(session: Session, start: datetime, end: datetime, environment: str, service: str | None,
          success_window: float, day_starts: list[float], tz: str) -> Counts:
    dialect = session.get_bind().dialect.name
    d, r, a, i = (m.__table__ for m in (Deployment, Release, AuditEvent, Incident))
    e2 = Release.__table__.alias("em")
    E = lambda column: epoch(column, dialect)  # noqa: E731
    S, F, RB, RS, SE = (E(d.c.started_at), E(d.c.finished_at), E(d.c.rollback_decided_at), E(d.c.restored_at),
                        E(d.c.stabilisation_ends_at))
    where = [d.c.started_at >= start, d.c.started_at < end, d.c.outcome.is_not(None), r.c.environment == environment]
    if service:
        where.append(r.c.service == service)
    in_period = lambda t: and_(t.c.started_at >= start, t.c.started_at < end)  # noqa: E731
    # the period's linked incidents and last approvals, one row per release, hash-joined: a look-up per
    # deployment (100k correlated subqueries) costs PostgreSQL more than the rest of the query
    di, da = Deployment.__table__.alias("di"), Deployment.__table__.alias("da")
    inc = (select(i.c.caused_by_release_id.label("rid"), func.min(E(i.c.opened_at)).label("first"),
                  func.count().label("n"), func.count(i.c.resolved_at).label("resolved"),
                  func.max(E(i.c.resolved_at)).label("last"))
           .select_from(i.join(di, di.c.release_id == i.c.caused_by_release_id)).where(in_period(di))
           .group_by(i.c.caused_by_release_id).subquery("inc"))
    last_approval = (select(a.c.release_id.label("rid"), func.max(a.c.at).label("at"))
                     .select_from(a.join(da, da.c.release_id == a.c.release_id))
                     .where(a.c.action == "approved", a.c.at <= da.c.started_at, in_period(da))
                     .group_by(a.c.release_id).subquery("approval"))
    joined = d.join(r, r.c.id == d.c.release_id).outerjoin(inc, inc.c.rid == d.c.release_id)

    def emergency(after_col, after, until_col, until):
        """An emergency release of the service requested in (after, until], other than the row's own, among
        those commands.metrics_data.load reads (requested from the period's start to 8 days after its end)."""
        return exists(select(literal(1)).select_from(e2).where(
            e2.c.service == r.c.service, e2.c.start_at > after_col, e2.c.start_at <= until_col,
            e2.c.effective_type == "emergency", e2.c.state != CANCELLED, e2.c.environment == environment,
            e2.c.start_at >= start, e2.c.start_at < end + _AFTER, e2.c.id != d.c.release_id,
            E(e2.c.start_at) > after, E(e2.c.start_at) <= until))

    window_end = func.coalesce(SE, F, S)
    early = and_(inc.c.first.is_not(None), inc.c.first <= window_end)  # some incident opened by the window's end
    success_outcome = d.c.outcome == "success"
    fix = and_(success_outcome, d.c.finished_at.is_not(None),
               emergency(d.c.finished_at, F, _later(d.c.finished_at, success_window, dialect), F + success_window))
    followed = and_(success_outcome, d.c.finished_at.is_not(None), d.c.stabilisation_ends_at.is_not(None),
                    emergency(d.c.finished_at, F, _later(d.c.stabilisation_ends_at, 0, dialect), SE))
    rb = d.c.rollback_decided_at.is_not(None)
    stabilised = d.c.stabilisation_ends_at.is_not(None)
    failure = or_(d.c.outcome.in_(("rolled_back", "failed")), rb, early, followed)
    rb_in_window = and_(rb, or_(~stabilised, RB <= SE))
    breach = and_(stabilised, or_(and_(rb, RB <= SE), early))
    flag = lambda cond: case((cond, 1), else_=0)  # noqa: E731
    # per row in a subquery, summed outside: PostgreSQL groups by the day's column, not by a copy of its CASE
    conditions = (success_outcome, failure, and_(success_outcome, ~rb, ~fix), rb_in_window, stabilised, breach,
                  d.c.package_complete.is_not(None), d.c.package_complete.is_(True))
    day = _local_day(S, day_starts, end.timestamp(), tz, dialect)
    flags = (select(day.label("day"),
                    *(flag(c).label(f"f{k}") for k, c in enumerate(conditions)))
             .select_from(joined).where(*where).subquery())
    day, *rest = flags.c  # noqa: F811
    per_day = select(day, func.count(), *(func.sum(c) for c in rest)).group_by(day)
    days: dict[int, Day] = {}
    for index, *sums in _raw(session, per_day):  # bisect's clamp: a start before the first day is in it
        got = days.setdefault(min(max(0, int(index)), len(day_starts) - 1), Day())
        for name, v in zip(vars(got), sums):
            setattr(got, name, getattr(got, name) + int(v or 0))

    approved = E(last_approval.c.at)
    RQ = E(r.c.created_at)
    has_incident, unresolved, last_resolved = inc.c.n.is_not(None), inc.c.n > inc.c.resolved, inc.c.last
    # a decided rollback is a change failure: `failure` (two EXISTS) is asked only of a deployment restored
    # by its incidents
    restore = case((and_(rb, d.c.restored_at.is_not(None)), RS - RB),
                   (and_(has_incident, ~unresolved, d.c.finished_at.is_not(None), failure), last_resolved - F))
    done = and_(success_outcome, d.c.finished_at.is_not(None))
    kind = case((r.c.effective_type == "infrastructure", 1), (r.c.effective_type == "emergency", 2), else_=0)
    columns = (restore, case((and_(done, d.c.commit_time.is_not(None)), F - E(d.c.commit_time))),
               case((done, F - RQ)), case((done, F - S)), case((and_(d.c.restored_at.is_not(None), rb), RS - RB)),
               approved - RQ, kind)
    samples: dict[str, list[float]] = {k: [] for k in _MEDIANS}
    restores, leads, requests, deploys, infra, executions, standard, emergency_ = (samples[k] for k in _MEDIANS)
    with_approval = joined.outerjoin(last_approval, last_approval.c.rid == d.c.release_id)
    for ttr, lead, request, deploy, execution, approval, k in _raw(session, select(*columns)
                                                                   .select_from(with_approval).where(*where)):
        if ttr is not None:
            restores.append(ttr)
        if lead is not None:
            leads.append(lead)
        if request is not None:
            requests.append(request)
        if deploy is not None:
            (infra if k == 1 else deploys).append(deploy)
        if execution is not None:
            executions.append(execution)
        if approval is not None:
            (emergency_ if k == 2 else standard).append(approval)

    marked = (select(d.c.release_id, rb, r.c.effective_type == "emergency").select_from(joined)
              .where(*where, or_(rb, r.c.effective_type == "emergency")).order_by(d.c.started_at, d.c.release_id))
    refs = _raw(session, marked)
    return Counts(days, samples, tuple(f"REL-{x[0]}" for x in refs if x[1]),
                  tuple(f"REL-{x[0]}" for x in refs if x[2]))
