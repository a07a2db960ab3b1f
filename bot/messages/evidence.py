"""The "Evidence" button under `/release show`: its id and value live here (one place for the evidence domain)."""
from __future__ import annotations

from bot.messages.common import plain

EVIDENCE_ACTION = "evidence_packet"  # value: the release id


def evidence_button(release_id: int) -> dict:
    return {"type": "actions", "block_id": f"evidence:{release_id}",
            "elements": [{"type": "button", "action_id": EVIDENCE_ACTION, "value": str(release_id),
                          "text": plain("Evidence")}]}
