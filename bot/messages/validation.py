"""Test evidence in Slack: the "Record test result" button on the release's messages and its form (QMS 4.3)."""
from __future__ import annotations

import json

from commands.validation import STATUSES
from commands.validation_policy import PHASES
from storage.models import Release

from bot.messages.common import esc, plain, section

RECORD_ACTION = "evidence_record"  # value: "<release id>"
RECORD_CALLBACK = "evidence_form"
FIELDS = ("phase", "status", "url", "summary", "artifact")


def record_button(r: Release) -> dict:
    return {"type": "button", "action_id": RECORD_ACTION, "value": str(r.id),
            "text": plain("Record test result")}


def _select(block_id: str, label: str, options: tuple[str, ...]) -> dict:
    return {"type": "input", "block_id": block_id, "label": plain(label),
            "element": {"type": "static_select", "action_id": block_id,
                        "options": [{"text": plain(o, 75), "value": o} for o in options]}}


def _text(block_id: str, label: str, optional: bool, placeholder: str) -> dict:
    return {"type": "input", "block_id": block_id, "label": plain(label), "optional": optional,
            "element": {"type": "plain_text_input", "action_id": block_id, "placeholder": plain(placeholder)}}


def record_modal(r: Release, channel_id: str) -> dict:
    return {"type": "modal", "callback_id": RECORD_CALLBACK, "title": plain(f"Test result {r.ref}", 24),
            "submit": plain("Record"), "close": plain("Cancel"),
            "private_metadata": json.dumps({"release": r.id, "channel": channel_id}),
            "blocks": [section(f"*{r.ref}* {esc(r.service)} `{esc(r.version)}`: one test phase's result (QMS 4.3). "
                               "UAT is the product owner's written sign-off."),
                       _select("phase", "Phase", PHASES), _select("status", "Result", STATUSES),
                       _text("url", "Link to the run or report", False, "https://…"),
                       _text("summary", "Summary", True, "e.g. 0 critical, 2 high triaged"),
                       _text("artifact", "Artefact tested", True, "name:version, e.g. payments:2.3.1")]}


def read_record(view: dict) -> dict[str, str]:
    state = view["state"]["values"]
    out = {}
    for f in FIELDS:
        el = (state.get(f) or {}).get(f) or {}
        out[f] = ((el.get("selected_option") or {}).get("value") if "selected_option" in el
                  else el.get("value")) or ""
    return out
