"""Deriving a release type from the classification questions (QMS §3.7)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import timedelta
from typing import Iterable

from calendars.timeparse import format_duration
from commands.approval import describe_set, union
from commands.policy import Policy
from storage.models import Release

# (key, question as asked, command-line flag). The order is the order asked.
QUESTIONS: tuple[tuple[str, str, str], ...] = (
    ("breaking", "Breaking API or architectural change?", "breaking"),
    ("cross_system", "Cross-system dependencies?", "cross-system"),
    ("cve", "Remediates a confirmed vulnerability / CVE?", "cve"),
    ("incident", "Responds to a production incident or outage?", "incident"),
    ("infrastructure", "Infrastructure-as-code or cloud change?", "iac"),
    ("network_iam", "Changes network or IAM?", "network-iam"),
    ("sensitive", "Touches auth, crypto, data handling or network policy?", "sensitive"),
    ("feature", "Adds or changes functionality (non-breaking)?", "feature"),
)
FLAG_TO_KEY = {flag: key for key, _, flag in QUESTIONS}


@dataclass(frozen=True)
class Answers:
    breaking: bool = False
    cross_system: bool = False
    cve: bool = False
    incident: bool = False
    infrastructure: bool = False
    network_iam: bool = False
    sensitive: bool = False
    feature: bool = False

    @classmethod
    def from_keys(cls, keys: list[str] | set[str]) -> "Answers":
        known = {f.name for f in fields(cls)}
        return cls(**{k: True for k in keys if k in known})

    def as_dict(self) -> dict[str, bool]:
        return asdict(self)

    def yes(self) -> list[str]:
        return [k for k, v in asdict(self).items() if v]


def derive_type(a: Answers) -> str:
    """The most urgent track wins: an incident fix is an emergency even if it
    also breaks an API, because the emergency track is the one with a bridge
    and a 24-hour retrospective obligation."""
    if a.incident:
        return "emergency"
    if a.cve:
        return "security"
    if a.breaking or a.cross_system:
        return "major"
    if a.infrastructure or a.network_iam:
        return "infrastructure"
    if a.feature:
        return "minor"
    return "patch"


def needs_security(a: Answers) -> bool:
    # QMS §3.6: security approves anything touching auth, crypto, data handling or
    # network policy; §3.7: infrastructure changes to network or IAM, and every
    # vulnerability fix, on whichever track it ships (an incident makes a CVE fix an emergency).
    return a.sensitive or a.network_iam or a.cve


@dataclass(frozen=True)
class Controls:
    """What a release is held to. A requested type can add control, never remove it,
    so the controls of several types are their union."""

    required_roles: dict[str, int]  # every role some approver set names, at its largest count
    lead_time: timedelta
    stabilisation: timedelta
    retrospective: bool
    approval_sla: timedelta  # the shorter one: it only times the nudges
    # the alternative approver sets; any one complete set approves (one set: required_roles itself)
    approver_sets: tuple[dict[str, int], ...] = ()
    # QMS 4.6: the emergency track's own controls (a bridge, an assessment before co-approval, tracked
    # deferred steps), which no other type's include however many approvers it asks for
    emergency_track: bool = False

    def sets(self) -> tuple[dict[str, int], ...]:
        return self.approver_sets or (dict(self.required_roles),)

    def missing(self, other: "Controls") -> tuple[str, ...]:
        """What `other` asks for that these controls do not: empty when these include all of it."""
        mine, theirs = self.sets(), other.sets()
        if len(mine) == 1 and len(theirs) == 1:
            out = [f"{n} {role} approval{'s' if n > 1 else ''}" for role, n in other.required_roles.items()
                   if self.required_roles.get(role, 0) < n]
        else:
            # Included when every way these approve also satisfies some set of the other's.
            covered = all(any(_includes(m, t) for t in theirs) for m in mine)
            out = [] if covered else ["approval by " + " or ".join(describe_set(t) for t in theirs)]
        if self.lead_time < other.lead_time:
            out.append(f"lead time {format_duration(other.lead_time)}")
        if self.stabilisation < other.stabilisation:
            out.append(f"stabilisation {format_duration(other.stabilisation)}")
        if other.retrospective and not self.retrospective:
            out.append("a retrospective")
        if other.emergency_track and not self.emergency_track:
            out.append("the emergency track (bridge, assessment, deferred steps)")
        return tuple(out)


def applied_types(release: Release) -> tuple[str, ...]:
    """The types whose controls hold a release: the derived and the requested one,
    or the requested one alone once a release manager has accepted the misclassification."""
    if release.misclassification_accepted_by:
        return (release.requested_type,)
    return tuple(dict.fromkeys((release.derived_type, release.requested_type)))


def track(release: Release) -> str:
    """The applied types as one name, e.g. "minor" or "minor+patch" (planning checks take a type name)."""
    return "+".join(applied_types(release))


def controls(policy: Policy, what: "Release | str | Iterable[str]", answers: Answers | None = None) -> Controls:
    """The controls that apply to a release, to one type, or to several types at once.

    A release brings its own answers; a name may join several types with "+" (see track)."""
    if isinstance(what, Release):
        answers = Answers(**what.answers) if what.classification_answered and what.answers else None
        names: tuple[str, ...] = applied_types(what)
    elif isinstance(what, str):
        names = tuple(what.split("+"))
    else:
        names = tuple(what)
    types = [policy.type(n) for n in names]
    # Combined per alternative: each way of approving the union takes one set from every type, so a
    # stricter requested type only adds control (its roles join every alternative of the derived type).
    sets: list[dict[str, int]] = [{}]
    for t in types:
        sets = [union((s, dict(one))) for s in sets for one in t.approver_sets]
    if answers is not None and needs_security(answers):
        sets = [{**s, "security": s.get("security", 1)} for s in sets]  # security joins every set
    sets = _minimal(sets)
    return Controls(required_roles=union(sets), lead_time=max(t.lead_time for t in types),
                    stabilisation=max(t.stabilisation for t in types),
                    retrospective=any(n in policy.deployment.retrospective_types for n in names),
                    approval_sla=min(t.approval_sla for t in types),
                    approver_sets=tuple(sets) if len(sets) > 1 else (), emergency_track="emergency" in names)


def _includes(big: dict[str, int], small: dict[str, int]) -> bool:
    return all(big.get(r, 0) >= n for r, n in small.items())


def _minimal(sets: list[dict[str, int]]) -> list[dict[str, int]]:
    """Drop duplicates and any set that includes another: the smaller one approves first anyway."""
    out: list[dict[str, int]] = []
    for s in sets:
        if s not in out:
            out.append(s)
    return [s for s in out if not any(o is not s and o != s and _includes(s, o) for o in out)]


@dataclass(frozen=True)
class Classification:
    derived: str
    requested: str
    effective: str  # the type the release goes by: the requested one unless it is a misclassification
    misclassified: bool  # the requested type alone would drop some of the derived type's controls
    controls: Controls  # the union of both types' controls
    missing: tuple[str, ...] = ()  # what the requested type alone would drop

    @property
    def required_roles(self) -> dict[str, int]:
        return dict(self.controls.required_roles)

    @property
    def approver_sets(self) -> list[dict[str, int]] | None:
        return [dict(s) for s in self.controls.approver_sets] or None


def classify(policy: Policy, answers: Answers | None, requested: str | None) -> Classification:
    """answers=None only for releases recorded before answers were required: the declared type is all we know."""
    derived = derive_type(answers) if answers is not None else (requested or "patch")
    requested = requested or derived
    missing = controls(policy, requested).missing(controls(policy, derived))
    misclassified = requested != derived and bool(missing)
    return Classification(derived, requested, derived if misclassified else requested, misclassified,
                          controls(policy, (derived, requested), answers), missing)


def required_roles(policy: Policy, types: str | Iterable[str], answers: Answers | None) -> dict[str, int]:
    return dict(controls(policy, types, answers).required_roles)
