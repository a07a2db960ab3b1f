"""GitHub Environments ask releasebot: the custom deployment protection rule (issue 14), decided here.

A GitHub deployment waits on its environment until the app answers. The answer is the deployment gate's
(commands.deploy.gate_reasons: the same as a Slack click and the pipeline API), for the GitHub sender mapped
to a Slack user by the bot. Three answers:
- every rule holds: `approved`, with a comment naming the release;
- a rule fails that waiting cannot fix: `rejected`, with every reason (audited `github_deploy_refused`);
- the release is still collecting votes, or approved with its window still ahead: a status report, and the
  request stays `waiting`. Any change to the release (announce.approval_update calls release_changed) and
  the window's start queue a recheck through the outbox, so a restart loses nothing.

The answers themselves are outbox rows (kind GITHUB_ANSWER) written in the deciding transaction; the bot
posts them to GitHub. Which release a deployment is, in this order:
1. an explicit `"release": "REL-n"` in the deployment's payload;
2. the deployment's version: the payload's `version`, or its `artifact` ("payments:2.3.1", or "2.3.1"), or
   the ref when it is a tag ("v2.3.1", "refs/tags/2.3.1"), equal to a live release's version of the mapped
   service and environment.
Releases do not carry a commit before they deploy, so the commit (`sha`) is kept and reported, not matched.

What the gate asks of the start's provenance (commands.provenance: the artefact and its commit in a controlled
environment) is what GitHub knows: the commit is the deployment's `sha`; the artefact is the payload's
`artifact`, else its `version`, else the version of the tag deployed (`provenance_of`). Results recorded for
another artefact do not count for it. The package (test phases, documents) is not something waiting fixes:
a deployment without it is rejected with the gate's reasons, never held.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from commands import announce
from commands.clock import Clock
from commands.decision import refuse
from commands.deploy import CHECKLIST, NOT_APPROVED, OUTSIDE_WINDOW, Deployer, gate_reasons
from commands.provenance import Provenance
from commands.errors import InputError, NotFound, Refused
from commands.outcome import Outcome
from commands.policy import Policy
from commands.release import APPROVED, approval_of, load, snapshot, touch
from commands.states import LIVE_STATES, PENDING
from commands.text import parse_ref, when
from storage import audit, outbox
from storage.db import transaction
from storage.github_models import APPROVED as ANSWERED_APPROVED, REJECTED, WAITING, GithubRequest
from storage.models import AuditEvent, Release

GITHUB_WEBHOOK = "github_webhook"  # a verified delivery, still to be handled
GITHUB_ANSWER = "github_answer"  # a call to a deployment's callback URL (an answer or a status report)
GITHUB_RECHECK = "github_recheck"  # a release changed (or its window opened): decide what waits on it again
MAX_REPORTS = 10  # GitHub keeps at most 10 status reports per deployment
PIPELINE = "github"  # the Deployer's pipeline: audited as "U123 via pipeline:github"


@dataclass(frozen=True)
class ProtectionRequest:
    """What a `deployment_protection_rule` (action `requested`) delivery asks, as the bot parsed it."""

    deployment_id: int
    repo: str
    environment: str
    installation_id: int
    callback_url: str
    sender: str
    run_url: str | None = None
    sha: str | None = None
    ref: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)  # the deployment's own payload


def stream(deployment_id: int) -> str:
    # one deployment's work and answers keep their order: a report never overtakes the answer
    return f"github:{deployment_id}"


def deployer(user_id: str, roles: frozenset, unresolved: frozenset, environments) -> Deployer:
    return Deployer(user_id, roles, unresolved, PIPELINE, frozenset(environments), True)


def audit_name(who: Deployer | None, sender: str) -> str:
    return who.audit_name if who is not None else f"github:{sender}"


# ---- which release ----------------------------------------------------------------------------------

_TAG = re.compile(r"^(?:refs/tags/)?v?(\d[\w.+-]*)$")


def version_hints(payload: Mapping[str, Any], ref: str | None, service: str) -> list[str]:
    hints = []
    for key in ("version", "artifact"):
        value = payload.get(key)
        if isinstance(value, str) and value.strip():
            value = value.strip()
            if key == "artifact" and value.lower().startswith(f"{service.lower()}:"):
                value = value.split(":", 1)[1]
            hints.append(value)
    if ref:
        m = _TAG.match(ref.strip())
        if m:
            hints += [m.group(1), ref.strip().removeprefix("refs/tags/")]
    return list(dict.fromkeys(hints))


def artifact_of(payload: Mapping[str, Any], ref: str | None) -> str | None:
    """The artefact a GitHub deployment says it deploys: the payload's `artifact`, else its `version`, else
    the version of the tag it deploys; None when it says none (a branch ref is no artefact)."""
    for key in ("artifact", "version"):
        value = payload.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:200]
    m = _TAG.match(ref.strip()) if ref else None
    return m.group(1)[:200] if m else None


def provenance_of(payload: Mapping[str, Any], ref: str | None, sha: str | None) -> Provenance:
    # a pipeline start: no justification is asked (commands.provenance.manual)
    return Provenance(artifact=artifact_of(payload, ref), commit=(sha or "").strip()[:80] or None)


def match_release(session: Session, service: str, environment: str, payload: Mapping[str, Any],
                  ref: str | None) -> tuple[Release | None, str | None]:
    """The release this deployment is (see the module's order), or None and why none is."""
    named = payload.get("release")
    if named is not None:
        try:
            rid = parse_ref(str(named))
            release = load(session, rid)
        except (InputError, NotFound):
            shown = str(named)[:40]
            return None, f"the deployment's payload names release '{shown}', which does not exist"
        if (release.service, release.environment) != (service, environment):
            return None, (f"{release.ref} is a release of {release.service} to {release.environment}, not of "
                          f"{service} to {environment}")
        return release, None
    hints = version_hints(payload, ref, service)
    if not hints:
        return None, ("the deployment names no release: give its payload \"release\": \"REL-n\" or "
                      "\"version\", or deploy a tag equal to the release's version")
    found = list(session.scalars(select(Release).where(Release.service == service,
                                                       Release.environment == environment,
                                                       Release.version.in_(hints)).order_by(Release.id.desc())))
    live = [r for r in found if r.state in LIVE_STATES]
    if len(live) > 1:
        return None, (f"{', '.join(r.ref for r in live)} all match version {hints[0]}; name one with "
                      f"\"release\": \"REL-n\" in the deployment's payload")
    if live or found:
        return (live or found)[0], None
    return None, f"no release of {service} to {environment} has version {' or '.join(hints)}"


# ---- the decision -----------------------------------------------------------------------------------

def requested(db: Engine, req: ProtectionRequest, who: Deployer | None, unmapped: str | None, clock: Clock,
              policy: Policy) -> Outcome:
    """Answer (or hold) one protection rule request; a redelivery of an answered one changes nothing."""
    now = clock.now()
    with transaction(db) as session:
        mapped = policy.github.environment(req.repo, req.environment)
        release, why = (match_release(session, *mapped, req.payload, req.ref) if mapped else
                        (None, f"{req.repo} environment '{req.environment}' is not mapped to a service and "
                               "environment in the release policy ([github.repos])"))
        if release is not None:
            release = load(session, release.id, lock=True)
        gr = _request_row(session, req, now)
        if gr.state != WAITING:
            return Outcome(f"deployment {req.deployment_id} was already answered: {gr.state}", None)
        gr.deployer_id, gr.unmapped = (who.user_id if who else None), unmapped
        if mapped:
            gr.service, gr.release_environment = mapped
        gr.release_id = release.id if release else None
        return _decide(session, gr, release, who, [why] if why else [], now, policy)


def recheck(db: Engine, request_id: int, who: Deployer | None, clock: Clock, policy: Policy) -> Outcome:
    """Decide a waiting request again: its release changed, or its window opened."""
    now = clock.now()
    with transaction(db) as session:
        gr = session.get(GithubRequest, request_id)
        if gr is None or gr.release_id is None:
            return Outcome("", None)
        release = load(session, gr.release_id, lock=True)
        session.refresh(gr)  # what another process answered while this one waited for the release
        if gr.state != WAITING:
            return Outcome(f"deployment {gr.deployment_id} was already answered: {gr.state}", release)
        return _decide(session, gr, release, who, [], now, policy)


def waiting(session: Session, release_id: int) -> list[GithubRequest]:
    return list(session.scalars(select(GithubRequest).where(GithubRequest.release_id == release_id,
                                                            GithubRequest.state == WAITING)
                                .order_by(GithubRequest.id)))


# the changes this module makes itself: deciding again after them would find what it just found
_OWN = ("github_deployment_waiting", "github_deployment_approved", "github_deployment_released")


def release_changed(session: Session, release: Release, now: datetime, cause: AuditEvent) -> None:
    """Hooked into announce.approval_update: whatever waits on this release is decided again (the Go that
    completes the vote releases it; a No-go or a cancellation rejects it)."""
    if cause.action not in _OWN and waiting(session, release.id):
        outbox.enqueue(session, key=f"github-recheck:{release.id}:event:{cause.id}", kind=GITHUB_RECHECK,
                       release_id=release.id, payload={"release_id": release.id}, at=now)


def _request_row(session: Session, req: ProtectionRequest, now: datetime) -> GithubRequest:
    query = select(GithubRequest).where(GithubRequest.deployment_id == req.deployment_id,
                                        GithubRequest.environment == req.environment)
    gr = session.scalars(query).first()
    if gr is not None:
        return gr
    gr = GithubRequest(deployment_id=req.deployment_id, repo=req.repo[:200], environment=req.environment[:255],
                       installation_id=req.installation_id, callback_url=req.callback_url, run_url=req.run_url,
                       sender=req.sender[:100], sha=(req.sha or "")[:80] or None, ref=(req.ref or "")[:255] or None,
                       payload=dict(req.payload), state=WAITING, reports=0, received_at=now)
    session.add(gr)
    session.flush()
    return gr


def _checklist(payload: Mapping[str, Any]) -> dict[str, bool]:
    given = payload.get("checklist")
    given = given if isinstance(given, dict) else {}
    return {key: given.get(key) is True for key, _ in CHECKLIST}


def _waitable(release: Release, now: datetime, reasons: list[str]) -> list[str] | None:
    """The reasons left once those that time or votes fix are set aside; None when none of them applies."""
    early = now < release.start_at
    if release.state not in (PENDING, APPROVED) or (release.state == APPROVED and not early):
        return None
    # by the gate's codes for these two (commands.deploy.gate_reasons); anything else it says is a refusal
    waits = {NOT_APPROVED, OUTSIDE_WINDOW} if early else {NOT_APPROVED}
    return [r for r in reasons if getattr(r, "code", None) not in waits]


def _decide(session: Session, gr: GithubRequest, release: Release | None, who: Deployer | None,
            reasons: list[str], now: datetime, policy: Policy) -> Outcome:
    actor = audit_name(who, gr.sender)
    if gr.unmapped:
        reasons = [gr.unmapped, *reasons]
    if release is not None and who is not None:
        # raises CouldNotCheck when Slack could not say who holds a role: nothing is written, tried again later
        reasons = reasons + gate_reasons(release, session, who, now, _checklist(gr.payload), policy,
                                         provenance_of(gr.payload or {}, gr.ref, gr.sha))
        rest = _waitable(release, now, reasons)
        if rest == []:
            return _hold(session, gr, release, now)
    if release is None or reasons:
        return _reject(session, gr, release, actor, reasons, now)
    return _approve(session, gr, release, actor, now)


def _answer(session: Session, gr: GithubRequest, now: datetime, suffix: str, **payload) -> None:
    outbox.enqueue(session, key=f"github-answer:{gr.id}:{suffix}", kind=GITHUB_ANSWER, release_id=gr.release_id,
                   at=now, stream=stream(gr.deployment_id),
                   payload={"request_id": gr.id, "environment_name": gr.environment,
                            "installation_id": gr.installation_id, "callback_url": gr.callback_url, **payload})


def _about(release: Release | None) -> dict[str, Any]:
    if release is None:
        return {}
    return {"ref": release.ref, "service": release.service, "version": release.version,
            "environment": release.environment, "channel": release.channel_id, "ts": release.message_ts}


def _approve(session: Session, gr: GithubRequest, release: Release, actor: str, now: datetime) -> Outcome:
    gr.state, gr.answered_at = ANSWERED_APPROVED, now
    before = snapshot(release)
    touch(release, now)
    ev = audit.record(session, actor=actor, action="github_deployment_approved", release_id=release.id, at=now,
                      before=before, after={**snapshot(release), **_trail(gr)})
    _answer(session, gr, now, "answer", state="approved", **_about(release))
    announce.note(session, release, "github_answer", now, key_suffix=f"{gr.id}", state="approved",
                  **_trail(gr))
    announce.approval_update(session, release, now, ev)
    return Outcome(f"GitHub deployment {gr.deployment_id} of {release.ref} approved", release, changed=True)


def _reject(session: Session, gr: GithubRequest, release: Release | None, actor: str, reasons: list[str],
            now: datetime) -> Outcome:
    gr.state, gr.answered_at = REJECTED, now
    gr.comment = "\n".join(reasons)
    detail = {**_trail(gr), "reasons": reasons}
    if release is not None:
        refuse(session, release, actor, "github_deploy", Refused("\n".join(reasons), "gate"), now, detail)
        announce.note(session, release, "github_answer", now, key_suffix=f"{gr.id}", state="rejected",
                      reasons=reasons, **_trail(gr))
        if gr.reports:  # it was shown as waiting: the approval message drops it
            ev = audit.record(session, actor=actor, action="github_deployment_released", release_id=release.id,
                              at=now, after={"state": "rejected", **_trail(gr)})
            announce.approval_update(session, release, now, ev)
    else:
        audit.record(session, actor=actor, action="github_deploy_refused", at=now, after={"code": "gate", **detail},
                     reason="\n".join(reasons))
    _answer(session, gr, now, "answer", state="rejected", reasons=reasons, **_about(release))
    return Outcome("\n".join(reasons), release, refused=True, data={"reasons": reasons})


def waiting_text(session: Session, release: Release, now: datetime) -> str:
    if release.state == PENDING:
        st = approval_of(session, release)
        missing = st.missing()
        total = sum(int(n) for n in (release.required_roles or {}).values())
        needed = sum(missing.values())
        if st.alternatives:
            return f"waiting for the approvals of {release.ref}: {st.missing_text()}"
        return (f"waiting for {needed} of {total} approval{'s' if total != 1 else ''} of {release.ref}: "
                f"{', '.join(missing)}")
    return f"{release.ref} is approved; waiting for its window to open at {when(release.start_at)}"


def _hold(session: Session, gr: GithubRequest, release: Release, now: datetime) -> Outcome:
    text = waiting_text(session, release, now)
    first = gr.reports == 0
    if text != gr.last_report and gr.reports < MAX_REPORTS:
        gr.reports += 1
        gr.last_report = text
        _answer(session, gr, now, f"report:{gr.reports}", state=None, report=text, **_about(release))
    if first:
        announce.note(session, release, "github_waiting", now, key_suffix=f"{gr.id}", waiting=text,
                      **_trail(gr))
        ev = audit.record(session, actor=f"github:{gr.sender}", action="github_deployment_waiting",
                          release_id=release.id, at=now, after={**_trail(gr), "waiting": text})
        announce.approval_update(session, release, now, ev)
    if release.state == APPROVED and now < release.start_at:
        outbox.enqueue(session, key=f"github-recheck:{release.id}:window:{int(release.start_at.timestamp())}",
                       kind=GITHUB_RECHECK, release_id=release.id, payload={"release_id": release.id}, at=now,
                       due_at=release.start_at)
    return Outcome(text, release, data={"waiting": True})


def _trail(gr: GithubRequest) -> dict[str, Any]:
    return {"github_deployment": gr.deployment_id, "repo": gr.repo, "github_environment": gr.environment,
            "sender": gr.sender, "run_url": gr.run_url, "sha": gr.sha, "ref": gr.ref}
