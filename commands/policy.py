"""Release policy as immutable data.

The defaults are QMS-DEV-PRO-004 §3.7 (types, lead times, approvers), §3.6
(security for auth/crypto/data/network) and §4.4 step 5 (stabilisation). An
operator's policy.toml overrides only the keys it sets; a mistake names the
file, the key and what is wrong, so start-up can refuse to run on a policy
nobody intended.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from datetime import time, timedelta
from functools import cached_property
from types import MappingProxyType
from typing import Any, Mapping

from calendars.timeparse import TimeInputError, parse_duration, zone
from calendars.windows import DeploymentWindows, parse_clock, parse_days
from commands.auditor_policy import check_read_only
from commands.audit_policy import AUDIT_DEFAULTS, AuditPolicy, audit_policy
from commands.emergency_policy import EMERGENCY_DEFAULTS, EmergencyPolicy, emergency_policy
from commands.nonconformance_policy import NONCONFORMANCE_DEFAULTS, NonconformancePolicy, nonconformance_policy
from commands.github_policy import GITHUB_DEFAULTS, GithubPolicy, github_policy
from commands.metrics_policy import METRICS_DEFAULTS, MetricsPolicy, metrics_policy
from commands.validation_policy import VALIDATION_DEFAULTS, ValidationPolicy, validation_policy

RELEASE_TYPES = ("major", "minor", "patch", "security", "emergency", "infrastructure")
ROLES = (
    "release_manager",
    "engineering_lead",
    "qa_lead",
    "security",
    "platform_lead",
    "operations",
    "cab",
    "executive",
    "product_owner",  # signs off UAT (QMS 4.3): a person's act, never a pipeline's
    "auditor",  # reads the record and the evidence packet, decides nothing
)
ENVIRONMENTS_DEFAULT = ("production", "staging", "qa", "development")

# Types are not ranked: the type a requester asks for adds its controls to those the
# answers derive (commands.classification.controls), so no type is "stricter" than another.
DEFAULTS: dict[str, Any] = {
    "types": {
        "major": {"lead_time": "14d", "stabilisation": "24h", "approval_sla": "4h",
                  "approvers": {"cab": 2, "release_manager": 1, "security": 1}},
        "minor": {"lead_time": "7d", "stabilisation": "2h", "approval_sla": "4h",
                  "approvers": {"release_manager": 1, "qa_lead": 1}},
        "patch": {"lead_time": "2d", "stabilisation": "30m", "approval_sla": "4h",
                  "approvers": {"engineering_lead": 1, "qa_lead": 1}},
        "security": {"lead_time": "4h", "stabilisation": "30m", "approval_sla": "4h",
                     "approvers": {"security": 1, "release_manager": 1}},
        # §3.7: "Emergency CAB, or Release Manager + Engineering Lead if the CAB is unavailable":
        # alternative approver sets, any one complete set approves. Lead time is not checked for an
        # emergency opened now (§4.6 bypasses planning); see commands.planning.check.
        "emergency": {"lead_time": "1h", "stabilisation": "30m", "approval_sla": "30m",
                      "approvers": [{"cab": 2}, {"release_manager": 1, "engineering_lead": 1}]},
        "infrastructure": {"lead_time": "3d", "stabilisation": "24h", "approval_sla": "4h",
                           "approvers": {"platform_lead": 1}},
    },
    "roles": {role: [] for role in ROLES},
    "release": {"default_environment": "production", "environments": list(ENVIRONMENTS_DEFAULT)},
    # QMS §4.4 step 5 (sign-offs), §4.6 (24-hour follow-up), §6.1 (retrospectives).
    "deployment": {
        "deployers": ["operations", "platform_lead"],  # §3.4: the DevOps / Platform Engineer executes
        "signoff_roles": ["qa_lead", "operations"],
        "closing_role": "release_manager",  # §4.4 step 6: signs off the release record, last
        "stuck_grace": "30m",  # a deployment still running this long after its window: remind, then escalate
        "followup_after": "24h",
        "followup_escalate_after": "24h",
        "retrospective_types": ["major", "emergency"],  # §6.1; §4.6: emergencies within 5 business days
        "retrospective_business_days": 5,
        "retrospective_remind_before": "24h",
        "rollback_slo": "15m",  # §4.5: previous version confirmed stable within this of the decision (§6.2)
        "production_environments": ["production"],  # where §6.2's "production deployment" rules apply
    },
    # QMS §4.4 step 1 and §5.1: blackouts and conflicting releases are checked at planning time.
    "calendar": {
        "blackout_warning_lead": "24h",
        "max_concurrent": {"production": 1},  # environments not named here: no limit
        "windows": {},  # e.g. production = { days = "Mon-Thu", start = "09:00", end = "16:00", tz = "Europe/London" }
        # Where free slots are suggested for an environment without `windows`: in each release's own zone.
        "default_hours": {"days": "Mon-Fri", "start": "09:00", "end": "17:00"},
        "feed_refresh": "1h",  # how often calendar clients are asked to fetch the ICS feed again
        "feed_keep_cancelled": "30d",  # a removed blackout stays in the feed as CANCELLED this long, then goes
        "feed_past": "90d",  # the feed's horizon: what ended longer ago than this is left out
        "feed_ahead": "365d",  # and what starts later than this ahead
    },
    # How long a message Slack keeps refusing with a retryable error (5xx, 429, timeouts) is retried
    # before it is dead-lettered and stops holding up the release's later messages.
    "delivery": {"dead_letter_after": "24h"},
    "emergency": dict(EMERGENCY_DEFAULTS),  # commands/emergency_policy.py
    "nonconformance": dict(NONCONFORMANCE_DEFAULTS),  # commands/nonconformance_policy.py
    "github": dict(GITHUB_DEFAULTS),  # commands/github_policy.py
    "metrics": copy.deepcopy(METRICS_DEFAULTS),  # commands/metrics_policy.py
    "validation": dict(VALIDATION_DEFAULTS),  # commands/validation_policy.py
    "audit": dict(AUDIT_DEFAULTS),  # commands/audit_policy.py
}
# tables whose keys are names the operator chooses (people's roles, environments)
# (and default_hours, so that a key it does not take, such as tz, is refused with its whole right form)
_OPEN_TABLES = ("roles.", "calendar.max_concurrent.", "calendar.windows.", "calendar.default_hours.", "github.repos.",
                "github.users.")

_TYPE_KEYS = {"lead_time", "stabilisation", "approvers", "approval_sla"}
_SLACK_ID = re.compile(r"^[UWS][A-Z0-9]{2,}$")


class PolicyError(ValueError):
    def __init__(self, source: str, key: str, problem: str):
        super().__init__(f"{source}: {key}: {problem}")
        self.source, self.key, self.problem = source, key, problem


@dataclass(frozen=True)
class TypePolicy:
    name: str
    lead_time: timedelta
    stabilisation: timedelta
    approvers: Mapping[str, int]  # every role any set names, at its largest count (for listing roles)
    approval_sla: timedelta = timedelta(hours=4)
    # Alternative approver sets (QMS 3.7 emergency: CAB, or RM + EL): any one complete set approves.
    # The single-table form of policy.toml is one set.
    approver_sets: tuple[Mapping[str, int], ...] = ()

    def __post_init__(self):
        if not self.approver_sets:
            object.__setattr__(self, "approver_sets", (self.approvers,))


@dataclass(frozen=True)
class DeploymentPolicy:
    signoff_roles: tuple[str, ...]
    followup_after: timedelta
    followup_escalate_after: timedelta
    retrospective_types: tuple[str, ...]
    retrospective_business_days: int
    retrospective_remind_before: timedelta
    closing_role: str = "release_manager"
    stuck_grace: timedelta = timedelta(minutes=30)
    deployers: tuple[str, ...] = ("operations", "platform_lead")  # the roles that may start a deployment
    rollback_slo: timedelta = timedelta(minutes=15)
    production_environments: tuple[str, ...] = ("production",)


@dataclass(frozen=True)
class CalendarPolicy:
    blackout_warning_lead: timedelta
    max_concurrent: Mapping[str, int]
    windows: Mapping[str, DeploymentWindows]
    feed_refresh: timedelta = timedelta(hours=1)
    feed_keep_cancelled: timedelta = timedelta(days=30)
    feed_past: timedelta = timedelta(days=90)
    feed_ahead: timedelta = timedelta(days=365)
    # Working hours (its tz is a placeholder): where slots are suggested when an environment has no windows.
    default_hours: DeploymentWindows = DeploymentWindows(frozenset(range(5)), time(9), time(17), "UTC")

    def slot_windows(self, environment: str, tz: str) -> DeploymentWindows:
        """Where free slots for a release in `tz` may start and end: the environment's deployment windows
        if policy sets them, else the default working hours in the release's own zone."""
        windows = self.windows.get(environment)
        return windows if windows is not None else replace(self.default_hours, tz=tz)

    # A client told to come back sooner than every 15 minutes only adds load (Google polls every few
    # hours whatever it is told); later than a week, a change is seen too late to matter.
    FEED_REFRESH_BOUNDS = (timedelta(minutes=15), timedelta(days=7))
    # A client that was offline must still see the CANCELLED before the event goes; a year of removed
    # blackouts is enough for anyone.
    FEED_KEEP_CANCELLED_BOUNDS = (timedelta(days=1), timedelta(days=365))

    # QMS §5.1: overriding a blackout requires VP-level approval; lead time,
    # deployment windows and conflicts are the release manager's call.
    OVERRIDE_ROLE = {"lead_time": "release_manager", "window": "release_manager", "conflict": "release_manager",
                     "blackout": "executive"}


