"""Rollback (QMS §4.5): deciding it, and when the previous version was confirmed stable.

Two times are kept: `rollback_decided_at` (the decision, the start of the
15-minute target) and `restored_at` (the previous version confirmed stable).
When the report of a rollback does not say them, the decision is the earlier
`/release rollback`, or the report's own time if there was none, and the
restore is the report's time. A pipeline or a person that knows better says
so (ISO 8601 with an offset, or the Slack form's local times): a one-step
rollback recorded as "decided and restored at once" would hide exactly the
SLO breach §6.2 counts. Restored − decided over `[deployment] rollback_slo`
in a production environment is a non-conformance, recorded on restore, once.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy.engine import Engine

from calendars.timeparse import TimeInputError, format_duration, parse_local
from commands import announce, nonconformance
from commands.clock import Clock
from commands.decision import Decision, decide
from commands.deploy import Deployer, _deployer_or, _in_scope, deployment_of
from commands.errors import FieldErrors, InputError, Refused, required_reason
from commands.outcome import Outcome
from commands.policy import Policy
from commands.release import load, snapshot
from commands.states import DEPLOYING, IN_FLIGHT, ROLLING_BACK, STABILISING
from commands.text import when
from storage.db import read
from storage.models import Deployment, Release

# A reporter's clock may run a little ahead of ours; further ahead is a mistake, not skew.
FUTURE_SKEW = timedelta(minutes=2)
ISO_FORM = "ISO 8601 with an offset, like 2026-12-09T10:05:00Z or 2026-12-09T11:05:00+01:00"


@dataclass(frozen=True)
class RollbackTimes:
    """What the report of a rollback says about its two times; None: not said (the default rule applies)."""

    decided_at: datetime | None = None
    restored_at: datetime | None = None


def parse_instant(value: object, field: str) -> datetime:
    """An ISO 8601 instant that names its offset: a time without one is a guess about a zone."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{field} must be {ISO_FORM}", field=field)
    text = value.strip()
    if text[-1:] in ("z", "Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{field} '{value}' is not {ISO_FORM}", field=field) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise InputError(f"{field} '{value}' has no offset; it must be {ISO_FORM}", field=field)
    return parsed.astimezone(timezone.utc)


def is_production(policy: Policy, environment: str | None) -> bool:
    return environment is not None and environment in policy.deployment.production_environments


def restore_times(dep: Deployment, now: datetime, times: RollbackTimes | None) -> tuple[datetime, datetime]:
    """(decided, restored) by the rule above; InputError when what was said cannot be true."""
    times = times or RollbackTimes()
    decided = times.decided_at or dep.rollback_decided_at or now
    restored = times.restored_at or now
    if times.decided_at is None and times.restored_at is not None and dep.rollback_decided_at is None:
        decided = restored  # only the restore was said: no decision before it is known
    for field, value in (("rollback_decided_at", decided), ("restored_at", restored)):
        if value > now + FUTURE_SKEW:
            raise InputError(f"{field} ({when(value)}) is in the future; now is {when(now)}", field=field)
        if value < dep.started_at:
            raise InputError(f"{field} ({when(value)}) is before the deployment started "
                             f"({when(dep.started_at)})", field=field)
    if restored < decided:
        raise InputError(f"restored_at ({when(restored)}) is before the rollback was decided ({when(decided)}); "
                         "the previous version is confirmed stable after the rollback is decided",
                         field="restored_at")
    return decided, restored


def restore(d: Decision, who: Deployer, dep: Deployment, times: RollbackTimes | None) -> None:
    """Set the two times of a rollback that has ended (called from commands.deploy.finish_change)."""
    decided, restored = restore_times(dep, d.now, times)
    dep.rollback_decided_by = dep.rollback_decided_by or who.user_id  # who decided earlier keeps it
    dep.rollback_decided_at, dep.restored_at = decided, restored


