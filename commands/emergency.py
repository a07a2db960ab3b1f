"""Emergency releases (QMS 4.6): the incident they answer, their bridge record and their clock.

Opening: `/release emergency` (or the request form's "responds to a production
incident" answer) makes an emergency release whose window opens now and lasts
the policy's `emergency.window`. Assessment: four items (blast radius, rollback
option, scope confirmed as the minimum, CI passed), each recorded once, from
the command line, the bridge card's buttons or the Pipeline API. Co-approval
follows the assessment: a Go before it is refused (commands.vote), and the
release is approved only once it is complete (commands.release.settle).
The clock starts when the emergency record is opened (the request), which is
the bridge's opening as far as the requester can tell: the channel follows
within seconds, from the outbox.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from commands import announce, bridge
from commands.approval import describe_set
from commands.classification import Answers
from commands.clock import Clock
from commands.decision import Decision, decide
from commands.errors import FieldErrors, InputError, Refused
from commands.outcome import Actor, Outcome
from commands.policy import Policy
from commands.request import Draft
from commands.states import LIVE_STATES
from commands.usage import USAGE
from storage import audit
from storage.models import Emergency, Release

DEFAULT_VERSION = "hotfix"  # an emergency fix often has no release number yet; the pipeline records the artefact
_YES, _NO = {"yes", "y", "true", "1"}, {"no", "n", "false", "0"}

# (item, what people read, the command-line field and the value it takes; None: a short text)
ITEMS: tuple[tuple[str, str, str, str | None], ...] = (
    ("blast_radius", "blast radius", "blast_radius", None),
    ("rollback", "rollback option", "rollback", None),
    ("scope", "scope confirmed as the minimum needed", "scope", "confirmed"),
    ("ci", "automated CI checks passed", "ci", "passed"),
)
ITEM_NAMES = tuple(i[0] for i in ITEMS)
_TEXT_LIMIT = 2000


def opened(session: Session, release: Release, actor: str, now: datetime, incident: str,
           security: bool = False, policy: Policy | None = None) -> Emergency:
    """The bridge record of a just-created emergency release, and its bridge queued (same transaction)."""
    targets = policy.emergency if policy is not None else None
    emergency = Emergency(release_id=release.id, incident=incident, security=security, opened_at=now,
                          opened_by=actor, bridge_key=f"bridge:{release.id}",
                          assessment_target_minutes=_minutes(targets.assessment_target) if targets else None,
                          approval_target_minutes=_minutes(targets.approval_target) if targets else None)
    session.add(emergency)
    session.flush()
    audit.record(session, actor=actor, action="emergency_opened", release_id=release.id, at=now,
                 after={"incident": incident, "security": security})
    bridge.request_bridge(session, release, emergency, now)
    return emergency


def of(session: Session, release: Release) -> Emergency | None:
    return session.exec(select(Emergency).where(Emergency.release_id == release.id)).first()


def _minutes(d: timedelta) -> int:
    return int(d.total_seconds() // 60)


def _elapsed(em: Emergency, now: datetime) -> float:
    opened_at = em.opened_at if em.opened_at.tzinfo else em.opened_at.replace(tzinfo=timezone.utc)
    return round((now - opened_at).total_seconds() / 60, 1)


def timing(em: Emergency, now: datetime, target: int | None) -> dict[str, Any]:
    """Minutes since the emergency opened, against its target (audited with the milestone)."""
    minutes = _elapsed(em, now)
    return {"minutes": minutes, "target_minutes": target,
            "within_target": None if target is None else minutes <= target}


def approved(session: Session, em: Emergency, approver_set: str | None, now: datetime) -> dict[str, Any]:
    """Record the co-approval on the bridge record; the approval cycle time (QMS 4.2: < 30 minutes)
    counts to the first approval, so a later re-approval does not reset it."""
    em.approver_set = approver_set
    if em.approved_at is None:
        em.approved_at = now
    session.add(em)
    t = timing(em, em.approved_at, em.approval_target_minutes)
    return {"approval_minutes": t["minutes"], "approval_target_minutes": t["target_minutes"],
            "approval_within_target": t["within_target"]}


def missing_items(em: Emergency) -> list[str]:
    """The assessment items not yet recorded, in words."""
    have = {"blast_radius": em.blast_radius, "rollback": em.rollback_option, "scope": em.scope_confirmed_at,
            "ci": em.ci_passed_at}
    return [label for item, label, _, _ in ITEMS if not have[item]]


def _recorded(em: Emergency, item: str) -> Any:
    return {"blast_radius": em.blast_radius, "rollback": em.rollback_option, "scope": em.scope_confirmed_at,
            "ci": em.ci_passed_at}[item]


def _set(em: Emergency, item: str, value: str | None, who: str, now: datetime) -> None:
    if item == "blast_radius":
        em.blast_radius, em.blast_radius_by = value, who
    elif item == "rollback":
        em.rollback_option, em.rollback_option_by = value, who
    elif item == "scope":
        em.scope_confirmed_at, em.scope_confirmed_by = now, who
    else:
        em.ci_passed_at, em.ci_passed_by = now, who


def assessment_fields(raw: Mapping[str, str | None]) -> dict[str, str | None]:
    """The assessment items given, checked: short texts, scope=confirmed and ci=passed. InputError otherwise."""
    form = USAGE["assess"]
    out: dict[str, str | None] = {}
    for item, _, key, value in ITEMS:
        given = raw.get(key)
        if given is None:
            continue
        given = given.strip()
        if value is None:
            if not given:
                raise InputError(f"{key} needs a short text", field=key, form=form)
            if len(given) > _TEXT_LIMIT:
                raise InputError(f"{key} is too long ({len(given)} characters; at most {_TEXT_LIMIT})", field=key,
                                 form=form)
            out[item] = given
        else:
            if given.lower() != value:
                raise InputError(f"{key} takes only {key}={value}", field=key, form=form)
            out[item] = None
    unknown = sorted(set(raw) - {i[2] for i in ITEMS})
    if unknown:
        raise InputError(f"'{unknown[0]}' is not an assessment item", field=unknown[0], form=form)
    if not out:
        raise InputError("give at least one assessment item", form=form)
    return out


def assess(db: Engine, actor: Actor | str, release_id: int, fields: Mapping[str, str | None], clock: Clock,
           policy: Policy | None = None, *, environments: frozenset[str] | None = None) -> Outcome:
    """Record assessment items (QMS 4.6, Assessment row), each once. `fields` are the command line's
    (blast_radius="…", rollback="…", scope="confirmed", ci="passed"), any subset; the bridge card's
    buttons pass one of them. An item already recorded is left as it is (a double click, a retried
    delivery): the first record stands, and a correction goes into the decision log.
    `environments`: a pipeline's token scope (the Pipeline API); None: any."""
    items = assessment_fields(fields)
    who = actor if isinstance(actor, str) else actor.user_id

    def check(d: Decision) -> Emergency:
        em = of(d.session, d.release)
        if em is None:
            raise InputError(f"{d.release.ref} is not an emergency release; only emergencies are assessed on "
                             "a bridge", form=USAGE["assess"])
        if d.release.state not in LIVE_STATES:
            raise Refused(f"{d.release.ref} is {d.release.state}; its assessment is closed.", "not_live")
        if environments is not None and d.release.environment not in environments:
            raise Refused(f"{who} may report only for {', '.join(sorted(environments))}, not "
                          f"{d.release.environment}.", "pipeline_scope")
        return em

    def replay(d: Decision) -> Outcome | None:
        em = of(d.session, d.release)
        if em is not None and all(_recorded(em, item) for item in items):
            return Outcome(_summary(d.release, em, "Already recorded."), d.release,
                           data={"recorded": [], "assessed": em.assessed_at is not None})
        return None

    def change(d: Decision) -> Outcome:
        em = d.context
        new = [item for item in items if not _recorded(em, item)]
        ev = None
        for item in new:
            _set(em, item, items[item], who, d.now)
            label = next(i[1] for i in ITEMS if i[0] == item)
            ev = d.record("assessment_recorded", before={}, after={"item": item, "value": items[item]},
                          reason=label + (f": {items[item]}" if items[item] else ""))
        if em.assessed_at is None and not missing_items(em):
            em.assessed_at = d.now
            t = timing(em, d.now, em.assessment_target_minutes)
            ev = d.record("assessment_complete", before={}, after={"assessment_" + k: v for k, v in t.items()},
                          reason=f"assessed {t['minutes']} min after the emergency opened"
                                 + (f" (target {t['target_minutes']} min)" if t["target_minutes"] else ""))
        d.session.add(em)
        if ev is not None:
            announce.approval_update(d.session, d.release, d.now, ev)
        return Outcome(_summary(d.release, em, "Recorded."), d.release, changed=True,
                       data={"recorded": new, "assessed": em.assessed_at is not None})

    return decide(db, release_id, who, "assess", clock.now(), check=check, change=change, replay=replay,
                  settle=True)


