"""The audit checkpoint as posted to AUDIT_CHANNEL: one short section, the signed text in a code block so
Slack neither links nor formats it and a person can copy it whole."""
from __future__ import annotations

SECTION_LIMIT = 3000


def checkpoint_message(text: str) -> tuple[str, list[dict]]:
    """(fallback text, blocks). The text is the checkpoint itself (its hash and base64 never contain `<`,
    `>` or `&`); under 600 characters, far inside a section's 3,000."""
    body = ("Audit log checkpoint: paste this whole into `releasebot audit verify --checkpoint '…'` to prove "
            f"the log still holds it.\n```{text}```")
    return text, [{"type": "section", "text": {"type": "mrkdwn", "text": body[:SECTION_LIMIT]}}]
