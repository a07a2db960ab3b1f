"""AUDIT_CHANNEL and RELEASEBOT_AUDIT_KEY: where signed audit checkpoints go, and the key that signs them.
Both optional; a key that is set but unusable stops start-up like any other bad setting."""
from __future__ import annotations

import re
from typing import Callable, Optional

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from commands.audit_checkpoint import KEY_FORM, AuditKeyError, fingerprint, load_key

_CHANNEL = re.compile(r"[CG][A-Z0-9]{2,}")


def audit_settings(get: Callable[[str], str], problems: list[str]) -> tuple[Optional[str], Optional[Ed25519PrivateKey]]:
    channel = get("AUDIT_CHANNEL") or None
    if channel and not _CHANNEL.fullmatch(channel):
        problems.append(f"AUDIT_CHANNEL '{channel}' is not a channel id; use the id (C…) of the channel audit "
                        "checkpoints are posted to, found under the channel's name → About")
    key = None
    value = get("RELEASEBOT_AUDIT_KEY")
    if value:
        try:
            key = load_key(value)
        except AuditKeyError as exc:
            problems.append(f"RELEASEBOT_AUDIT_KEY cannot be used ({exc}); set it to {KEY_FORM}")
    return channel, key


def start_up_line(channel: Optional[str], key: Optional[Ed25519PrivateKey], every) -> tuple[bool, str]:
    """(all is well, the one start-up line about audit checkpoints)."""
    hours = int(every.total_seconds() // 3600)
    period = f"every {hours // 24}d" if hours % 24 == 0 else f"every {hours}h"
    if key is None:
        return False, ("audit checkpoints: off (RELEASEBOT_AUDIT_KEY is not set); the audit log is hash-chained, "
                       "but nothing outside the database witnesses its head")
    if channel is None:
        return False, (f"audit checkpoints: signed {period} with key {fingerprint(key)}, kept in the database but "
                       "not posted (AUDIT_CHANNEL is not set)")
    return True, f"audit checkpoints: signed {period} with key {fingerprint(key)}, posted to {channel}"
