"""Release use cases: request, edit, cancel, accept a misclassification (reading the record: commands.record).

Each takes the acting user, its input and a clock, and writes the change, its
audit event and the announcements it causes in one transaction. Slack is told
later by the delivery loop, from the outbox rows written here.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from sqlalchemy import bindparam
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from calendars.timeparse import zone
from commands import announce, emergency, package, planning, replan
from commands.approval import CastVote, status
from commands.decision import decide
from commands.classification import Answers, Classification, classify, controls, needs_security, track
from commands.clock import Clock
from commands.errors import FieldErrors, InputError, NotFound, Refused, required_reason
from commands.outcome import Actor, Outcome
from commands.policy import Policy
from commands.request import Draft, validate, window_data
from commands.states import APPROVED, CANCELLED, LIVE_STATES, PENDING
from storage import audit
from storage.db import is_postgres, read, write
from storage.models import AuditEvent, Release, ReleaseFlag, Vote


def snapshot(r: Release) -> dict[str, Any]:
    return {
        "service": r.service, "version": r.version, "environment": r.environment,
        "requested_type": r.requested_type, "derived_type": r.derived_type, "effective_type": r.effective_type,
        "misclassified": r.misclassified, "required_roles": dict(r.required_roles),
        "start_at": r.start_at, "end_at": r.end_at, "tz": r.tz, "summary": r.summary, "risk": r.risk,
        "rollback_plan": r.rollback_plan, "links": r.links, "state": r.state, "round": r.round,
    } | ({"approver_sets": [dict(one) for one in r.approver_sets]} if r.approver_sets else {})


# Built once; these run on every vote and every delivery.
_LOAD = select(Release).where(Release.id == bindparam("rid"))
_LOAD_FOR_UPDATE = _LOAD.with_for_update()
_VOTES = (select(Vote).where(Vote.release_id == bindparam("rid"), Vote.round == bindparam("round"))
          .order_by(Vote.id))


def load(session: Session, release_id: int, *, lock: bool = False) -> Release:
    # Decisions on one release are taken one at a time (FOR UPDATE on
    # PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers), so two
    # approvers clicking together cannot both miss, or both announce, the approval.
    query = _LOAD_FOR_UPDATE if lock and is_postgres(session.get_bind()) else _LOAD
    release = session.scalars(query, {"rid": release_id}).first()
    if release is None:
        raise NotFound(f"REL-{release_id} does not exist; /release list shows the releases")
    return release


def current_votes(session: Session, release: Release) -> list[Vote]:
    return list(session.scalars(_VOTES, {"rid": release.id, "round": release.round}))


def approval_of(session: Session, release: Release):
    votes = current_votes(session, release)
    return status(release.required_roles, [CastVote(v.voter_id, v.role, v.decision, v.note) for v in votes],
                  release.approver_sets)


def touch(release: Release, now: datetime) -> None:
    release.revision += 1
    release.updated_at = now


def settle(session: Session, release: Release, actor: str, now: datetime) -> str | None:
    """Move between pending and approved as the votes now say; announce the move once."""
    if release.state not in LIVE_STATES:
        return None
    # Votes alone do not approve a release whose window failed a planning check:
    # it needs a clean window or a written override first.
    st = approval_of(session, release)
    approved = st.approved and not planning.blocking(planning.open_flags(session, release.id))
    em = emergency.of(session, release) if release.effective_type == "emergency" else None
    if approved and em is not None and em.assessed_at is None:
        approved = False  # QMS 4.6: co-approval follows the assessment (votes before it are refused)
    if approved and release.state == PENDING:
        before = snapshot(release)
        release.state = APPROVED
        release.approval_seq += 1
        which = st.approver_set
        extra = emergency.approved(session, em, which, now) if em is not None else {}
        audit.record(session, actor=actor, action="approved", release_id=release.id, at=now,
                     before=before, after=snapshot(release) | {"approver_set": which} | extra,
                     reason=(f"the approver set {which} is complete" if which else "every required role has a Go")
                     + " and no No-go stands")
        announce.note(session, release, "approved", now, key_suffix=str(release.approval_seq),
                      **({"approver_set": which} if which else {}))
        return "approved"
    if not approved and release.state == APPROVED:
        before = snapshot(release)
        release.state = PENDING
        audit.record(session, actor=actor, action="approval_revoked", release_id=release.id, at=now,
                     before=before, after=snapshot(release))
        announce.note(session, release, "approval_revoked", now, key_suffix=str(release.approval_seq))
        return "revoked"
    return None


def recheck(session: Session, release: Release, actor: str, now: datetime, policy: Policy,
            planned_at: datetime | None = None, same_window: bool = False) -> list[planning.Flag]:
    """Run the planning checks for the release's current window and record what they find.

    Lead time counts from when the window was planned: the request, or the
    reschedule (planned_at defaults to now)."""
    flags = planning.check(session, policy, service=release.service, environment=release.environment,
                           release_type=track(release), start=release.start_at, end=release.end_at,
                           requested_at=planned_at or now, exclude=release.id)
    # read before record_flags, which may keep (and rewrite) a blackout flag's row
    had = [{"kind": f.kind, "detail": f.detail} for f in planning.open_flags(session, release.id)]
    planning.record_flags(session, release, flags, now, keep_overrides=same_window)
    if flags or had:
        audit.record(session, actor=actor, action="planning_checked", release_id=release.id, at=now,
                     before={"flags": had},
                     after={"flags": [{"kind": f.kind, "detail": f.detail, "ref": f.ref} for f in flags]},
                     reason="; ".join(f.detail for f in flags) or "window passes every planning check")
    if not same_window and release.revision:
        # The window moved (a new release, revision 0, displaced no one): releases whose conflict
        # flags named it are re-checked, and only cleared.
        replan.release_moved(session, release, actor, now, policy)
    return flags


def _planned_at(session: Session, release: Release) -> datetime:
    """When the current window was planned: the last edit that moved it, or the request."""
    edits = session.scalars(select(AuditEvent).where(AuditEvent.release_id == release.id,
                                                     AuditEvent.action == "edited").order_by(AuditEvent.id.desc()))
    for ev in edits:
        if any(ev.before.get(k) != ev.after.get(k) for k in ("start_at", "end_at")):
            return ev.at
    return release.created_at


def override_flags(db: Engine, actor: Actor, release_id: int, kind: str, reason: str, clock: Clock,
                   policy: Policy) -> Outcome:
    """Accept a flagged window as it is, in writing (QMS §5.1 for blackouts: VP-level approval)."""
    kinds = policy.calendar.OVERRIDE_ROLE
    form = f'/release override REL-12 kind={"|".join(kinds)} reason="…"'
    if kind not in kinds:
        raise InputError(f"'{kind}' is not a flag kind; kinds are {', '.join(kinds)}", field="kind", form=form)
    reason = required_reason(reason, "an override needs a written reason (the business justification)", form)
    needed = kinds[kind]

    def check(d) -> list[ReleaseFlag]:
        _require_live(d.release, "overridden")
        flags = [f for f in planning.blocking(planning.open_flags(d.session, d.release.id)) if f.kind == kind]
        if not flags:
            raise Refused(f"{d.release.ref} has no open {kind} flag to override.", "no_flag")
        actor.require((needed,), f"Overriding a {kind} flag needs the {needed} role"
                      + (" (QMS 5.1: VP-level approval)." if kind == "blackout" else "."), "wrong_role")
        if actor.user_id == d.release.requester_id:
            raise Refused("You requested this release, so you cannot override its checks.", "requester")
        return flags

    def change(d) -> Outcome:
        for f in d.context:
            f.overridden_by, f.override_reason, f.overridden_at = actor.user_id, reason, d.now
        ev = d.record("flag_overridden", before={}, reason=reason,
                      after={"kind": kind, "role": needed, "flags": [f.detail for f in d.context]})
        announce.approval_update(d.session, d.release, d.now, ev)
        return Outcome(f"The {kind} flag on {d.release.ref} is overridden; your reason is recorded.", d.release,
                       changed=True)

    return decide(db, release_id, actor.user_id, "override", clock.now(), check=check, change=change,
                  refusal_detail={"kind": kind}, settle=True)


def schedule_nudge(session: Session, release: Release, now: datetime, policy: Policy) -> None:
    """QMS §4.2 approval SLA: the first nudge of this round of votes; each one sent schedules the next."""
    sla = controls(policy, release).approval_sla
    announce.reminder(session, release, "approval_nudge", now + sla, now, key_suffix=f"{release.round}:1",
                      round=release.round, n=1)


def request_release(db: Engine, actor: Actor, raw: Mapping[str, str | None], answers: Answers | None,
                    clock: Clock, policy: Policy, request_key: str | None = None,
                    lock_wait: float | None = None, locale: str | None = None,
                    from_form: bool = False) -> Outcome:
    """`lock_wait`: storage.db.ACK_WAIT when the caller must answer within Slack's ack; it raises
    storage.db.Busy, having written nothing, if another writer holds the database that long.
    `locale`: the requester's Slack locale, for a start like "12/03".
    `from_form`: the request form; its incident answer opens the window now, as /release emergency does."""
    now = clock.now()
    opens_now = bool(from_form and answers and answers.incident)
    draft = validate(raw, answers, policy, now, locale=locale, allow_past_start=opens_now)
    if opens_now:
        draft = emergency.window_now(draft, now, policy)
    try:
        with write(db, lock_wait=lock_wait) as session:
            if request_key:
                existing = session.exec(select(Release).where(Release.request_key == request_key)).first()
                if existing:
                    return Outcome(f"{existing.ref} was already created from this request.", existing)
            c = classify(policy, draft.answers, draft.requested_type)
            release = _new_release(draft, c, actor, now, request_key)
            session.add(release)
            session.flush()
            # The answers are the requester's, "none" included: a wrong answer is a misclassification with an owner.
            audit.record(session, actor=actor.user_id, action="requested", release_id=release.id, at=now,
                         after={**snapshot(release), "answers": release.answers,
                                "classification_answered": release.classification_answered,
                                "answered_by": actor.user_id})
            if release.misclassified:
                audit.record(session, actor=actor.user_id, action="misclassified", release_id=release.id, at=now,
                             before={"derived_type": release.derived_type},
                             after={"requested_type": release.requested_type,
                                    "effective_type": release.effective_type,
                                    "required_roles": dict(release.required_roles)},
                             reason=f"requested {release.requested_type}'s controls do not include all of the "
                                    f"derived {release.derived_type}'s (alone it would drop {', '.join(c.missing)}); "
                                    "both types' controls apply")
            flags = recheck(session, release, actor.user_id, now, policy)
            announce.approval_message(session, release, now)
            schedule_nudge(session, release, now, policy)
            if release.effective_type == "emergency":
                emergency.opened(session, release, actor.user_id, now, incident=draft.incident or "",
                                 security=needs_security(draft.answers) if draft.answers else False,
                                 policy=policy)
    except IntegrityError:
        # Two deliveries of the same request raced; the other one created it.
        with read(db) as session:
            existing = session.exec(select(Release).where(Release.request_key == request_key)).first()
            if existing is None:
                raise
            return Outcome(f"{existing.ref} was already created from this request.", existing)
    msg = f"{release.ref} requested: {release.service} {release.version} as {release.effective_type}."
    if flags:
        msg += (" Planning checks flagged it, so it cannot be approved until it moves to a clean window or the "
                "flags are overridden: " + "; ".join(f.detail for f in flags) + ".")
    if release.misclassified:
        msg += (f" The answers make it {release.derived_type}; {release.requested_type} alone would drop "
                f"{', '.join(c.missing)}. This is recorded as a misclassification and the controls of both types "
                f"apply unless a release manager accepts it (/release accept {release.ref} reason=…).")
    return Outcome(msg, release, changed=True, data={**window_data(draft), "flags": [f.detail for f in flags]})


def _new_release(d: Draft, c: Classification, actor: Actor, now: datetime, request_key: str | None) -> Release:
    return Release(
        request_key=request_key, service=d.service, version=d.version, environment=d.environment,
        requested_type=c.requested, derived_type=c.derived, effective_type=c.effective,
        classification_answered=d.answers is not None,
        answers=d.answers.as_dict() if d.answers is not None else {},
        misclassified=c.misclassified, required_roles=c.required_roles, approver_sets=c.approver_sets,
        start_at=d.start_at, end_at=d.end_at, tz=d.tz, duration_minutes=int(d.duration.total_seconds() // 60),
        summary=d.summary, risk=d.risk, rollback_plan=d.rollback, links=d.links,
        release_notes=d.notes, runbook=d.runbook,
        requester_id=actor.user_id, state=PENDING, created_at=now, updated_at=now,
    )


def _require_owner_or_manager(release: Release, actor: Actor, what: str) -> None:
    if actor.user_id != release.requester_id:
        # A group Slack could not list is "try again" (CouldNotCheck), never an audited refusal.
        actor.require(("release_manager",), f"Only the requester or a release manager can {what} {release.ref}.",
                      "not_owner")


def _require_live(release: Release, what: str) -> None:
    if release.state not in LIVE_STATES:
        raise Refused(f"{release.ref} is {release.state}; it can no longer be {what}.", "not_live")


def cancel_release(db: Engine, actor: Actor, release_id: int, reason: str, clock: Clock,
                   policy: Policy | None = None) -> Outcome:
    reason = required_reason(reason, "a cancellation needs a reason", '/release cancel REL-12 reason="…"')

    def check(d) -> None:
        _require_owner_or_manager(d.release, actor, "cancel")
        _require_live(d.release, "cancelled")

    def change(d) -> Outcome:
        release = d.release
        release.state, release.cancel_reason = CANCELLED, reason
        ev = d.record("cancelled", reason=reason)
        announce.approval_update(d.session, release, d.now, ev)
        announce.note(d.session, release, "cancelled", d.now)
        # Releases flagged for overlapping this one are re-checked; their conflict flags naming it clear.
        replan.release_moved(d.session, release, actor.user_id, d.now, policy)
        return Outcome(f"{release.ref} is cancelled.", release, changed=True)

    return decide(db, release_id, actor.user_id, "cancel", clock.now(), check=check, change=change)


EDITABLE = ("version", "summary", "start", "tz", "duration", "risk", "links", *package.KEYS)
_EDIT_FORM = '/release edit REL-12 [version=…] [summary="…"] … reason="…"'


def edit_release(db: Engine, actor: Actor, release_id: int, changes: Mapping[str, str | None], clock: Clock,
                 policy: Policy, locale: str | None = None) -> Outcome:
    """Change what was requested. Approvers approved what they saw, so any change to the
    release package starts a new round of votes, and after approval it needs a written reason.
    Type, environment and answers set the controls and are not edited: cancel and request again.
    The documents (notes, runbook, rollback) are not the change approvers approved: setting them
    never starts a new round (commands.package)."""
    changes = dict(changes)
    reason = (changes.pop("reason", None) or "").strip() or None
    docs = package.take(changes) if not set(changes) - set(EDITABLE) else {}
    fixed = sorted(set(changes) - set(EDITABLE))
    if fixed:
        raise InputError(f"'{fixed[0]}' cannot be edited (fields: {', '.join(EDITABLE)}); the type, environment "
                         "and answers set the controls, so to change them cancel the release and request it again",
                         field=fixed[0], form=_EDIT_FORM)
    if not changes and not docs:
        raise InputError("nothing to change", form="/release edit REL-12 version=2.3.2")
    now = clock.now()

    def check(d) -> Draft | None:
        release = d.release
        _require_owner_or_manager(release, actor, "edit")
        _require_live(release, "edited")
        if not changes:
            return None
        raw = {"service": release.service, "version": release.version, "type": release.requested_type,
               "env": release.environment, "start": release.start_at.astimezone(zone(release.tz))
               .strftime("%Y-%m-%d %H:%M"), "tz": release.tz, "duration": f"{release.duration_minutes}m",
               "summary": release.summary, "risk": release.risk, "rollback": release.rollback_plan,
               "links": release.links, **changes}
        try:
            draft = validate(raw, None, policy, now, allow_past_start=not {"start", "tz"} & set(changes),
                             classify=False, locale=locale)
        except FieldErrors as exc:
            raise InputError(f"{exc.field}: {exc.errors[exc.field]}", field=exc.field, form=_EDIT_FORM) from None
        if _package(draft) == _package_of(release):
            return None
        # An InputError, not a refusal: nothing is written, and the person is shown the form.
        if release.state == APPROVED and reason is None:
            raise InputError(f"{release.ref} is approved; an edit after approval needs a written reason "
                             "(reason=\"…\"), and its approvers will vote again", field="reason", form=_EDIT_FORM)
        return draft

    def change(d) -> Outcome:
        release, draft = d.release, d.context
        documents = package.apply(d, docs, actor.user_id)
        if draft is None and documents:
            return Outcome(f"{release.ref}: {', '.join(documents)} recorded. Votes are unaffected: documents are "
                           "not a change of scope.", release, changed=True, data={"documents": documents})
        if draft is None:
            return Outcome(f"{release.ref} already has those values; nothing changed.", release)
        d.before = snapshot(release)  # the documents set above are no part of what the votes were for
        (release.version, release.summary, release.risk, release.links,
         release.start_at, release.end_at, release.tz, release.duration_minutes) = _package(draft)
        changed = sorted(k for k, v in snapshot(release).items() if v != d.before[k])
        votes_cast = bool(current_votes(d.session, release))
        release.round += 1
        if release.state == APPROVED:
            release.state = PENDING
        why = "; ".join(filter(None, [reason, "votes reset: the release changed after votes were cast"
                                      if votes_cast else None])) or None
        ev = d.record("edited", reason=why)
        announce.approval_update(d.session, release, d.now, ev)
        if votes_cast:
            announce.note(d.session, release, "votes_reset", d.now, key_suffix=str(release.round))
        schedule_nudge(d.session, release, d.now, policy)
        if {"start_at", "end_at"} & set(changed):
            recheck(d.session, release, actor.user_id, d.now, policy)
        msg = f"{release.ref} updated ({', '.join(changed)})."
        if votes_cast:
            msg += " Earlier votes no longer count; approvers must vote again."
        moved = {"start_at", "end_at", "tz"} & set(changed)
        return Outcome(msg, release, changed=True, data=window_data(draft) if moved else {})

    return decide(db, release_id, actor.user_id, "edit", now, check=check, change=change)


def _package(d: Draft) -> tuple:
    """What approvers approve, as a draft has it: every editable field."""
    return (d.version, d.summary, d.risk, d.links, d.start_at, d.end_at, d.tz,
            int(d.duration.total_seconds() // 60))


def _package_of(r: Release) -> tuple:
    return (r.version, r.summary, r.risk, r.links, r.start_at, r.end_at, r.tz, r.duration_minutes)


def accept_misclassification(db: Engine, actor: Actor, release_id: int, reason: str, clock: Clock,
                             policy: Policy) -> Outcome:
    """A release manager accepts, in writing, that the requested type's controls suffice: they then apply alone."""
    reason = required_reason(reason, "accepting a misclassification needs a written reason",
                             '/release accept REL-12 reason="…"')

    def check(d) -> None:
        release = d.release
        actor.require(("release_manager",), "Only a release manager can accept a less-controlled release type.",
                      "not_release_manager")
        if actor.user_id == release.requester_id:
            raise Refused("You requested this release, so you cannot accept its classification.", "requester")
        if not release.misclassified or release.misclassification_accepted_by:
            raise Refused(f"{release.ref} has no open misclassification to accept.", "nothing_to_accept")
        _require_live(release, "reclassified")

    def change(d) -> Outcome:
        release = d.release
        release.effective_type = release.requested_type
        release.misclassification_accepted_by, release.misclassification_reason = actor.user_id, reason
        ctl = controls(policy, release)
        release.required_roles = dict(ctl.required_roles)
        release.approver_sets = [dict(one) for one in ctl.approver_sets] or None
        ev = d.record("misclassification_accepted", reason=reason)
        # Another type means another lead time; the window was planned when the release was requested,
        # unless it has been rescheduled since.
        recheck(d.session, release, actor.user_id, d.now, policy, planned_at=_planned_at(d.session, release),
                same_window=True)
        announce.approval_update(d.session, release, d.now, ev)
        return Outcome(f"{release.ref} now follows {release.effective_type} controls alone; your reason is "
                       "recorded.", release, changed=True)

    return decide(db, release_id, actor.user_id, "accept_misclassification", clock.now(), check=check,
                  change=change, settle=True)
