"""The policy's [nonconformance] section (QMS 6.2: a documented corrective action within 5 business days;
repeats trigger a formal corrective action), as immutable data checked at start-up like the rest of
commands.policy."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Mapping

# every key of the section, with its default; policy.toml documents each
NONCONFORMANCE_DEFAULTS: dict[str, Any] = {
    "action_due_business_days": 5,  # QMS 6.2, counted Mon-Fri in the release's zone (UTC without a release)
    "repeat_days": 90,  # a second of the same kind for the same service within this many days is a repeat
    "remind_before": "1d",  # the owner is reminded this long before the due date, and again at it
    "escalate_after": "1d",  # still not actioned this long after the due date: escalated once to the RMs
}


@dataclass(frozen=True)
class NonconformancePolicy:
    action_due_business_days: int = 5
    repeat_days: int = 90
    remind_before: timedelta = timedelta(days=1)
    escalate_after: timedelta = timedelta(days=1)


def nonconformance_policy(spec: Mapping[str, Any], source: str) -> NonconformancePolicy:
    from commands.policy import PolicyError, _duration  # the one shape of a policy mistake
    values: dict[str, Any] = {}
    for k, low, high in (("action_due_business_days", 1, 60), ("repeat_days", 1, 730)):
        n = spec.get(k)
        if not isinstance(n, int) or isinstance(n, bool) or not low <= n <= high:
            raise PolicyError(source, f"nonconformance.{k}", f"must be a whole number from {low} to {high}")
        values[k] = n
    for k in ("remind_before", "escalate_after"):
        values[k] = _duration(spec, "nonconformance", k, source)
        if values[k] > timedelta(days=30):
            raise PolicyError(source, f"nonconformance.{k}", "must be from 1m to 30d")
    return NonconformancePolicy(**values)
