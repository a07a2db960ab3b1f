"""The policy's [emergency] section (QMS 4.6 emergency track; 4.2 approval cycle target; 6.1 quarterly
engineering review), as immutable data checked at start-up like the rest of commands.policy."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Mapping

# every key of the section, with its default; policy.toml documents each
EMERGENCY_DEFAULTS: dict[str, Any] = {
    "window": "4h",  # an emergency's window opens when it is requested and lasts this long
    "bridge": "channel",  # "channel" (conversations.create) or "thread" (in the release channel)
    "channel_name": "rel-{n}-{service}-emergency",
    "assessment_target": "15m",
    "approval_target": "30m",
    "min_monitoring": "30m",
    "extended_monitoring": "24h",
    "change_request_within": "4h",
    "planning_within": "24h",
    "test_review_within": "24h",
    "docs_within": "24h",
    "retrospective_business_days": 5,
    "frequency_limit": 2,
    "frequency_days": 30,
    # "": the end of the current calendar quarter, when the root-cause review is owed (QMS 6.1)
    "quarterly_review": "",
}


@dataclass(frozen=True)
class EmergencyPolicy:
    """The emergency track (QMS 4.6): its window, bridge, targets and deferred-step deadlines."""

    window: timedelta = timedelta(hours=4)
    bridge: str = "channel"
    channel_name: str = "rel-{n}-{service}-emergency"
    assessment_target: timedelta = timedelta(minutes=15)
    approval_target: timedelta = timedelta(minutes=30)
    min_monitoring: timedelta = timedelta(minutes=30)
    extended_monitoring: timedelta = timedelta(hours=24)
    change_request_within: timedelta = timedelta(hours=4)
    planning_within: timedelta = timedelta(hours=24)
    test_review_within: timedelta = timedelta(hours=24)
    docs_within: timedelta = timedelta(hours=24)
    retrospective_business_days: int = 5
    frequency_limit: int = 2
    frequency_days: int = 30
    # The next quarterly engineering review (QMS 6.1); None: the end of the calendar quarter (commands.frequency)
    quarterly_review: date | None = None

    BRIDGES = ("channel", "thread")
    DURATIONS = ("window", "assessment_target", "approval_target", "min_monitoring", "extended_monitoring",
                 "change_request_within", "planning_within", "test_review_within", "docs_within")


def emergency_policy(spec: Mapping[str, Any], source: str) -> EmergencyPolicy:
    from commands.policy import PolicyError, _duration  # the one shape of a policy mistake
    values: dict[str, Any] = {d: _duration(spec, "emergency", d, source) for d in EmergencyPolicy.DURATIONS}
    if not timedelta(minutes=15) <= values["window"] <= timedelta(hours=24):
        raise PolicyError(source, "emergency.window", "must be from 15m to 24h")
    for d in EmergencyPolicy.DURATIONS:
        if values[d] <= timedelta(0):
            raise PolicyError(source, f"emergency.{d}", "must be longer than zero")
    bridge = spec.get("bridge")
    if bridge not in EmergencyPolicy.BRIDGES:
        raise PolicyError(source, "emergency.bridge", 'must be "channel" or "thread"')
    pattern = spec.get("channel_name")
    try:
        sample = pattern.format(n=1, service="svc") if isinstance(pattern, str) else None
    except (KeyError, IndexError, ValueError):
        sample = None
    if not sample or "{n}" not in pattern:
        raise PolicyError(source, "emergency.channel_name",
                          'must be a name pattern with {n} (the release number) and optionally {service}, '
                          'e.g. "rel-{n}-{service}-emergency"')
    values["bridge"], values["channel_name"] = bridge, pattern
    for k, low, high in (("retrospective_business_days", 1, 60), ("frequency_limit", 1, 100),
                         ("frequency_days", 1, 366)):
        n = spec.get(k)
        if not isinstance(n, int) or isinstance(n, bool) or not low <= n <= high:
            raise PolicyError(source, f"emergency.{k}", f"must be a whole number from {low} to {high}")
        values[k] = n
    review = spec.get("quarterly_review")
    if review in ("", None):
        values["quarterly_review"] = None  # the end of each calendar quarter
    elif isinstance(review, date) and not hasattr(review, "hour"):
        values["quarterly_review"] = review  # TOML's bare date
    else:
        try:
            values["quarterly_review"] = date.fromisoformat(str(review)) if isinstance(review, str) else None
        except ValueError:
            values["quarterly_review"] = None
        if values["quarterly_review"] is None:
            raise PolicyError(source, "emergency.quarterly_review",
                              'must be a date like "2027-01-15", or "" for the end of each calendar quarter')
    return EmergencyPolicy(**values)
