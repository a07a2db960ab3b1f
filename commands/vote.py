"""Go / No-go votes, with separation of duties enforced at the point of decision.

Rules (QMS §3.4, §3.6):
- the requester never votes on their own release;
- a Go fills a role the release still needs, held by the voter;
- one person fills one role per release (one vote row per person per round);
- a No-go from a holder of a required role blocks until that voter withdraws it.
The deployer rule is enforced at deployment, against the votes recorded here.
"""
from __future__ import annotations

from typing import Mapping

from sqlalchemy.engine import Engine

from commands import announce
from commands.approval import GO, NOGO, WITHDRAWN, ApprovalStatus
from commands.clock import Clock
from commands.errors import InputError
from commands.outcome import Actor, Outcome
from commands.policy import ROLES
from commands.release import (LIVE_STATES, Refused, refuse, approval_of, current_votes, load, settle, snapshot,
                              touch)
from storage import audit
from storage.db import transaction
from storage.models import Release, Vote


def choose_role(required: Mapping[str, int], st: ApprovalStatus, actor: Actor, decision: str,
                role_hint: str | None) -> str:
    """The role this vote fills, or a refusal saying why none fits."""
    held = [r for r in required if r in actor.roles]
    unknown = [r for r in required if r in actor.unresolved]
    if unknown and (not held or decision == GO and all(st.role(r).filled for r in held)):
        # Not a refusal: we could not check. Nothing is written; trying again will work.
        raise InputError(f"Slack could not confirm whether you hold {', '.join(unknown)} right now; nothing was "
                         "recorded. Please try again in a minute.")
    if not held:
        needed = ", ".join(f"{r} ×{n}" for r, n in required.items())
        raise Refused(f"This release needs {needed}; you hold none of those roles.", "no_required_role")
    if role_hint:
        if role_hint in actor.unresolved and role_hint not in actor.roles:
            raise InputError(f"Slack could not confirm whether you hold {role_hint} right now; nothing was "
                             "recorded. Please try again in a minute.")
        if role_hint not in required:
            raise Refused(f"{role_hint} is not a role this release needs.", "role_not_required")
        if role_hint not in actor.roles:
            raise Refused(f"You do not hold the {role_hint} role.", "role_not_held")
        held = [role_hint]
    if decision == NOGO:
        return held[0]
    open_roles = [r for r in held if (s := st.role(r)) is not None and not s.filled]
    if not open_roles:
        taken = ", ".join(f"{r} ({', '.join(st.role(r).goes)})" for r in held)
        raise Refused(f"Your roles are already filled by other people: {taken}.", "role_filled")
    return open_roles[0]


def cast_vote(db: Engine, actor: Actor, release_id: int, decision: str, clock: Clock,
              note: str | None = None, role_hint: str | None = None) -> Outcome:
    note = (note or "").strip() or None
    if decision == NOGO and not note:
        raise InputError("a No-go needs a reason", field="reason", form='/release nogo REL-12 reason="…"')
    if role_hint and role_hint not in ROLES:
        raise InputError(f"'{role_hint}' is not a role; roles are {', '.join(ROLES)}", field="role")
    now = clock.now()
    with transaction(db) as session:
        release = load(session, release_id, lock=True)
        mine = next((v for v in current_votes(session, release) if v.voter_id == actor.user_id), None)
        if mine and mine.decision == decision:
            # A double click or Slack's retried delivery: the vote stands once.
            return Outcome(f"Your {_word(decision)} on {release.ref} as {mine.role} is already recorded.", release)
        try:
            _check_can_vote(release, actor)
            st = approval_of(session, release)
            if mine and mine.decision == GO and decision == NOGO:
                role = mine.role  # changing one's mind keeps the seat
            else:
                role = choose_role(release.required_roles, st, actor, decision, role_hint)
        except Refused as exc:
            return refuse(session, release, actor.user_id, "vote", exc, now, {"decision": decision})
        before = snapshot(release) | {"vote": _vote_dict(mine)}
        if mine is None:
            mine = Vote(release_id=release.id, round=release.round, voter_id=actor.user_id, role=role,
                        decision=decision, note=note, decided_at=now)
            session.add(mine)
        else:
            mine.role, mine.decision, mine.note, mine.decided_at = role, decision, note, now
        session.flush()
        touch(release, now)
        ev = audit.record(session, actor=actor.user_id, action=f"vote_{decision}", release_id=release.id, at=now,
                          before=before, after=snapshot(release) | {"vote": _vote_dict(mine)}, reason=note)
        announce.approval_update(session, release, now, ev)
        moved = settle(session, release, actor.user_id, now)
    msg = f"Your {_word(decision)} on {release.ref} is recorded as {role}."
    if moved == "approved":
        msg += f" {release.ref} is now approved."
    elif decision == NOGO:
        msg += f" {release.ref} is blocked until you withdraw it (/release withdraw {release.ref})."
    return Outcome(msg, release, changed=True, data={"role": role, "moved": moved})


def withdraw_vote(db: Engine, actor: Actor, release_id: int, clock: Clock) -> Outcome:
    now = clock.now()
    with transaction(db) as session:
        release = load(session, release_id, lock=True)
        mine = next((v for v in current_votes(session, release) if v.voter_id == actor.user_id), None)
        if mine is None or mine.decision == WITHDRAWN:
            return Outcome(f"You have no vote on {release.ref} to withdraw.", release)
        try:
            if release.state not in LIVE_STATES:
                raise Refused(f"{release.ref} is {release.state}; its votes are final.", "not_live")
        except Refused as exc:
            return refuse(session, release, actor.user_id, "withdraw", exc, now)
        before = snapshot(release) | {"vote": _vote_dict(mine)}
        mine.decision, mine.decided_at = WITHDRAWN, now
        session.flush()
        touch(release, now)
        ev = audit.record(session, actor=actor.user_id, action="vote_withdrawn", release_id=release.id, at=now,
                          before=before, after=snapshot(release) | {"vote": _vote_dict(mine)})
        announce.approval_update(session, release, now, ev)
        settle(session, release, actor.user_id, now)
    return Outcome(f"Your vote on {release.ref} is withdrawn.", release, changed=True)


def _check_can_vote(release: Release, actor: Actor) -> None:
    if release.state not in LIVE_STATES:
        raise Refused(f"{release.ref} is {release.state}; it takes no more votes.", "not_live")
    if actor.user_id == release.requester_id:
        raise Refused(f"You requested {release.ref}, so you cannot vote on it: the requester never approves "
                      "their own release.", "requester")


def _word(decision: str) -> str:
    return {GO: "Go", NOGO: "No-go"}.get(decision, decision)


def _vote_dict(v: Vote | None) -> dict | None:
    if v is None:
        return None
    return {"voter": v.voter_id, "role": v.role, "decision": v.decision, "note": v.note, "round": v.round}
