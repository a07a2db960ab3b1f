"""Deriving a release type from the classification questions (QMS §3.7)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from commands.policy import Policy

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
    # network policy; §3.7: infrastructure changes to network or IAM.
    return a.sensitive or a.network_iam


@dataclass(frozen=True)
class Classification:
    derived: str
    requested: str
    effective: str  # the type whose approvals apply
    misclassified: bool
    required_roles: dict[str, int]


def classify(policy: Policy, answers: Answers | None, requested: str | None) -> Classification:
    """answers=None means the requester declared a type without answering the
    questions (one-line requests); then the declared type is all we know."""
    derived = derive_type(answers) if answers is not None else (requested or "patch")
    requested = requested or derived
    rank = lambda t: policy.type(t).rank  # noqa: E731
    misclassified = requested != derived and rank(requested) <= rank(derived)
    effective = derived if misclassified else requested
    return Classification(derived, requested, effective, misclassified,
                          required_roles(policy, effective, answers))


def required_roles(policy: Policy, effective: str, answers: Answers | None) -> dict[str, int]:
    roles = dict(policy.type(effective).approvers)
    if answers is not None and needs_security(answers):
        roles.setdefault("security", 1)
    return roles