@dataclass(frozen=True)
class DeliveryPolicy:
    dead_letter_after: timedelta = timedelta(hours=24)

    # Shorter would give up within a few backoff steps (they grow to 15 minutes); longer
    # would hold a release's announcements back for weeks.
    BOUNDS = (timedelta(minutes=15), timedelta(days=30))


@dataclass(frozen=True)
class Policy:
    types: Mapping[str, TypePolicy]
    roles: Mapping[str, tuple[str, ...]]  # role -> Slack user ids (U/W) and user group ids (S)
    default_environment: str
    environments: tuple[str, ...]
    deployment: DeploymentPolicy = None  # type: ignore[assignment]  (always set by from_mapping)
    calendar: CalendarPolicy = None  # type: ignore[assignment]  (always set by from_mapping)
    delivery: DeliveryPolicy = None  # type: ignore[assignment]  (always set by from_mapping)
    emergency: EmergencyPolicy = field(default_factory=EmergencyPolicy)
    nonconformance: NonconformancePolicy = field(default_factory=NonconformancePolicy)
    github: GithubPolicy = field(default_factory=GithubPolicy)
    metrics: MetricsPolicy = field(default_factory=MetricsPolicy)
    validation: ValidationPolicy = field(default_factory=ValidationPolicy)
    audit: AuditPolicy = field(default_factory=AuditPolicy)
    source: str = "built-in defaults"
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def type(self, name: str) -> TypePolicy:
        return self.types[name]

    @cached_property
    def digest(self) -> str:
        """sha256 of the effective policy (defaults merged with the file), recorded with each decision
        so the evidence packet can say which version of the rules was in force."""
        canonical = json.dumps(self.raw, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def role_members(self, role: str) -> tuple[str, ...]:
        return self.roles.get(role, ())

    @classmethod
    def default(cls) -> "Policy":
        return cls.from_mapping({})

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "built-in defaults") -> "Policy":
        merged = _merge(DEFAULTS, data, source)
        types = {name: _type_policy(name, spec, source) for name, spec in merged["types"].items()}
        roles = {}
        for role, members in merged["roles"].items():
            if role not in ROLES:
                raise PolicyError(source, f"roles.{role}", f"unknown role; roles are {', '.join(ROLES)}")
            if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                raise PolicyError(source, f"roles.{role}", 'must be a list of Slack ids, e.g. ["U012ABC", "S0RELMGRS"]')
            for m in members:
                if not _SLACK_ID.match(m):
                    raise PolicyError(source, f"roles.{role}",
                                      f"'{m}' is not a Slack user id (U…/W…) or user group id (S…)")
            roles[role] = tuple(members)
        rel = merged["release"]
        envs = rel.get("environments")
        if not isinstance(envs, list) or not envs or not all(isinstance(e, str) and e for e in envs):
            raise PolicyError(source, "release.environments", "must be a non-empty list of names")
        default_env = rel.get("default_environment")
        if default_env not in envs:
            raise PolicyError(source, "release.default_environment", f"'{default_env}' is not in release.environments")
        policy = cls(types=MappingProxyType(types), roles=MappingProxyType(roles),
                     default_environment=default_env, environments=tuple(envs),
                     deployment=_deployment_policy(merged["deployment"], source),
                     calendar=_calendar_policy(merged["calendar"], tuple(envs), source,
                                               set((data.get("calendar") or {}).get("max_concurrent") or {})),
                     delivery=_delivery_policy(merged["delivery"], source),
                     emergency=emergency_policy(merged["emergency"], source),
                     audit=audit_policy(merged["audit"], source),
                     nonconformance=nonconformance_policy(merged["nonconformance"], source),
                     github=github_policy(merged["github"], tuple(envs), source),
                     metrics=metrics_policy(merged["metrics"], tuple(envs), default_env, source),
                     validation=validation_policy(merged["validation"], source, tuple(envs), ROLES,
                                                  data.get("validation") or {}),
                     source=source,
                     raw=MappingProxyType(dict(merged)))
        check_read_only(policy)  # commands/auditor_policy.py: the auditor decides nothing
        return policy


