"""Deployment, outcome, sign-off and reminder messages, and their forms."""
from __future__ import annotations

import json

from commands.deploy import CHECKLIST
from commands.policy import Policy
from commands.reminders import Notice
from storage.models import Release

from bot.github import messages as github_messages
from bot.messages import calendar, nonconformance
from bot.messages.common import context, date, esc, mention, plain, section, sections

START_DEPLOY = "deploy_start"
OUTCOME_ACTION = "deploy_outcome"  # value: "<release id>:<outcome>"
SIGNOFF_ACTION = "signoff"  # value: "<release id>:<role>"
FOLLOWUP_ACTION, RETRO_ACTION = "record_followup", "record_retro"
CHECKLIST_CALLBACK, FOLLOWUP_CALLBACK, RETRO_CALLBACK = "deploy_checklist", "followup_form", "retro_form"
VALIDATE_ACTION, VALIDATE_CALLBACK = "emergency_validate", "emergency_validate_form"  # value: "<release id>"


def role_mentions(policy: Policy, roles) -> str:
    """Mention everyone who holds these roles: users directly, user groups as groups."""
    out = []
    for role in roles:
        for member in policy.role_members(role):
            out.append(f"<!subteam^{member}>" if member.startswith("S") else mention(member))
    return " ".join(dict.fromkeys(out)) or "(nobody holds " + ", ".join(roles) + " in the policy)"


def button(text: str, action_id: str, value: str, style: str | None = None) -> dict:
    b = {"type": "button", "action_id": action_id, "text": plain(text), "value": value}
    if style:
        b["style"] = style
    return b


def actions(block_id: str, *buttons: dict) -> dict:
    return {"type": "actions", "block_id": block_id, "elements": list(buttons)}


THREAD_NOTES = {
    "approved": "{ref} is *approved*: every required role said Go and no No-go stands.",
    "approval_revoked": "{ref} is no longer approved: a No-go, a withdrawn Go or a new planning flag reopened it.",
    "cancelled": "{ref} was cancelled: {reason}",
    "votes_reset": "{ref} changed (version, scope or window). Earlier votes no longer count; please vote again.",
    "deployment_started": ":rocket: {ref} deployment started by {deployer}. Record how it ends below or with "
                          "`/release done {ref} outcome=…`.",
    "rollback_decided": ":rewind: Rollback of {ref} decided by {by}: {why}",
    "deployment_success": ":white_check_mark: {ref} deployed successfully. Stabilisation window running.",
    "deployment_rolled_back": ":leftwards_arrow_with_hook: {ref} rolled back; service restored.",
    "deployment_failed": ":x: {ref} deployment failed.",
    "closed": ":lock: {ref} is closed: every post-deployment sign-off and aftercare record is in, and the release "
              "manager signed off the release record.",
    "nonconformance": ":warning: *Non-conformance (QMS 6.2)*: {detail}",
    "followup_recorded": "The 24-hour follow-up of {ref} was recorded by {by}.",
    "retrospective_recorded": "The retrospective of {ref} was recorded by {by}.",
    "emergency_validated": ":white_check_mark: {ref} validated by {by}: the incident is resolved and no new error "
                           "patterns appeared ({why}). Extended monitoring continues.",
    "deferred_step_recorded": "The {step} of {ref} was recorded by {by}{late}.",
    "test_result": ":test_tube: Test result for {ref} recorded by {by}: {detail}",
    "waiver": ":warning: *Exception:* {by} waived a required item of {ref} (QMS 4.4): {detail}",
    "documents_set": ":page_facing_up: {ref}'s release documents updated by {by}: {detail}",
}


def outcome_buttons(r: Release, state: str = "deploying") -> dict:
    """How the deployment ended; a rollback under way can only end rolled back."""
    if state == "rolling_back":
        return actions(f"outcome:{r.id}", button("Rolled back", OUTCOME_ACTION, f"{r.id}:rolled_back", "primary"))
    return actions(f"outcome:{r.id}", button("Succeeded", OUTCOME_ACTION, f"{r.id}:success", "primary"),
                   button("Rolled back", OUTCOME_ACTION, f"{r.id}:rolled_back"),
                   button("Failed", OUTCOME_ACTION, f"{r.id}:failed", "danger"))


