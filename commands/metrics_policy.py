"""The policy's [metrics] section (QMS 4.2 KPI targets, 6.1 weekly and monthly reviews), as immutable data
checked at start-up like the rest of commands.policy."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time, timedelta
from types import MappingProxyType
from typing import Any, Mapping

# every key of the section, with its default; policy.toml documents each
METRICS_DEFAULTS: dict[str, Any] = {
    "min_sample": 5,  # below this n a rate or median says "too few" instead of a number
    "environment": "production",  # the environment whose deployments are measured
    "success_window": "1h",  # QMS 4.2: a success needs no rollback or emergency fix within this
    "review_day": "Mon",  # QMS 6.1 weekly review: day, time and zone; the monthly report goes on the
    "review_time": "09:00",  # first working day (Mon-Fri) of the month at the same time
    "review_tz": "UTC",
    "targets": {
        "deployments_per_week": 1.0,  # "at least weekly for all teams"
        "success_rate": 98.0,  # percent, at least
        "change_failure_rate": 10.0,  # percent, below (high performing; elite is 5)
        "time_to_restore": "24h",  # below (high performing; elite is 1h)
        "lead_time": "24h",  # commit to production, below (high performing; elite is 1h)
        "rollback_rate": 10.0,  # percent, below: "correlated with CFR limits"
        "time_to_deploy": "30m",  # application releases
        "time_to_deploy_infrastructure": "60m",
        "rollback_execution": "15m",
        "approval_standard": "4h",
        "approval_emergency": "30m",
        "stabilisation_breach_rate": 5.0,  # percent, below
        "documentation_completeness": 100.0,  # percent: the package check is mandatory
    },
}
_PERCENTS = ("success_rate", "change_failure_rate", "rollback_rate", "stabilisation_breach_rate",
             "documentation_completeness")
_DURATIONS = ("time_to_restore", "lead_time", "time_to_deploy", "time_to_deploy_infrastructure",
              "rollback_execution", "approval_standard", "approval_emergency")


@dataclass(frozen=True)
class MetricsPolicy:
    min_sample: int = 5
    environment: str = "production"
    success_window: timedelta = timedelta(hours=1)
    review_day: int = 0  # Monday
    review_time: time = time(9)
    review_tz: str = "UTC"
    # percent targets as numbers, duration targets as timedeltas, deployments_per_week as a number
    targets: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType(_default_targets()))


def _default_targets() -> dict[str, Any]:
    from calendars.timeparse import parse_duration
    return {k: parse_duration(v) if isinstance(v, str) else float(v) for k, v in METRICS_DEFAULTS["targets"].items()}


def metrics_policy(spec: Mapping[str, Any], environments: tuple[str, ...], default_environment: str,
                   source: str) -> MetricsPolicy:
    from calendars.timeparse import TimeInputError, zone
    from calendars.windows import parse_clock, parse_days
    from commands.policy import PolicyError, _duration
    n = spec.get("min_sample")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 1000:
        raise PolicyError(source, "metrics.min_sample", "must be a whole number from 1 to 1000")
    env = spec.get("environment")
    if env == METRICS_DEFAULTS["environment"] and env not in environments:
        env = default_environment  # a policy without "production": its own default environment is measured
    if env not in environments:
        raise PolicyError(source, "metrics.environment", f"must be one of release.environments ({', '.join(environments)})")
    window = _duration(spec, "metrics", "success_window", source)
    if not timedelta(minutes=5) <= window <= timedelta(days=7):
        raise PolicyError(source, "metrics.success_window", "must be from 5m to 7d")
    try:
        days = parse_days(str(spec.get("review_day")))
    except TimeInputError:
        days = frozenset()
    if len(days) != 1:
        raise PolicyError(source, "metrics.review_day", 'must be one day, like "Mon"')
    try:
        at = parse_clock(str(spec.get("review_time")))
    except TimeInputError as exc:
        raise PolicyError(source, "metrics.review_time", str(exc)) from None
    tz = spec.get("review_tz")
    try:
        zone(str(tz))
    except TimeInputError as exc:
        raise PolicyError(source, "metrics.review_tz", str(exc)) from None
    targets: dict[str, Any] = {}
    given = spec.get("targets") or {}
    for key in METRICS_DEFAULTS["targets"]:
        if key in _DURATIONS:
            targets[key] = _duration(given, "metrics.targets", key, source)
            if targets[key] <= timedelta(0):
                raise PolicyError(source, f"metrics.targets.{key}", "must be longer than zero")
            continue
        value = given.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (
                key in _PERCENTS and value > 100):
            raise PolicyError(source, f"metrics.targets.{key}",
                              "must be a percentage from 0 to 100" if key in _PERCENTS else "must be a number, 0 or more")
        targets[key] = float(value)
    return MetricsPolicy(min_sample=n, environment=env, success_window=window, review_day=next(iter(days)),
                         review_time=at, review_tz=str(tz), targets=MappingProxyType(targets))