def check_slo(d: Decision, who: Deployer, dep: Deployment, policy: Policy) -> None:
    """QMS §6.2: a rollback that did not restore service within the SLO, in production. Once per deployment."""
    slo = policy.deployment.rollback_slo
    release = d.release
    if dep.restored_at is None or dep.rollback_decided_at is None or not is_production(policy, release.environment):
        return
    took = dep.restored_at - dep.rollback_decided_at
    if took <= slo:
        return
    detail = (f"the rollback of {release.ref} took {format_duration(took)} from the decision "
              f"({when(dep.rollback_decided_at)}) to the previous version confirmed stable "
              f"({when(dep.restored_at)}); the target is {format_duration(slo)} (QMS 4.5)")
    nonconformance.record(d.session, release, kind=nonconformance.ROLLBACK_SLO_EXCEEDED,
                          subject=f"{release.ref}:rollback",
                          detail=detail, actor=who.audit_name, now=d.now, deployment_id=dep.id,
                          minutes=round(took.total_seconds() / 60, 1), policy=policy)


# ---- deciding a rollback (before it ends) ----

def rollback_check(d: Decision, who: Deployer) -> Deployment:
    release = d.release
    dep = deployment_of(d.session, release)
    if release.state not in (DEPLOYING, STABILISING) or dep is None:
        raise Refused(f"{release.ref} is {release.state}; only a deployment in progress or in its "
                      "stabilisation window can be rolled back.", "not_deployed")
    _in_scope(release, who)
    _deployer_or(who, dep, f"A rollback of {release.ref} is decided by the deploying engineer or on-call "
                           "(operations), or a release manager (QMS 4.5).")
    return dep


def rollback_change(d: Decision, who: Deployer, dep: Deployment, reason: str,
                    decided_at: datetime | None = None) -> Outcome:
    release = d.release
    before = snapshot(release)
    release.state = ROLLING_BACK
    dep.rollback_decided_at, dep.rollback_decided_by = decided_at or d.now, who.user_id
    ev = d.record("rollback_decided", before=before, reason=reason)
    announce.approval_update(d.session, release, d.now, ev)
    announce.note(d.session, release, "rollback_decided", d.now, by=who.user_id, reason=reason)
    return Outcome(f"Rollback of {release.ref} decided at {when(dep.rollback_decided_at, show='t')}. When service "
                   f"is restored: /release done {release.ref} outcome=rolled_back.", release, changed=True)


def decide_rollback(db: Engine, who: Deployer, release_id: int, reason: str, clock: Clock) -> Outcome:
    """QMS §4.5: the on-call or deploying engineer decides a rollback without further approval."""
    reason = required_reason(reason, "a rollback decision needs a reason (the trigger)",
                             '/release rollback REL-12 reason="error rate +20% for 5 min"')
    return decide(db, release_id, who.audit_name, "rollback", clock.now(),
                  check=lambda d: rollback_check(d, who),
                  change=lambda d: rollback_change(d, who, d.context, reason))


# ---- the Slack form that records a rollback's end: both times, in the person's zone ----

FORM_TIME = "%Y-%m-%d %H:%M"


def form_defaults(db: Engine, release_id: int, clock: Clock) -> tuple[Release, datetime, datetime] | None:
    """(release, decided, restored) to prefill the form, by the rule above; None when nothing is rolling back or
    deploying (the finish itself then says why, as the buttons always did)."""
    with read(db) as session:
        release = load(session, release_id)
        dep = deployment_of(session, release)
        if dep is None or release.state not in IN_FLIGHT:
            return None
        now = clock.now()
        return release, dep.rollback_decided_at or now, now


def form_times(decided: str | None, restored: str | None, tz: str, now: datetime) -> RollbackTimes:
    """The form's two local times (YYYY-MM-DD HH:MM in `tz`); FieldErrors names each one that is wrong.
    `/release done … decided=… restored=…` may give either alone (None): the rule fills in the other."""
    errors: dict[str, str] = {}
    parsed: dict[str, datetime] = {}
    for key, text in (("decided", decided), ("restored", restored)):
        if text is None:
            continue
        try:
            parsed[key] = parse_local(text, tz)
        except TimeInputError as exc:
            errors[key] = str(exc)
            continue
        if parsed[key] > now + FUTURE_SKEW:
            errors[key] = "This is in the future."
    if not errors and len(parsed) == 2 and parsed["restored"] < parsed["decided"]:
        errors["restored"] = "Service is restored after the rollback is decided, not before."
    if errors:
        raise FieldErrors(errors)
    return RollbackTimes(parsed.get("decided"), parsed.get("restored"))