def _merge(defaults: Mapping[str, Any], data: Mapping[str, Any], source: str, prefix: str = "") -> dict:
    out = copy.deepcopy(dict(defaults))  # never share (and so never mutate) DEFAULTS
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in defaults:
            if prefix == "":
                raise PolicyError(source, path, f"unknown section; sections are {', '.join(defaults)}")
            if prefix == "types.":
                raise PolicyError(source, path, f"unknown release type; types are {', '.join(RELEASE_TYPES)}")
            if prefix.startswith("types.") and prefix.count(".") == 2 and key == "rank":
                # Refused rather than ignored: an operator who ranked types meant something by it.
                raise PolicyError(source, path, "ranks are gone: the requested and the derived type's controls "
                                                "now combine as a union (each role's larger count, the longer "
                                                "lead time and stabilisation), so nothing is ranked; remove this key")
            if prefix.startswith("types.") and prefix.count(".") == 2:
                raise PolicyError(source, path, f"unknown key; a type takes {', '.join(sorted(_TYPE_KEYS))}")
            if prefix not in _OPEN_TABLES:
                raise PolicyError(source, path, "unknown key")
        base = defaults.get(key)
        # approvers replace the default set wholesale: a merged union would make
        # it impossible to drop a role a team does not have.
        if isinstance(base, dict) and key != "approvers":
            if not isinstance(value, dict):
                raise PolicyError(source, path, "must be a table")
            out[key] = _merge(base, value, source, prefix=f"{path}.")
        else:
            out[key] = value
    return out


