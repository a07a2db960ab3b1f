"""Go / No-go votes, with separation of duties enforced at the point of decision.

Rules (QMS §3.4, §3.6):
- the requester never votes on their own release;
- a Go fills a role the release still needs, held by the voter;
- one person fills one role per release (one vote row per person per round);
- a No-go from a holder of a required role blocks until that voter withdraws it.
The deployer rule is enforced at deployment, against the votes recorded here.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

from sqlalchemy.engine import Engine
from sqlmodel import Session

from commands import announce, emergency
from commands.approval import GO, NOGO, WITHDRAWN, ApprovalStatus
from commands.clock import Clock
from commands.decision import Decision, decide
from commands.errors import CouldNotCheck, InputError, Refused
from commands.outcome import Actor, Outcome, could_not_check
from commands.policy import ROLES, Policy
from commands.roles import holders as role_holders
from commands.release import LIVE_STATES, approval_of, current_votes, snapshot
from storage.models import Release, Vote


def choose_role(required: Mapping[str, int], st: ApprovalStatus, actor: Actor, decision: str,
                role_hint: str | None) -> str:
    """The role this vote fills, or a refusal saying why none fits.

    A role Slack could not confirm just now (a user group lookup failed) is CouldNotCheck when it
    matters: no confirmed role fits without it. That is "try again", never an audited refusal."""
    held = [r for r in required if r in actor.roles]
    unknown = [r for r in required if r in actor.unresolved]
    if unknown and (not held or decision == GO and all(st.role(r).filled for r in held)):
        raise CouldNotCheck(could_not_check(unknown))
    if not held:
        needed = ", ".join(f"{r} ×{n}" for r, n in required.items())
        raise Refused(f"This release needs {needed}; you hold none of those roles.", "no_required_role",
                      tuple(required))
    if role_hint:
        if role_hint not in required:
            raise Refused(f"{role_hint} is not a role this release needs.", "role_not_required")
        actor.require([role_hint], f"You do not hold the {role_hint} role.", "role_not_held")
        held = [role_hint]
    if decision == NOGO:
        return held[0]
    # With alternative approver sets, a Go fills a role some set still needs; once one set is
    # complete the release needs no one more.
    still = st.open_roles()
    open_roles = [r for r in held if r in still]
    if not open_roles:
        if st.approver_set:
            raise Refused(f"The approver set {st.approver_set} has already approved this release; no more Go "
                          "is needed.", "role_filled")
        taken = ", ".join(f"{r} ({', '.join(st.role(r).goes)})" for r in held)
        raise Refused(f"Your roles are already filled by other people: {taken}.", "role_filled")
    return open_roles[0]


def _mine(session: Session, release: Release, user_id: str) -> Vote | None:
    return next((v for v in current_votes(session, release) if v.voter_id == user_id), None)


def holders_now(policy: Policy, roles: Iterable[str],
                members_of: Callable[[str], Iterable[str] | None] | None) -> dict[str, list[str]]:
    """Who holds each of `roles` now, for the vote's record (the evidence packet asks who held the role
    then, not today): user ids, groups resolved; a group Slack could not list stays as its S… id."""
    out = {}
    for role in roles:
        h = role_holders(policy, role, members_of)
        out[role] = sorted(h.people) + sorted(g.group_id for g in h.groups if g.members is None)
    return out


def cast_vote(db: Engine, actor: Actor, release_id: int, decision: str, clock: Clock,
              note: str | None = None, role_hint: str | None = None, *, policy: Policy | None = None,
              members_of: Callable[[str], Iterable[str] | None] | None = None) -> Outcome:
    """`policy` and `members_of` (the bot's cached group lookup): recorded with the vote, who held the
    voter's role at this moment and the digest of the policy in force. Looked up before the transaction,
    for the roles the voter holds (the vote fills one of them), so no Slack call runs under the lock."""
    note = (note or "").strip() or None
    held_by = holders_now(policy, actor.roles, members_of) if policy is not None else {}
    digest = policy.digest if policy is not None else None
    if decision == NOGO and not note:
        raise InputError("a No-go needs a reason", field="reason", form='/release nogo REL-12 reason="…"')
    if role_hint and role_hint not in ROLES:
        raise InputError(f"'{role_hint}' is not a role; roles are {', '.join(ROLES)}", field="role")

    def replay(d: Decision) -> Outcome | None:
        mine = d.context = _mine(d.session, d.release, actor.user_id)
        if mine and mine.decision == decision:
            # A double click or Slack's retried delivery: the vote stands once.
            return Outcome(f"Your {_word(decision)} on {d.release.ref} as {mine.role} is already recorded.",
                           d.release)
        return None

    def check(d: Decision) -> tuple[Vote | None, str]:
        mine = d.context
        _check_can_vote(d.release, actor)
        if decision == GO:
            _check_assessed(d.session, d.release)
        if mine and mine.decision == GO and decision == NOGO:
            return mine, mine.role  # changing one's mind keeps the seat
        return mine, choose_role(d.release.required_roles, approval_of(d.session, d.release), actor, decision,
                                 role_hint)

    def change(d: Decision) -> Outcome:
        mine, role = d.context
        before = d.before | {"vote": _vote_dict(mine)}
        if mine is None:
            mine = Vote(release_id=d.release.id, round=d.release.round, voter_id=actor.user_id, role=role,
                        decision=decision, note=note, decided_at=d.now)
            d.session.add(mine)
        else:
            mine.role, mine.decision, mine.note, mine.decided_at = role, decision, note, d.now
        mine.role_holders, mine.policy_hash = held_by.get(role), digest
        d.session.flush()
        ev = d.record(f"vote_{decision}", before=before, after=snapshot(d.release) | {"vote": _vote_dict(mine)},
                      reason=note)
        announce.approval_update(d.session, d.release, d.now, ev)
        return Outcome("", d.release, changed=True, data={"role": role})

    out = decide(db, release_id, actor.user_id, "vote", clock.now(), check=check, change=change, replay=replay,
                 refusal_detail={"decision": decision}, settle=True)
    if not out.changed:
        return out
    ref, role, moved = out.release.ref, out.data["role"], out.data.get("moved")
    msg = f"Your {_word(decision)} on {ref} is recorded as {role}."
    if moved == "approved":
        msg += f" {ref} is now approved."
    elif decision == NOGO:
        msg += f" {ref} is blocked until you withdraw it (/release withdraw {ref})."
    return Outcome(msg, out.release, changed=True, data={"role": role, "moved": moved})


def withdraw_vote(db: Engine, actor: Actor, release_id: int, clock: Clock) -> Outcome:
    def replay(d: Decision) -> Outcome | None:
        mine = d.context = _mine(d.session, d.release, actor.user_id)
        if mine is None or mine.decision == WITHDRAWN:
            return Outcome(f"You have no vote on {d.release.ref} to withdraw.", d.release)
        return None

    def check(d: Decision) -> Vote:
        if d.release.state not in LIVE_STATES:
            raise Refused(f"{d.release.ref} is {d.release.state}; its votes are final.", "not_live")
        return d.context

    def change(d: Decision) -> Outcome:
        mine = d.context
        before = d.before | {"vote": _vote_dict(mine)}
        mine.decision, mine.decided_at = WITHDRAWN, d.now
        d.session.flush()
        ev = d.record("vote_withdrawn", before=before, after=snapshot(d.release) | {"vote": _vote_dict(mine)})
        announce.approval_update(d.session, d.release, d.now, ev)
        return Outcome(f"Your vote on {d.release.ref} is withdrawn.", d.release, changed=True)

    return decide(db, release_id, actor.user_id, "withdraw", clock.now(), check=check, change=change,
                  replay=replay, settle=True)


def _check_can_vote(release: Release, actor: Actor) -> None:
    if release.state not in LIVE_STATES:
        raise Refused(f"{release.ref} is {release.state}; it takes no more votes.", "not_live")
    if actor.user_id == release.requester_id:
        raise Refused(f"You requested {release.ref}, so you cannot vote on it: the requester never approves "
                      "their own release.", "requester")


def _check_assessed(session: Session, release: Release) -> None:
    """QMS 4.6: an emergency is co-approved after its assessment, so a Go before it is refused (audited,
    naming what is missing). A No-go is always heard."""
    if release.effective_type != "emergency":
        return
    _check_assessment(release, emergency.of(session, release))


def _check_assessment(release: Release, em) -> None:
    if release.effective_type == "emergency" and em is not None and em.assessed_at is None:
        missing = emergency.missing_items(em)
        raise Refused(f"{release.ref} is an emergency: co-approval follows the assessment (QMS 4.6), which still "
                      f"needs {', '.join(missing)} (/release assess {release.ref} …).", "assessment_incomplete")


def go_check(release: Release, st: ApprovalStatus, actor: Actor, mine: Vote | None, em) -> tuple[str | None, str]:
    """Could `actor` vote Go on `release` now? (the role it would fill, "") or (None, why not), by the rules
    cast_vote applies, from rows the caller read already (App Home reads them for every live release at once:
    `st` of the current round, the actor's vote in it, the release's Emergency row or None). Writes nothing."""
    if mine is not None and mine.decision == GO:
        return None, f"Your Go on {release.ref} as {mine.role} is already recorded."
    try:
        _check_can_vote(release, actor)
        _check_assessment(release, em)
        return choose_role(release.required_roles, st, actor, GO, None), ""
    except (Refused, CouldNotCheck) as exc:
        return None, exc.message


def _word(decision: str) -> str:
    return {GO: "Go", NOGO: "No-go"}.get(decision, decision)


def _vote_dict(v: Vote | None) -> dict | None:
    if v is None:
        return None
    return {"voter": v.voter_id, "role": v.role, "decision": v.decision, "note": v.note, "round": v.round}
