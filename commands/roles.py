"""Who holds each role: the policy's users and user groups, groups resolved by a lookup the caller passes in.

The rule (what counts as holding a role, what is empty) lives here; finding a
group's members is Slack's business, so the bot hands in its cached lookup
(bot.roles.RoleDirectory.members) and this module never calls Slack itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from commands.policy import ROLES, Policy


@dataclass(frozen=True)
class Group:
    group_id: str
    # its members as Slack answered; None when the lookup failed (or was not asked for)
    members: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Holders:
    role: str
    users: tuple[str, ...]
    groups: tuple[Group, ...]

    @property
    def people(self) -> frozenset[str]:
        """Everyone known to hold it: named users and the resolved members of its groups."""
        return frozenset(self.users) | {m for g in self.groups for m in (g.members or ())}

    @property
    def unresolved(self) -> bool:
        return any(g.members is None for g in self.groups)

    @property
    def empty(self) -> bool:
        """Nobody can act in this role: no user named, and every group resolved to no one.

        A group whose lookup failed is not counted as empty: it may well have members."""
        return not self.people and not self.unresolved


def holders(policy: Policy, role: str, members_of: Callable[[str], Iterable[str] | None] | None = None) -> Holders:
    """Who holds `role`. `members_of(group_id)` gives a group's members, or None when it could not say."""
    named = policy.role_members(role)
    users = tuple(m for m in named if not m.startswith("S"))
    groups = []
    for g in (m for m in named if m.startswith("S")):
        found = members_of(g) if members_of else None
        groups.append(Group(g, tuple(found) if found is not None else None))
    return Holders(role, users, tuple(groups))


def all_holders(policy: Policy, members_of: Callable[[str], Iterable[str] | None] | None = None) -> list[Holders]:
    """Every role the procedure knows, in the policy's order, held or not."""
    return [holders(policy, role, members_of) for role in ROLES]


def empty_roles(policy: Policy, members_of: Callable[[str], Iterable[str] | None] | None = None) -> list[str]:
    return [h.role for h in all_holders(policy, members_of) if h.empty]
