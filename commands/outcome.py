"""What a use case hands back: what changed, and what to tell the person who acted."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storage.models import Release


@dataclass(frozen=True)
class Actor:
    user_id: str
    roles: frozenset[str] = frozenset()
    # roles Slack could not confirm or deny just now (a user group lookup failed)
    unresolved: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Outcome:
    message: str  # plain text for the actor; the bot escapes it
    release: Release | None = None
    changed: bool = False  # something was committed (and may have queued announcements)
    refused: bool = False
    data: dict[str, Any] = field(default_factory=dict)
