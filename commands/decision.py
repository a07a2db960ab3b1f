"""The one shape of a decision on a release, written once.

lock the release -> answer a replay ("already done") -> check the rules ->
on a refusal, audit it and say why -> change -> audit the change -> settle
(pending/approved as the votes now say), all in one transaction, so the
decision and what it announces commit together or not at all.

A rule that cannot be checked right now raises CouldNotCheck (an InputError):
it escapes the transaction, so nothing is written and no refusal is audited.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Generic, TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session

from commands.errors import Refused
from commands.outcome import Outcome
from storage import audit
from storage.db import transaction
from storage.models import AuditEvent, Release

T = TypeVar("T")


@dataclass
class Decision(Generic[T]):
    """What the check and change steps see: the locked release and the moment."""

    session: Session
    release: Release
    who: str  # the audit actor ("U123" or "U123 via pipeline:ci")
    now: datetime
    before: dict[str, Any] = field(default_factory=dict)
    context: T | None = None  # what the check found, for the change

    def record(self, action: str, *, after: dict[str, Any] | None = None, reason: str | None = None,
               before: dict[str, Any] | None = None, touch: bool = True) -> AuditEvent:
        """Audit the change (with the release as it was before it), and bump the release's revision."""
        from commands.release import snapshot, touch as touch_release
        if touch:
            touch_release(self.release, self.now)
        return audit.record(self.session, actor=self.who, action=action, release_id=self.release.id, at=self.now,
                            before=self.before if before is None else before,
                            after=snapshot(self.release) if after is None else after, reason=reason)


def refuse(session: Session, release: Release, who: str, action: str, exc: Refused, now: datetime,
           detail: dict[str, Any] | None = None, data: dict[str, Any] | None = None) -> Outcome:
    """Say no, and keep the refusal in the audit log: an auditor asks who tried what, too."""
    audit.record(session, actor=who, action=f"{action}_refused", release_id=release.id, at=now,
                 after={"code": exc.code, **(detail or {})}, reason=exc.message)
    data = dict(data or {})
    if exc.roles:  # a missing role: the bot names who holds it (bot.messages.roles.holders_note)
        data["needs_roles"] = list(exc.roles)
    return Outcome(exc.message, release, refused=True, data=data)


def decide(db: Engine, release_id: int, who: str, action: str, now: datetime, *,
           check: Callable[[Decision], T],
           change: Callable[[Decision], Outcome],
           replay: Callable[[Decision], Outcome | None] | None = None,
           refusal_detail: dict[str, Any] | None = None,
           settle: bool = False) -> Outcome:
    """Run one decision on one release. `check` raises Refused (audited as `<action>_refused`)
    or returns what `change` needs; `replay` answers a repeat without writing."""
    from commands.release import load, settle as settle_release, snapshot
    with transaction(db) as session:
        release = load(session, release_id, lock=True)
        d: Decision = Decision(session, release, who, now)
        if replay is not None:
            again = replay(d)
            if again is not None:
                return again
        try:
            d.context = check(d)
        except Refused as exc:
            return refuse(session, release, who, action, exc, now, refusal_detail)
        d.before = snapshot(release)
        outcome = change(d)
        if settle:
            moved = settle_release(session, release, who, now)
            if moved:
                outcome = Outcome(outcome.message, outcome.release, outcome.changed, outcome.refused,
                                  {**outcome.data, "moved": moved})
        return outcome
