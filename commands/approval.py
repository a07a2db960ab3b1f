"""Who has said what, and whether that adds up to approval. Pure functions over votes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

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


@dataclass(frozen=True)
class ApprovalStatus:
    roles: tuple[RoleStatus, ...]
    nogos: tuple[CastVote, ...]

    @property
    def approved(self) -> bool:
        return not self.nogos and all(r.filled for r in self.roles)

    @property
    def blocked(self) -> bool:
        return bool(self.nogos)

    def role(self, name: str) -> RoleStatus | None:
        return next((r for r in self.roles if r.role == name), None)

    def missing(self) -> dict[str, int]:
        return {r.role: r.open_seats for r in self.roles if not r.filled}


def status(required: Mapping[str, int], votes: Iterable[CastVote]) -> ApprovalStatus:
    votes = list(votes)
    roles = tuple(RoleStatus(role, n, tuple(v.voter_id for v in votes if v.role == role and v.decision == GO))
                  for role, n in required.items())
    nogos = tuple(v for v in votes if v.decision == NOGO)
    return ApprovalStatus(roles, nogos)