def _duration(spec: Mapping[str, Any], key: str, dkey: str, source: str) -> timedelta:
    value = spec.get(dkey)
    if not isinstance(value, str):
        raise PolicyError(source, f"{key}.{dkey}", 'must be a duration string like "30m", "4h" or "2d"')
    try:
        return parse_duration(value)
    except TimeInputError as exc:
        raise PolicyError(source, f"{key}.{dkey}", str(exc)) from None


def _deployment_policy(spec: Mapping[str, Any], source: str) -> DeploymentPolicy:
    deployers = spec.get("deployers")
    if not isinstance(deployers, list) or not deployers or any(r not in ROLES for r in deployers):
        raise PolicyError(source, "deployment.deployers", f"must be a non-empty list of roles from {', '.join(ROLES)}")
    roles = spec.get("signoff_roles")
    if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
        raise PolicyError(source, "deployment.signoff_roles", f"must be a non-empty list of roles from {', '.join(ROLES)}")
    closing = spec.get("closing_role")
    if not isinstance(closing, str) or closing not in ROLES:
        raise PolicyError(source, "deployment.closing_role", f"must be one role from {', '.join(ROLES)}")
    if closing in roles:
        # the closing sign-off comes after the others; one role cannot be both
        raise PolicyError(source, "deployment.closing_role", f"'{closing}' is already in deployment.signoff_roles; "
                                                             "the closing sign-off needs a role of its own")
    retro_types = spec.get("retrospective_types")
    if not isinstance(retro_types, list) or any(t not in RELEASE_TYPES for t in retro_types):
        raise PolicyError(source, "deployment.retrospective_types",
                          f"must be a list of release types from {', '.join(RELEASE_TYPES)}")
    days = spec.get("retrospective_business_days")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 60:
        raise PolicyError(source, "deployment.retrospective_business_days", "must be a whole number from 1 to 60")
    return DeploymentPolicy(
        signoff_roles=tuple(roles),
        followup_after=_duration(spec, "deployment", "followup_after", source),
        followup_escalate_after=_duration(spec, "deployment", "followup_escalate_after", source),
        retrospective_types=tuple(retro_types), retrospective_business_days=days,
        retrospective_remind_before=_duration(spec, "deployment", "retrospective_remind_before", source),
        closing_role=closing, stuck_grace=_duration(spec, "deployment", "stuck_grace", source),
        deployers=tuple(deployers), rollback_slo=_duration(spec, "deployment", "rollback_slo", source),
        production_environments=_names(spec, "production_environments", source))