def thread_note(event: str, r: Release, payload: dict) -> tuple[str, list[dict] | None]:
    if event in calendar.REPLAN_NOTES:
        return calendar.replan_note(event, r, payload), None
    if event == "nonconformance":  # with its register entry: NC-n, kind, due date, repeat
        return nonconformance.thread_announcement(payload), None
    if event.startswith("github_"):  # a GitHub deployment waiting on this release, or its answer
        return github_messages.thread_note(event, r.ref, payload), None
    template = THREAD_NOTES.get(event, "{ref}: " + esc(event))
    text = template.format(ref=r.ref, reason=esc(r.cancel_reason or ""),
                           deployer=mention(payload.get("deployer", "")), by=mention(payload.get("by", "")),
                           why=esc(payload.get("reason", "")), detail=esc(payload.get("detail", "")),
                           step=esc(payload.get("step", "")), late=_late(payload.get("late_by_minutes") or 0))
    if event == "approved" and payload.get("approver_set"):
        text = f"{r.ref} is *approved* by the approver set {esc(payload['approver_set'])}; no No-go stands."
    if event == "deployment_started":
        return text, [section(text), outcome_buttons(r)]
    if event == "deployment_success" and r.effective_type == "emergency":
        text += (" On-call confirms the validation (incident resolved, no new error patterns) after the minimum "
                 f"monitoring: the button, or `/release validate {r.ref} note=…`.")
        return text, [section(text), actions(f"validate:{r.id}", button("Confirm validation", VALIDATE_ACTION,
                                                                         str(r.id), "primary"))]
    return text, None


def _late(minutes: int) -> str:
    return f", {minutes // 60}h{minutes % 60:02d}m after its deadline" if minutes else ""


def nonconformance_note(payload: dict, policy: Policy) -> str:
    """To the release channel: a non-conformance, with the release managers mentioned (they own the register)."""
    return nonconformance.channel_announcement(payload, policy)


_REMINDER_TEXT = {
    "approval_nudge": "{ref} is still waiting for approval past its SLA. Still needed: {missing}.",
    "followup": "24 hours since {ref} was deployed: please record the post-deployment validation evidence and "
                "any follow-up actions.",
    "followup_escalation": ":rotating_light: The 24-hour follow-up of {ref} is still open a day after it was due "
                           "({due}). Escalated to the release managers.",
    "retrospective_soon": "The retrospective of {ref} is due {due}.",
    "retrospective_due": ":alarm_clock: The retrospective of {ref} is due now ({due}).",
    "signoff_request": "The stabilisation window of {ref} is over. Post-deployment sign-off needed from: {needed}.",
    "closing_signoff": "Every post-deployment sign-off and aftercare record of {ref} is in: the release manager's "
                       "sign-off closes it (QMS 4.4 step 6).",
    "deferred_soon": "The {step} of emergency {ref} (QMS 4.6 deferred step) is due {due}. Record it with "
                     "`/release step {ref} {key} …`.",
    "deferred_due": ":alarm_clock: The {step} of emergency {ref} is due now ({due}). Still open at its deadline, it "
                    "is a non-conformance; record it with `/release step {ref} {key} …`.",
    "deferred_escalation": ":rotating_light: The {step} of emergency {ref} is overdue (it was due {due}). Escalated "
                           "to the release managers.",
    "stuck_deployment": ":hourglass: {ref} is still {state} past its window (it ended {end}). Record how it ended "
                        "below or with `/release done {ref} outcome=…`.",
    "stuck_escalation": ":rotating_light: {ref} is still {state} past its window (it ended {end}), a grace period "
                        "after its deployer was asked. Escalated to the release managers.",
}


