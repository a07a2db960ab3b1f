"""A misclassification found after deployment (QMS 6.2): `/release misclassified REL-n reason="…"`.

Before deployment a wrong type is corrected (`/release edit`) or accepted in
writing by a release manager (`/release accept`): an accepted one is an
exception recorded on the release, not a non-conformance. Found later, when
the release went out under controls it should not have had, it is one: a
release manager records it, with what was wrong, against a release that was
deployed (closed, rolled back, failed, or still in flight). Once per release.
"""
from __future__ import annotations

from sqlalchemy.engine import Engine

from commands import nonconformance
from commands.clock import Clock
from commands.decision import Decision, decide
from commands.deploy import deployment_of
from commands.errors import Refused, required_reason
from commands.outcome import Actor, Outcome
from commands.policy import Policy

FORM = '/release misclassified REL-12 reason="was major: it changed the public API"'


def record_misclassification(db: Engine, actor: Actor, release_id: int, reason: str, clock: Clock,
                             policy: Policy) -> Outcome:
    reason = required_reason(reason, "recording a misclassification needs a reason: what the type should have "
                                     "been, and why", FORM)

    def replay(d: Decision) -> Outcome | None:
        same = nonconformance.find(d.session, nonconformance.MISCLASSIFICATION, d.release.ref)
        if same is None:
            return None
        return Outcome(f"The misclassification of {d.release.ref} is already recorded as {same.ref}.", d.release,
                       data={"nonconformance": same.id})

    def check(d: Decision) -> None:
        release = d.release
        actor.require(("release_manager",), "Only a release manager records a misclassification found after "
                                            "deployment (QMS 6.2).", "not_release_manager")
        if deployment_of(d.session, release) is None:
            raise Refused(f"{release.ref} has not been deployed ({release.state}). Before deployment a wrong type is "
                          f"corrected with /release edit {release.ref}, or accepted with /release accept "
                          f"{release.ref} reason=\"…\"; neither is a non-conformance.", "not_deployed")

    def change(d: Decision) -> Outcome:
        release = d.release
        accepted = (f" (a misclassification was accepted at request time by {release.misclassification_accepted_by}: "
                    f"{release.misclassification_reason})" if release.misclassification_accepted_by else "")
        detail = (f"{release.ref} ({release.service} {release.version}) was deployed as {release.effective_type}, "
                  f"found misclassified after deployment by {actor.user_id}: {reason}{accepted}")
        nc, _ = nonconformance.record(d.session, release, kind=nonconformance.MISCLASSIFICATION, subject=release.ref,
                                      detail=detail, actor=actor.user_id, now=d.now,
                                      deployment_id=deployment_of(d.session, release).id,
                                      effective_type=release.effective_type, policy=policy)
        return Outcome(f"The misclassification of {release.ref} is recorded as non-conformance {nc.ref} and posted "
                       "to the release channel.", release, changed=True, data={"nonconformance": nc.id})

    return decide(db, release_id, actor.user_id, "misclassified", clock.now(), replay=replay, check=check,
                  change=change)
