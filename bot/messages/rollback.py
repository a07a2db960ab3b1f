"""The form that records how a rollback ended: when it was decided, and when the previous version was confirmed
stable (QMS 4.5), both in the person's own zone, prefilled by commands.rollback's rule."""
from __future__ import annotations

import json
from datetime import datetime

from calendars.timeparse import zone
from commands.rollback import FORM_TIME
from storage.models import Release

from bot.messages.common import context, esc, plain, section

ROLLBACK_FINISH_CALLBACK = "rollback_finish_form"
FIELDS = (("decided", "Rollback decided at"), ("restored", "Previous version confirmed stable at"))


def rollback_modal(r: Release, channel_id: str, decided: datetime, restored: datetime, tz: str, slo: str) -> dict:
    local = {"decided": decided.astimezone(zone(tz)).strftime(FORM_TIME),
             "restored": restored.astimezone(zone(tz)).strftime(FORM_TIME)}
    blocks = [section(f"*{r.ref}* {esc(r.service)} `{esc(r.version)}` rolled back")]
    blocks += [{"type": "input", "block_id": key, "label": plain(label),
                "hint": plain(f"YYYY-MM-DD HH:MM, {tz}"),
                "element": {"type": "plain_text_input", "action_id": key, "initial_value": local[key]}}
               for key, label in FIELDS]
    blocks.append({"type": "input", "block_id": "note", "label": plain("Note"), "optional": True,
                   "element": {"type": "plain_text_input", "action_id": "note", "multiline": True}})
    blocks.append(context(f"The {slo} target (QMS 4.5) runs from the decision to the previous version confirmed "
                          "stable; over it, in production, is a non-conformance."))
    return {"type": "modal", "callback_id": ROLLBACK_FINISH_CALLBACK, "title": plain(f"Rolled back {r.ref}", 24),
            "submit": plain("Record"), "close": plain("Cancel"),
            "private_metadata": json.dumps({"release": r.id, "channel": channel_id, "tz": tz}),
            "blocks": blocks}