def reminder(n: Notice, policy: Policy) -> tuple[str, list[dict]]:
    r = n.release
    due = n.detail.get("due_at")
    missing = n.detail.get("missing") or {}
    end = n.detail.get("window_end")
    missing_text = n.detail.get("missing_text") or ", ".join(f"{role} ×{count}" for role, count in missing.items())
    text = _REMINDER_TEXT.get(n.what, "{ref}: reminder").format(
        ref=r.ref, due=date(due) if due else "", needed=", ".join(n.detail.get("needed", [])),
        missing=missing_text,
        state=esc(str(n.detail.get("state", "")).replace("_", " ")), end=date(end) if end else "",
        step=esc(n.detail.get("label", "")), key=esc(n.detail.get("step", "")))
    if n.detail.get("assessment_missing"):
        # an emergency: its co-approval waits for the assessment (QMS 4.6), so that comes first
        text = (f"{r.ref} is still waiting for approval past its SLA. First the assessment (QMS 4.6), which "
                f"still needs "
                f"{esc(', '.join(n.detail['assessment_missing']))}: the bridge card's buttons or "
                f"`/release assess {r.ref} …`. Then the approvals: {missing_text}.")
    who = " ".join([*(mention(u) for u in n.users), role_mentions(policy, n.roles) if n.roles else ""]).strip()
    blocks = sections(f"{who}\n{text}" if who else text)
    if n.what.startswith("followup"):
        blocks.append(actions(f"followup:{r.id}", button("Record follow-up", FOLLOWUP_ACTION, str(r.id), "primary")))
    elif n.what.startswith("retrospective"):
        blocks.append(actions(f"retro:{r.id}", button("Record retrospective", RETRO_ACTION, str(r.id), "primary")))
    elif n.what.startswith("stuck_"):
        blocks.append(outcome_buttons(r, n.detail.get("state", "deploying")))
    elif n.what in ("signoff_request", "closing_signoff"):
        blocks.append(actions(f"signoff:{r.id}", *(button(f"Sign off as {role}", SIGNOFF_ACTION, f"{r.id}:{role}")
                                                   for role in n.detail.get("needed", []))))
    return f"{r.ref}: {text}", blocks


PROVENANCE_FIELDS = ("artifact", "commit", "justification")


def _input(block_id: str, label: str, placeholder: str, hint: str, multiline: bool = False) -> dict:
    return {"type": "input", "block_id": block_id, "label": plain(label), "optional": True, "hint": plain(hint),
            "element": {"type": "plain_text_input", "action_id": block_id, "multiline": multiline,
                        "placeholder": plain(placeholder)}}


def checklist_modal(r: Release, channel_id: str) -> dict:
    options = [{"text": plain(label.capitalize(), 75), "value": key} for key, label in CHECKLIST]
    # QMS 4.4: what is deployed (the artefact built from the tagged commit), and since this start is by hand,
    # not the pipeline, why; the gate says which a controlled environment requires
    provenance = [
        _input("artifact", "Artefact", "name:version, e.g. payments:2.3.1", "It must carry the approved version."),
        _input("commit", "Commit", "3f2a9c1", "The commit the artefact was built from."),
        _input("justification", "Why by hand, not the pipeline?", "e.g. the CI runner is down",
               "A manual production deployment needs a written justification and is recorded as manual.", True)]
    return {"type": "modal", "callback_id": CHECKLIST_CALLBACK, "title": plain(f"Deploy {r.ref}", 24),
            "submit": plain("Start deployment"), "close": plain("Cancel"),
            "private_metadata": json.dumps({"release": r.id, "channel": channel_id}),
            "blocks": [section(f"*{esc(r.service)}* `{esc(r.version)}` → {esc(r.environment)}, window "
                               f"{date(r.start_at)} – {date(r.end_at, '{time}')}"),
                       {"type": "input", "block_id": "checklist", "label": plain("Pre-deployment checklist"),
                        "element": {"type": "checkboxes", "action_id": "checklist", "options": options}},
                       *provenance,
                       context("You will be recorded as the deployer. A go/no-go approver of this release cannot "
                               "deploy it.")]}


def task_modal(kind: str, r: Release, channel_id: str) -> dict:
    if kind == "validate":
        callback, title, fields = VALIDATE_CALLBACK, "Emergency validation", (
            ("note", "Incident resolved, no new error patterns: how was it confirmed?"),)
    elif kind == "followup":
        callback, title, fields = FOLLOWUP_CALLBACK, "24-hour follow-up", (
            ("evidence", "Post-deployment validation evidence"), ("actions", "Follow-up actions"))
    else:
        callback, title, fields = RETRO_CALLBACK, "Retrospective", (("notes", "Notes"), ("actions", "Action items"))
    blocks = [{"type": "input", "block_id": key, "label": plain(label), "optional": key == "actions",
               "element": {"type": "plain_text_input", "action_id": key, "multiline": True}} for key, label in fields]
    return {"type": "modal", "callback_id": callback, "title": plain(title, 24), "submit": plain("Record"),
            "close": plain("Cancel"), "private_metadata": json.dumps({"release": r.id, "channel": channel_id}),
            "blocks": [section(f"*{r.ref}* {esc(r.service)} `{esc(r.version)}`"), *blocks]}
