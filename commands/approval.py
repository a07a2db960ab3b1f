"""Who has said what, and whether that adds up to approval. Pure functions over votes.

A release may name alternative approver sets (QMS 3.7 emergency: two CAB members, or a
release manager and an engineering lead): any one complete set approves. Its roles are
then every role some set names, each at its largest count, so a Go fills a role as long
as some set still needs another person in it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

GO, NOGO, WITHDRAWN = "go", "nogo", "withdrawn"


@dataclass(frozen=True)
class CastVote:
    voter_id: str
    role: str
    decision: str
    note: str | None = None


@dataclass(frozen=True)
class RoleStatus:
    role: str
    needed: int
    goes: tuple[str, ...]

    @property
    def filled(self) -> bool:
        return len(self.goes) >= self.needed

    @property
    def open_seats(self) -> int:
        return max(0, self.needed - len(self.goes))


def describe_set(roles: Mapping[str, int]) -> str:
    """One approver set as people read it: "cab ×2" or "release_manager + engineering_lead"."""
    return " + ".join(f"{role} ×{n}" if n > 1 else role for role, n in roles.items())


def union(sets: Sequence[Mapping[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for one in sets:
        for role, n in one.items():
            out[role] = max(out.get(role, 0), n)
    return out


@dataclass(frozen=True)
class ApprovalStatus:
    roles: tuple[RoleStatus, ...]
    nogos: tuple[CastVote, ...]
    sets: tuple[dict[str, int], ...] = ()  # the alternatives; () or one set: every role must be filled

    @property
    def alternatives(self) -> bool:
        return len(self.sets) > 1

    def set_complete(self, one: Mapping[str, int]) -> bool:
        return all(len(self.role(r).goes) >= n for r, n in one.items())

    @property
    def complete_set(self) -> dict[str, int] | None:
        """The first alternative whose every role has its Goes (None without alternatives or when none has)."""
        return next((dict(one) for one in self.sets if self.set_complete(one)), None) if self.alternatives else None

    @property
    def approver_set(self) -> str | None:
        one = self.complete_set
        return describe_set(one) if one else None

    @property
    def approved(self) -> bool:
        if self.nogos:
            return False
        if self.alternatives:
            return self.complete_set is not None
        return all(r.filled for r in self.roles)

    @property
    def blocked(self) -> bool:
        return bool(self.nogos)

    def role(self, name: str) -> RoleStatus | None:
        return next((r for r in self.roles if r.role == name), None)

    def open_roles(self) -> tuple[str, ...]:
        """Roles a Go can still fill: some alternative still needs another person in them (none once one
        set is complete: the release needs nobody more)."""
        if self.alternatives and self.complete_set is not None:
            return ()
        return tuple(r.role for r in self.roles if not r.filled)

    def missing(self) -> dict[str, int]:
        """Open seats: with alternatives, of every set still short (each role at its largest shortfall),
        so a nudge reaches everyone who could complete one."""
        if not self.alternatives:
            return {r.role: r.open_seats for r in self.roles if not r.filled}
        if self.complete_set is not None:
            return {}
        out: dict[str, int] = {}
        for one in self.sets:
            for r, n in one.items():
                short = n - len(self.role(r).goes)
                if short > 0:
                    out[r] = max(out.get(r, 0), short)
        return out

    def missing_text(self) -> str:
        """What is still needed, in words: per alternative when there are several."""
        if not self.alternatives:
            return ", ".join(f"{r} ×{n}" for r, n in self.missing().items())
        parts = []
        for one in self.sets:
            short = {r: n - len(self.role(r).goes) for r, n in one.items() if n > len(self.role(r).goes)}
            parts.append(describe_set(short))
        return " or ".join(parts)


def status(required: Mapping[str, int], votes: Iterable[CastVote],
           sets: Sequence[Mapping[str, int]] | None = None) -> ApprovalStatus:
    """`sets`: the alternative approver sets, when there are several; `required` is then their union."""
    votes = list(votes)
    alternatives = tuple(dict(one) for one in sets or ())
    if len(alternatives) > 1:
        required = union(alternatives)
    roles = tuple(RoleStatus(role, n, tuple(v.voter_id for v in votes if v.role == role and v.decision == GO))
                  for role, n in required.items())
    nogos = tuple(v for v in votes if v.decision == NOGO)
    return ApprovalStatus(roles, nogos, alternatives if len(alternatives) > 1 else ())
