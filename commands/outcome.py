"""What a use case hands back: what changed, and what to tell the person who acted."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from commands.errors import CouldNotCheck, Refused
from storage.models import Release


@dataclass(frozen=True)
class Actor:
    user_id: str
    roles: frozenset[str] = frozenset()
    # roles Slack could not confirm or deny just now (a user group lookup failed)
    unresolved: frozenset[str] = frozenset()

    def require(self, roles: Iterable[str], refusal: str, code: str = "wrong_role") -> str:
        """The first of `roles` this person holds.

        Holding none is a refusal (Refused: audited by the caller). Holding none
        that Slack could confirm, while a lookup for one of them failed, is
        "could not check" (CouldNotCheck: nothing written, nothing audited)."""
        roles = tuple(roles)
        held = next((r for r in roles if r in self.roles), None)
        if held is not None:
            return held
        unknown = [r for r in roles if r in self.unresolved]
        if unknown:
            raise CouldNotCheck(could_not_check(unknown))
        raise Refused(refusal, code, roles)


def could_not_check(roles: Iterable[str]) -> str:
    return (f"Slack could not confirm whether you hold {', '.join(roles)} right now; nothing was recorded. "
            "Please try again in a minute.")


@dataclass(frozen=True)
class Outcome:
    message: str  # plain text for the actor; the bot escapes it
    release: Release | None = None
    changed: bool = False  # something was committed (and may have queued announcements)
    refused: bool = False
    data: dict[str, Any] = field(default_factory=dict)


class Reason(str):
    """One reason a control gives, in a person's words, with a code for the code that must tell reasons apart
    (GitHub's gate waits on the two that time or votes fix: commands.github_gate). A plain str everywhere
    else: joined, shown, audited."""

    code: str

    def __new__(cls, text: str, code: str) -> "Reason":
        reason = super().__new__(cls, text)
        reason.code = code
        return reason
