"""Each KPI's definition (README "Metrics"), pinned on a hand-built history: distinct deployments, the
stabilisation window, the 1-hour success rule, medians, the sample size and fourkeys' DORA bucket."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from commands.metrics import compute, dora_bucket
from commands.policy import Policy
from conftest import ROLES
from metrics_history import deployed, emergency_requested, incident

UTC = timezone.utc
NOV, DEC = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)


def day(d: int, h: int = 10, m: int = 0) -> datetime:
    return datetime(2026, 11, d, h, m, tzinfo=UTC)


def report(db, policy, **kw):
    return compute(db, NOV, DEC, policy=policy, **kw)


def five_successes(db, **kw) -> list[int]:
    return [deployed(db, started=day(2 + i), **kw) for i in range(5)]


def test_one_deployment_with_several_linked_incidents_counts_once(db, policy):
    ids = five_successes(db)
    for k in range(3):  # three incidents blamed on one deployment, all in its 2-hour stabilisation
        incident(db, f"INC-{k}", release_id=ids[0], opened=day(2, 10, 30 + k), resolved=day(2, 12, 10 * k))
    r = report(db, policy, explain=True)
    cfr = r.figure("change_failure_rate")
    assert (cfr.value, cfr.n, cfr.text) == (20.0, 5, "20% (1 of 5)")
    assert dict(cfr.releases)[f"REL-{ids[0]}"] == "incident INC-0, INC-1, INC-2"
    # restored when the last of its incidents was resolved: 12:20 - 10:20 (finished) = 2 h, one sample
    ttr = r.figure("time_to_restore")
    assert ttr.n == 1 and ttr.text == "too few (n=1)"
    assert r.figure("stabilisation_breach_rate").text == "20% (1 of 5)"
    assert r.figure("success_rate").text == "100% (5 of 5)"  # an incident is not a rollback or an emergency fix


def test_a_rollback_outside_the_stabilisation_window_is_a_change_failure_but_not_a_window_rollback(db, policy):
    five_successes(db)
    inside = deployed(db, started=day(10), rollback_after=timedelta(minutes=30), restored_after=timedelta(minutes=12))
    outside = deployed(db, started=day(11), rollback_after=timedelta(hours=3), restored_after=timedelta(minutes=8))
    r = report(db, policy, explain=True)
    assert r.figure("change_failure_rate").text == "28.6% (2 of 7)"
    rb = r.figure("rollback_rate")
    assert rb.text == "14.3% (1 of 7)"
    assert dict(rb.releases)[f"REL-{outside}"] == "rollback after the window"
    assert dict(rb.releases)[f"REL-{inside}"] == "rolled back in the window"
    assert r.figure("stabilisation_breach_rate").text == "14.3% (1 of 7)"
    assert set(r.rollbacks) == {f"REL-{inside}", f"REL-{outside}"}
    ex = r.figure("rollback_execution")
    assert ex.n == 2 and ex.text == "too few (n=2)"


def test_too_small_a_sample_says_so_instead_of_a_percentage(db, policy):
    for i in range(3):
        deployed(db, started=day(2 + i), outcome="failed" if i == 0 else "success")
    f = report(db, policy).figure("change_failure_rate")
    assert (f.value, f.n, f.enough, f.met, f.text) == (None, 3, False, None, "too few (n=3)")
    empty = compute(db, DEC, DEC + timedelta(days=7), policy=policy).figure("success_rate")
    assert (empty.value, empty.n, empty.text) == (None, 0, "none (n=0)")
    lower = Policy.from_mapping({"roles": ROLES, "metrics": {"min_sample": 3}})
    assert report(db, lower).figure("change_failure_rate").text == "33.3% (1 of 3)"


def test_success_needs_no_emergency_fix_of_the_service_within_an_hour(db, policy):
    ids = five_successes(db)
    emergency_requested(db, at=day(2, 11, 0))  # 40 min after ids[0] finished at 10:20
    emergency_requested(db, at=day(3, 12, 0))  # 1 h 40 min after ids[1]: outside the hour, inside its window
    emergency_requested(db, service="search", at=day(4, 10, 30))  # another service's emergency
    r = report(db, policy, explain=True)
    s = r.figure("success_rate")
    assert s.text == "80% (4 of 5)" and s.met is False and s.target == "≥ 98%"
    assert dict(s.releases)[f"REL-{ids[0]}"].startswith("emergency REL-")
    # both emergencies came inside their deployment's 2 h stabilisation: change failures
    assert r.figure("change_failure_rate").text == "40% (2 of 5)"


def test_an_incident_linked_after_the_window_or_to_another_environment_does_not_count(db, policy):
    ids = five_successes(db)
    incident(db, "INC-late", release_id=ids[1], opened=day(3, 15))  # window ended at 12:20
    staging = deployed(db, started=day(4, 11), environment="staging")
    incident(db, "INC-stg", release_id=staging, opened=day(4, 11, 30))
    r = report(db, policy)
    assert r.figure("change_failure_rate").text == "0% (0 of 5)"
    assert r.figure("change_failure_rate").met is True


def test_medians_of_deploy_lead_approval_and_restore_times(db, policy):
    for i, minutes in enumerate((10, 20, 30, 40, 50)):
        deployed(db, started=day(2 + i), minutes=minutes, commit_before=timedelta(hours=i + 1),
                 requested=day(1, 8), approved=day(1, 8 + i), package_complete=i != 0)
    for i in range(5):
        deployed(db, type_="emergency", started=day(10 + i), requested=day(10 + i, 9),
                 approved=day(10 + i, 9, 10 + 5 * i))
        deployed(db, type_="infrastructure", started=day(20 + i), minutes=70)
    r = report(db, policy)
    assert r.figure("time_to_deploy").text == "20 min median (n=10)"  # the five minors and five emergencies
    assert r.figure("time_to_deploy_infrastructure").text == "70 min median (n=5)"
    assert r.figure("time_to_deploy_infrastructure").met is False  # target 60 min
    lead = r.figure("lead_time")  # finished - commit: 3 h + 30 min in the middle
    assert lead.n == 5 and lead.value == 210 and lead.met is True
    assert r.figure("approval_emergency").text == "20 min median (n=5)" and r.figure("approval_emergency").met
    assert r.figure("approval_standard").text == "2 h median (n=10)"  # minors 0-4 h, infrastructure 2 h each
    assert r.figure("documentation_completeness").text == "80% (4 of 5)"  # not recorded is not counted
    assert r.figure("deployment_frequency").n == 15


def test_the_figures_of_one_service(db, policy):
    five_successes(db)
    deployed(db, service="search", started=day(12), outcome="failed")
    assert report(db, policy, service="search").figure("change_failure_rate").n == 1
    assert report(db, policy).figure("change_failure_rate").n == 6


@pytest.mark.parametrize("days, bucket", [
    ((0, 1, 2), "daily"),  # three days a week, every week
    ((0,), "weekly"),
    (None, "monthly"),  # one week a month
    ((), "yearly"),
])
def test_the_dora_bucket_follows_fourkeys_median_rule(days, bucket):
    start, end = datetime(2026, 9, 7, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)  # twelve whole weeks
    if days is None:
        times = [datetime(2026, m, 10, tzinfo=UTC).timestamp() for m in (9, 10, 11)]
    else:
        times = [(start + timedelta(weeks=w, days=d, hours=10)).timestamp() for w in range(12) for d in days]
    assert dora_bucket(times, start, end, "UTC") == bucket


def test_the_frequency_is_per_week_of_the_period_and_by_week_for_the_chart(db, policy):
    for i in range(8):
        deployed(db, started=day(2 + i), outcome="failed" if i == 3 else "success")
    r = compute(db, day(2, 0), day(16, 0), policy=policy)  # two weeks
    f = r.figure("deployment_frequency")
    assert (f.value, f.n, f.met) == (3.5, 7, True) and f.text == "3.5 per week, DORA daily (n=7)"
    assert [(w.start.day, w.deployments, w.successes, w.failures) for w in r.weeks] == [(2, 7, 6, 1), (9, 1, 1, 0)]
