"""What the gate asks of the release package and of the artefact, and the single controlled path.

QMS 4.3: test results "must be present before the deployment gate is cleared". QMS 4.4 step 2: the
artefact is built from the tagged commit via the pipeline ("no manual builds for production
artefacts") and the documentation is complete; step 4: "execute deployment via the CI/CD pipeline.
Manual deployment steps require written justification in the release record". In a controlled
environment ([validation] controlled_environments, default production) a start therefore names
the artefact and the commit, the artefact carries the approved release's version, and a start
by hand from Slack is justified in writing, recorded as manual, and (outside the emergency track
and [validation] manual_allowed) a non-conformance (QMS 6.2).

The artefact rule: an artefact carries version V when it is V itself, or `<name>:V`, optionally
pinned by a digest (`<name>:V@sha256:…`), e.g. "payments:2.3.1" or "ghcr.io/acme/payments:2.3.1@sha256:…"
for 2.3.1. An emergency opened without a version (commands.emergency.DEFAULT_VERSION) takes the
artefact its pipeline reports: the fix had no release number when the emergency opened.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from commands import nonconformance, validation
from commands.emergency import DEFAULT_VERSION
from commands.outcome import Actor
from commands.policy import Policy
from storage.models import Deployment, Release
from storage.quality_models import NonConformance

MANUAL_DEPLOYMENT = "manual_deployment"  # QMS 6.2: artefact not built from a tagged, reviewed commit via the pipeline
PHASE_SKIPPED = "test_phase_skipped"  # QMS 6.2: mandatory test phase skipped without approval
DOCUMENTATION_ABSENT = "documentation_absent"  # QMS 6.2: release documentation absent at deployment
JUSTIFICATION_LIMIT = 2000


@dataclass(frozen=True)
class Provenance:
    """What a start says it deploys, and (by hand from Slack) why it is not the pipeline."""

    artifact: str | None = None
    commit: str | None = None
    justification: str | None = None
    # False only for the precheck before the deploy form opens: the form has not asked for these yet,
    # so the gate checks what no form can fix (the test phases of any artefact, the documents)
    known: bool = True


NOT_YET_ASKED = Provenance(known=False)


def carries_version(artifact: str, version: str) -> bool:
    if artifact == version:
        return True
    ref = artifact.split("@", 1)[0]  # a digest pins the same tag
    last = ref.rsplit("/", 1)[-1]
    return ref == version or (":" in last and last.rsplit(":", 1)[1] == version)


def controlled(policy: Policy, release: Release) -> bool:
    return release.environment in policy.validation.controlled_environments


def manual(who: Actor) -> bool:
    """A start by hand: a person in Slack, not a pipeline (commands.deploy.Deployer.pipeline)."""
    return getattr(who, "pipeline", None) is None


def reasons(session: Session, release: Release, who: Actor, prov: Provenance | None, policy: Policy) -> list[str]:
    """Every reason the package or the provenance keeps the gate shut; empty means they do not."""
    prov = prov if prov is not None else Provenance()
    artifact = prov.artifact if prov.known else None
    out = [validation.describe(session, release, item, artifact)
           for item in validation.missing(session, release, artifact, policy)]
    if not prov.known:
        return out
    if prov.artifact and release.version != DEFAULT_VERSION and not carries_version(prov.artifact, release.version):
        out.append(f"artefact {prov.artifact} does not carry {release.ref}'s approved version {release.version}: "
                   f"deploy the artefact built for it (e.g. {release.service}:{release.version}), or change the "
                   "version with /release edit (which resets the votes)")
    if controlled(policy, release):
        env = release.environment
        if not prov.artifact:
            out.append(f"an artefact is required to start a {env} deployment (QMS 4.4: the signed artefact built "
                       f"from the tagged commit), e.g. {release.service}:{release.version}")
        if not prov.commit:
            out.append(f"the commit the artefact was built from is required to start a {env} deployment")
        if manual(who) and not prov.justification:
            out.append(f"a {env} deployment started by hand, not by the pipeline, needs a written justification "
                       "(QMS 4.4 step 4)")
    return out


def start_is_nonconforming(policy: Policy, release: Release, who: Actor) -> bool:
    """A manual start in a controlled environment, outside the emergency track and the policy's allowance."""
    return (manual(who) and controlled(policy, release) and release.effective_type != "emergency"
            and release.environment not in policy.validation.manual_allowed)


def started(session: Session, release: Release, dep: Deployment, who: Actor, prov: Provenance, audit_name: str,
            policy: Policy) -> NonConformance | None:
    """What the start records beyond the deployment itself: manual or not, the package's completeness
    (a waiver opens the gate but the package is complete only without one: the KPI counts exceptions), the
    policy in force, and the manual start's non-conformance."""
    dep.manual = manual(who)
    dep.justification = prov.justification if dep.manual else None
    dep.package_complete = not validation.missing(session, release, prov.artifact, policy) and not \
        validation.waived_items(session, release, policy)
    dep.policy_hash = policy.digest
    if not start_is_nonconforming(policy, release, who):
        return None
    nc, _ = nonconformance.record(
        session, release, kind=MANUAL_DEPLOYMENT, subject=f"{release.ref}:deployment:{dep.id}",
        detail=(f"{release.ref} was deployed to {release.environment} by hand from Slack by {audit_name}, not "
                f"through the pipeline: the artefact is not shown to be built from a tagged, reviewed commit via "
                f"the pipeline (QMS 4.4). Justification: {prov.justification}"),
        actor=audit_name, now=dep.started_at, deployment_id=dep.id, policy=policy, artifact=prov.artifact,
        commit=prov.commit)
    return nc


def package_nonconformances(session: Session, release: Release, artifact: str | None, actor: str, now,
                            policy: Policy, deployment_id: int | None = None,
                            how: str = "was deployed") -> list[NonConformance]:
    """QMS 6.2 for a deployment that went ahead without its package (a forced path, or a deployment a
    pipeline reports that never passed the gate): one non-conformance for the skipped test phases and
    one for the absent documents, each recorded once per release."""
    items = validation.missing(session, release, artifact, policy)
    phases = [i.partition(":")[2] for i in items if i.startswith("phase:")]
    docs = [i.partition(":")[2] for i in items if i.startswith("document:")]
    out = []
    for kind, names, what in ((PHASE_SKIPPED, phases, "mandatory test phase(s) neither passed nor waived"),
                              (DOCUMENTATION_ABSENT, docs, "release documentation absent")):
        if not names:
            continue
        nc, _ = nonconformance.record(
            session, release, kind=kind, subject=f"{release.ref}:{kind}",
            detail=f"{release.ref} {how} with {what}: {', '.join(names)}", actor=actor, now=now,
            deployment_id=deployment_id, policy=policy, missing=names)
        out.append(nc)
    return out


def forced_start(session: Session, release: Release, dep: Deployment, actor: str,
                 policy: Policy) -> list[NonConformance]:
    """A deployment that started through a path that skipped the gate (e.g. an override outside the bot):
    marked `forced`, and its missing package recorded as non-conformances (once each)."""
    dep.forced = True
    return package_nonconformances(session, release, dep.artifact, actor, dep.started_at, policy,
                                   deployment_id=dep.id, how="was deployed through a forced path")