def _summary(release: Release, em: Emergency, head: str) -> str:
    missing = missing_items(em)
    if not missing:
        return f"{head} The assessment of {release.ref} is complete; co-approval can go ahead."
    return f"{head} {release.ref} still needs: {', '.join(missing)}."


def window_now(draft: Draft, now: datetime, policy: Policy) -> Draft:
    """The request form's "responds to a production incident" answer is the emergency track (QMS 4.6): like
    `/release emergency`, its window opens now for [emergency] window, whatever the form's pickers held
    (Slack's form cannot leave them empty)."""
    return replace(draft, start_at=now.replace(second=0, microsecond=0), duration=policy.emergency.window,
                   note=None)


def open_emergency(db: Engine, actor: Actor, args: Mapping[str, str | None], clock: Clock, policy: Policy,
                   request_key: str | None = None) -> Outcome:
    """`/release emergency service=… incident=… summary=… [version=…] [security=yes]`: an emergency
    release whose window opens now, through the same request path as every release."""
    from commands.release import request_release  # commands.release opens emergencies through this module
    form = USAGE["emergency"]
    get = lambda k: (args.get(k) or "").strip()  # noqa: E731
    if not get("incident"):
        raise InputError("incident is required: " + _INCIDENT, field="incident", form=form)
    security = get("security").lower() or "no"
    if security not in _YES | _NO:
        raise InputError("security takes yes or no", field="security", form=form)
    now = clock.now()
    window = policy.emergency.window
    raw = {"service": get("service"), "version": get("version") or DEFAULT_VERSION, "type": "emergency",
           "start": now.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M"), "tz": "UTC",
           "duration": f"{_minutes(window)}m", "summary": get("summary"), "incident": get("incident"),
           "env": get("env") or None}
    # security=yes is the requester's answer that the fix is security-related (auth, crypto, data
    # handling, network policy): the security role joins every approver set and the bridge.
    answers = Answers(incident=True, sensitive=security in _YES)
    try:
        out = request_release(db, actor, raw, answers, clock, policy, request_key=request_key)
    except FieldErrors as exc:
        raise InputError(f"{exc.field}: {exc.errors[exc.field]}", field=exc.field, form=form) from None
    r = out.release
    if not out.changed:
        return out
    name = channel_name(policy, r)
    where = (f"its bridge is being opened: channel #{name} (or, if Slack will not make it, a thread in the "
             "release channel, saying why)" if policy.emergency.bridge == "channel"
             else "its bridge is being opened as a thread in the release channel")
    sets = r.approver_sets or [r.required_roles]
    msg = (f"{r.ref} is open: emergency {r.service} {r.version} for incident {get('incident')}; "
           f"window now to +{_minutes(window)} min. {where[0].upper() + where[1:]}. Next: the assessment "
           f"(/release assess {r.ref} blast_radius=\"…\" rollback=\"…\" scope=confirmed ci=passed), then "
           f"co-approval by {' or '.join(describe_set(s) for s in sets)}.")
    if out.data.get("flags"):
        # a blackout (executive override, QMS 5.1) or a conflict (release manager) still holds it
        msg += (" Planning checks flagged it, so it cannot be approved until the flags are overridden: "
                + "; ".join(out.data["flags"]) + ".")
    return Outcome(msg, r, changed=True, data=out.data)


_INCIDENT = ("the reference (an id or a URL) of the production incident this fixes, e.g. incident=INC-4211; "
             "QMS 4.6 reserves the emergency track for incident response")


def channel_name(policy: Policy, release: Release) -> str:
    """The bridge channel's name as the policy pattern makes it (the one the bridge is created with)."""
    return bridge.channel_name(policy.emergency.channel_name, release)
