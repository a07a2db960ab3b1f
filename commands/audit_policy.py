"""The policy's [audit] section: how often the audit chain's head is signed into a checkpoint and posted
to AUDIT_CHANNEL (issue 12; audit curriculum M5: logs immutable and witnessed outside the database)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Mapping

# every key of the section, with its default; policy.toml documents each
AUDIT_DEFAULTS: dict[str, Any] = {
    "checkpoint_every": "24h",
}


@dataclass(frozen=True)
class AuditPolicy:
    checkpoint_every: timedelta = timedelta(hours=24)

    # More often than hourly floods the channel; rarer than monthly leaves a long stretch unwitnessed.
    BOUNDS = (timedelta(hours=1), timedelta(days=31))


def audit_policy(spec: Mapping[str, Any], source: str) -> AuditPolicy:
    from commands.policy import PolicyError, _duration  # the one shape of a policy mistake
    every = _duration(spec, "audit", "checkpoint_every", source)
    low, high = AuditPolicy.BOUNDS
    if not low <= every <= high:
        raise PolicyError(source, "audit.checkpoint_every", "must be from 1h to 31d")
    return AuditPolicy(checkpoint_every=every)