def _names(spec: Mapping[str, Any], key: str, source: str) -> tuple[str, ...]:
    value = spec.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(source, f"deployment.{key}", 'must be a list of environment names, e.g. ["production"]')
    return tuple(value)


def _delivery_policy(spec: Mapping[str, Any], source: str) -> DeliveryPolicy:
    after = _duration(spec, "delivery", "dead_letter_after", source)
    low, high = DeliveryPolicy.BOUNDS
    if not low <= after <= high:
        raise PolicyError(source, "delivery.dead_letter_after", "must be from 15m to 30d")
    return DeliveryPolicy(dead_letter_after=after)


def _calendar_policy(spec: Mapping[str, Any], envs: tuple[str, ...], source: str,
                     operator_limits: set[str]) -> CalendarPolicy:
    limits = {}
    for env, n in spec.get("max_concurrent", {}).items():
        if env not in envs and env not in operator_limits:
            continue  # the built-in limit for "production", in a policy that has no such environment
        if env not in envs:
            raise PolicyError(source, f"calendar.max_concurrent.{env}", f"unknown environment; environments are "
                                                                        f"{', '.join(envs)}")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise PolicyError(source, f"calendar.max_concurrent.{env}", "must be a whole number, 1 or more")
        limits[env] = n
    windows = {}
    for env, w in spec.get("windows", {}).items():
        key = f"calendar.windows.{env}"
        if env not in envs:
            raise PolicyError(source, key, f"unknown environment; environments are {', '.join(envs)}")
        if not isinstance(w, dict) or set(w) != {"days", "start", "end", "tz"}:
            raise PolicyError(source, key, 'must be { days = "Mon-Thu", start = "09:00", end = "16:00", '
                                           'tz = "Europe/London" }')
        try:
            windows[env] = DeploymentWindows(parse_days(str(w["days"])), parse_clock(str(w["start"])),
                                             parse_clock(str(w["end"])), zone(str(w["tz"])) and str(w["tz"]))
        except TimeInputError as exc:
            raise PolicyError(source, key, str(exc)) from None
        if windows[env].end <= windows[env].start:
            raise PolicyError(source, key, "end must be after start (windows do not cross midnight)")
    hours = spec.get("default_hours")
    if not isinstance(hours, dict) or set(hours) != {"days", "start", "end"}:
        raise PolicyError(source, "calendar.default_hours", 'must be { days = "Mon-Fri", start = "09:00", '
                                                            'end = "17:00" } (in each release\'s own zone)')
    try:
        default_hours = DeploymentWindows(parse_days(str(hours["days"])), parse_clock(str(hours["start"])),
                                          parse_clock(str(hours["end"])), "UTC")
    except TimeInputError as exc:
        raise PolicyError(source, "calendar.default_hours", str(exc)) from None
    if default_hours.end <= default_hours.start:
        raise PolicyError(source, "calendar.default_hours", "end must be after start (hours do not cross midnight)")
    refresh = _duration(spec, "calendar", "feed_refresh", source)
    if not CalendarPolicy.FEED_REFRESH_BOUNDS[0] <= refresh <= CalendarPolicy.FEED_REFRESH_BOUNDS[1]:
        raise PolicyError(source, "calendar.feed_refresh", "must be from 15m to 7d")
    keep = _duration(spec, "calendar", "feed_keep_cancelled", source)
    if not CalendarPolicy.FEED_KEEP_CANCELLED_BOUNDS[0] <= keep <= CalendarPolicy.FEED_KEEP_CANCELLED_BOUNDS[1]:
        raise PolicyError(source, "calendar.feed_keep_cancelled", "must be from 1d to 365d")
    # The horizon keeps an old install's feed from growing with its history; two years either way is
    # as far as a release or a blackout can be planned (commands/request.py MAX_AHEAD).
    past, ahead = (_duration(spec, "calendar", k, source) for k in ("feed_past", "feed_ahead"))
    if not timedelta(days=1) <= past <= timedelta(days=730):
        raise PolicyError(source, "calendar.feed_past", "must be from 1d to 730d")
    if not timedelta(days=7) <= ahead <= timedelta(days=730):
        raise PolicyError(source, "calendar.feed_ahead", "must be from 7d to 730d")
    return CalendarPolicy(blackout_warning_lead=_duration(spec, "calendar", "blackout_warning_lead", source),
                          max_concurrent=MappingProxyType(limits), windows=MappingProxyType(windows),
                          feed_refresh=refresh, feed_keep_cancelled=keep, feed_past=past, feed_ahead=ahead,
                          default_hours=default_hours)


