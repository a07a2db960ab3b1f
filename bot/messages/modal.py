"""Modals: the release request form and the No-go reason form.

Block ids are the request's field names, so a validation error keyed by field
maps straight onto the block that shows it.
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Mapping

from commands.classification import QUESTIONS, Answers, derive_type
from commands.policy import RELEASE_TYPES, Policy

from bot.messages.common import clip, context, esc, plain
from bot.times import iso_times

REQUEST_CALLBACK, NOGO_CALLBACK, CLASSIFY_ACTION = "release_request", "nogo_reason", "answers"
# where each field's error is shown
ERROR_BLOCK = {"start": "start_date", "flags": "answers"}
_PICKER_START = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}\Z", re.ASCII)


def _text_input(block_id: str, label: str, initial: str | None, *, optional: bool = False, multiline: bool = False,
                placeholder: str | None = None) -> dict:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": block_id, "multiline": multiline}
    if initial:
        element["initial_value"] = initial
    if placeholder:
        element["placeholder"] = plain(placeholder)
    return {"type": "input", "block_id": block_id, "label": plain(label), "optional": optional, "element": element}


def _option(value: str, text: str) -> dict:
    return {"text": plain(text, 75), "value": value}


def picker_start(text: str | None) -> tuple[str, str] | None:
    """("YYYY-MM-DD", "HH:mm") when text is exactly a real date and time the pickers can show, else None:
    Slack refuses the whole form (invalid_arguments) over one bad initial_date or initial_time."""
    text = (text or "").strip()
    if not _PICKER_START.match(text):
        return None
    try:
        datetime.strptime(text, "%Y-%m-%d %H:%M")
    except ValueError:
        return None
    day, time = text.split(" ")
    return day, time


def request_modal(policy: Policy, prefill: Mapping[str, str], answers: Answers, channel_id: str,
                  start_hint: str = "") -> dict:
    """start_hint: what the requester typed as a start and how it was read, shown under the pickers."""
    # It rides in private_metadata too (Slack's limit there: 3,000 characters), so it stays short.
    start_hint = clip(start_hint, 600)
    derived = derive_type(answers)
    checks = [_option(key, question) for key, question, _ in QUESTIONS]
    answer_el: dict[str, Any] = {"type": "checkboxes", "action_id": CLASSIFY_ACTION, "options": checks}
    chosen = [o for o in checks if o["value"] in answers.yes()]
    if chosen:
        answer_el["initial_options"] = chosen
    type_el: dict[str, Any] = {"type": "static_select", "action_id": "type",
                               "options": [_option(t, t) for t in RELEASE_TYPES]}
    if prefill.get("type") in RELEASE_TYPES:
        type_el["initial_option"] = _option(prefill["type"], prefill["type"])
    env = prefill.get("env") or policy.default_environment
    env_el = {"type": "static_select", "action_id": "env", "options": [_option(e, e) for e in policy.environments],
              "initial_option": _option(env, env) if env in policy.environments else None}
    if env_el["initial_option"] is None:
        del env_el["initial_option"]
    date_el: dict[str, Any] = {"type": "datepicker", "action_id": "start_date"}
    time_el: dict[str, Any] = {"type": "timepicker", "action_id": "start_time"}
    start = picker_start(prefill.get("start"))
    if start:
        date_el["initial_date"], time_el["initial_time"] = start
    elif (prefill.get("start") or "").strip() and not start_hint:
        start_hint = f"You typed start \"{prefill['start'].strip()}\"; pick the date and time below."
    blocks = [
        {"type": "input", "block_id": "answers", "optional": True, "dispatch_action": True,
         "label": plain("Classification: tick every answer that is yes"), "element": answer_el},
        context(f"Derived release type: *{derived}*. Nothing ticked is your answer that every question is no. "
                "Another type adds its controls to the derived type's; if it would drop any of them, that is "
                "recorded as a misclassification. Emergency is only for incident response (QMS 4.6)."),
        *([_text_input("incident", "Incident reference (id or URL)", prefill.get("incident"),
                       placeholder="INC-4211")] if answers.incident else []),
        {"type": "input", "block_id": "type", "optional": True,
         "label": plain(f"Release type (blank = {derived})"), "element": type_el},
        _text_input("service", "Service", prefill.get("service"), placeholder="payments"),
        _text_input("version", "Version or artifact reference", prefill.get("version"), placeholder="2.3.1"),
        {"type": "input", "block_id": "env", "label": plain("Environment"), "element": env_el},
        {"type": "input", "block_id": "start_date", "label": plain("Planned start date"), "element": date_el},
        {"type": "input", "block_id": "start_time", "label": plain("Planned start time"), "element": time_el},
        *([context(esc(start_hint))] if start_hint else []),
        _text_input("tz", "Time zone (IANA)", prefill.get("tz") or "UTC", placeholder="Europe/London"),
        _text_input("duration", "Duration", prefill.get("duration") or "60m", placeholder="60m, 2h"),
        _text_input("summary", "Scope / summary", prefill.get("summary"), multiline=True),
        _text_input("risk", "Risk and impact", prefill.get("risk"), optional=True, multiline=True),
        _text_input("rollback", "Rollback plan", prefill.get("rollback"), optional=True, multiline=True),
        _text_input("links", "Links (tickets, PRs)", prefill.get("links"), optional=True),
        # QMS 4.4 step 2: the release package's documents, which the gate asks for (commands.package)
        _text_input("notes", "Release notes (link)", prefill.get("notes"), optional=True, placeholder="https://…"),
        _text_input("runbook", "Deployment runbook (link)", prefill.get("runbook"), optional=True,
                    placeholder="https://…"),
    ]
    return {"type": "modal", "callback_id": REQUEST_CALLBACK, "title": plain("Request a release", 24),
            "submit": plain("Request"), "close": plain("Cancel"), "blocks": blocks,
            "private_metadata": json.dumps({"channel": channel_id, "start_hint": start_hint})}


def read_request(values: Mapping[str, Mapping[str, Any]], fill_type: bool = True) -> tuple[dict[str, str], Answers]:
    """The submitted form as the same raw fields a one-line request has.
    A blank type means the derived one (fill_type) when submitting."""
    def val(block: str) -> Any:  # every element's action_id is its block_id
        return (values.get(block) or {}).get(block) or {}

    raw: dict[str, str] = {}
    for f in ("service", "version", "tz", "duration", "summary", "risk", "rollback", "links", "incident", "notes",
              "runbook"):
        raw[f] = val(f).get("value") or ""
    for f in ("type", "env"):
        raw[f] = (val(f).get("selected_option") or {}).get("value") or ""
    day, time = val("start_date").get("selected_date"), val("start_time").get("selected_time")
    raw["start"] = f"{day} {time}" if day and time else ""
    answers = Answers.from_keys([o["value"] for o in val("answers").get("selected_options") or []])
    if fill_type and not raw["type"]:
        raw["type"] = derive_type(answers)
    return raw, answers


def field_errors(errors: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for f, msg in errors.items():
        block = ERROR_BLOCK.get(f, f)
        # A modal's error is plain text, where <!date^…> does not render: times are ISO 8601 UTC here.
        out.setdefault(block, iso_times(msg)[:150])
    return out


def nogo_modal(release_ref: str, release_id: int, channel_id: str) -> dict:
    return {"type": "modal", "callback_id": NOGO_CALLBACK, "title": plain(f"No-go on {release_ref}", 24),
            "submit": plain("Record No-go"), "close": plain("Cancel"),
            "private_metadata": json.dumps({"release": release_id, "channel": channel_id}),
            "blocks": [_text_input("reason", "Why is this a No-go?", None, multiline=True),
                       context(esc("A No-go blocks the release until you withdraw it."))]}
