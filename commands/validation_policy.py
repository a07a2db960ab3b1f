"""The policy's [validation] section (QMS 4.3 test phases, 4.4 step 2 release documentation, 4.4 step 4
the single controlled path), as immutable data checked at start-up like the rest of commands.policy."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

# QMS 4.3, in the order the procedure runs them
PHASES = ("unit", "integration", "system", "performance", "security", "regression", "uat", "infrastructure")
DOCUMENTS = ("release_notes", "runbook", "rollback_plan")
_STANDARD_DOCS = ["release_notes", "runbook"]

# every key of the section, with its default; policy.toml documents each
VALIDATION_DEFAULTS: dict[str, Any] = {
    # QMS 4.3: security scan and regression for every type, performance for major and minor, UAT for
    # major, infrastructure validation for infrastructure. QMS 4.6 (Testing): an emergency runs the
    # mandatory automated CI checks and targeted regression; the full suite, UAT and performance are
    # its deferred test review, so security + regression is what its gate needs.
    "phases": {
        "major": ["security", "regression", "performance", "uat"],
        "minor": ["security", "regression", "performance"],
        "patch": ["security", "regression"],
        "security": ["security", "regression"],
        "emergency": ["security", "regression"],
        "infrastructure": ["security", "regression", "infrastructure"],
    },
    # QMS 4.4 step 2: release notes and the deployment runbook for every standard release; 4.5: a written
    # rollback procedure before any major or infrastructure release (for minor and patch the pipeline's
    # redeploy-previous is the minimum). QMS 4.6: an emergency's release notes and runbook are its
    # deferred "docs" step (commands.deferred), so its gate asks for none.
    "documents": {
        "major": _STANDARD_DOCS + ["rollback_plan"],
        "minor": list(_STANDARD_DOCS),
        "patch": list(_STANDARD_DOCS),
        "security": list(_STANDARD_DOCS),
        "emergency": [],
        "infrastructure": _STANDARD_DOCS + ["rollback_plan"],
    },
    # where a deployment needs an artefact carrying the release's version and a commit, and where a
    # start by hand from Slack needs a written justification and is recorded as manual
    "controlled_environments": ["production"],
    # controlled environments where a manual start is allowed (not a non-conformance; still justified)
    "manual_allowed": [],
    # who may record a test phase from Slack (a pipeline is authorised by its token; UAT is the product owner's)
    "recorders": ["qa_lead", "security", "platform_lead", "operations", "release_manager", "engineering_lead"],
}


@dataclass(frozen=True)
class ValidationPolicy:
    phases: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType(
        {t: tuple(p) for t, p in VALIDATION_DEFAULTS["phases"].items()}))
    documents: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType(
        {t: tuple(p) for t, p in VALIDATION_DEFAULTS["documents"].items()}))
    controlled_environments: tuple[str, ...] = ("production",)
    manual_allowed: tuple[str, ...] = ()
    recorders: tuple[str, ...] = tuple(VALIDATION_DEFAULTS["recorders"])

    def phases_for(self, types) -> tuple[str, ...]:
        """Combined types need the union (a requested type only adds control), in the procedure's order."""
        wanted = {p for t in types for p in self.phases.get(t, ())}
        return tuple(p for p in PHASES if p in wanted)

    def documents_for(self, types) -> tuple[str, ...]:
        wanted = {d for t in types for d in self.documents.get(t, ())}
        return tuple(d for d in DOCUMENTS if d in wanted)


def validation_policy(spec: Mapping[str, Any], source: str, environments: tuple[str, ...],
                      roles: tuple[str, ...], operator: Mapping[str, Any]) -> ValidationPolicy:
    """`operator`: what the policy file itself set in [validation]; the built-in "production" is dropped
    from a policy without such an environment, a name the operator wrote is checked."""
    from commands.policy import PolicyError  # the one shape of a policy mistake
    tables = {}
    for key, allowed in (("phases", PHASES), ("documents", DOCUMENTS)):
        table = {}
        for rtype, items in spec.get(key, {}).items():
            if not isinstance(items, list) or any(i not in allowed for i in items):
                raise PolicyError(source, f"validation.{key}.{rtype}",
                                  f"must be a list drawn from {', '.join(allowed)}")
            table[rtype] = tuple(dict.fromkeys(items))
        tables[key] = MappingProxyType(table)
    lists = {}
    for key, allowed, what in (("controlled_environments", environments, "environments"),
                               ("manual_allowed", environments, "environments"), ("recorders", roles, "roles")):
        value = spec.get(key)
        if key not in operator and isinstance(value, list):
            value = [v for v in value if v in allowed]
        if not isinstance(value, list) or any(v not in allowed for v in value):
            raise PolicyError(source, f"validation.{key}", f"must be a list of {what} from {', '.join(allowed)}")
        lists[key] = tuple(value)
    return ValidationPolicy(phases=tables["phases"], documents=tables["documents"], **lists)