def _type_policy(name: str, spec: Mapping[str, Any], source: str) -> TypePolicy:
    key = f"types.{name}"
    durations = {d: _duration(spec, key, d, source) for d in ("lead_time", "stabilisation", "approval_sla")}
    approvers = spec.get("approvers")
    form = ("must be a table like { release_manager = 1, qa_lead = 1 }, or a list of alternative sets like "
            "[{ cab = 2 }, { release_manager = 1, engineering_lead = 1 }]")
    if isinstance(approvers, dict):
        given, where = [approvers], [f"{key}.approvers"]
    elif isinstance(approvers, list) and approvers:
        given, where = approvers, [f"{key}.approvers[{i}]" for i in range(len(approvers))]
    else:
        raise PolicyError(source, f"{key}.approvers", form)
    sets: list[dict[str, int]] = []
    for one, at in zip(given, where):
        if not isinstance(one, dict) or not one:
            raise PolicyError(source, at, form)
        for role, count in one.items():
            if role not in ROLES:
                raise PolicyError(source, f"{at}.{role}", f"unknown role; roles are {', '.join(ROLES)}")
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise PolicyError(source, f"{at}.{role}", "must be a whole number of people, 1 or more")
        if dict(one) in sets:
            raise PolicyError(source, at, "the same approver set is listed twice")
        sets.append(dict(one))
    union: dict[str, int] = {}
    for one in sets:
        for role, count in one.items():
            union[role] = max(union.get(role, 0), count)
    return TypePolicy(name=name, lead_time=durations["lead_time"], stabilisation=durations["stabilisation"],
                      approvers=MappingProxyType(union), approval_sla=durations["approval_sla"],
                      approver_sets=tuple(MappingProxyType(one) for one in sets))
