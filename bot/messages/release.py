"""Release messages: the approval message, thread notes, the full record and lists."""
from __future__ import annotations

from commands.approval import ApprovalStatus
from commands.record import ReleaseRecord
from commands.release import APPROVED, CANCELLED, LIVE_STATES
from commands.text import USAGE
from storage.models import Deployment, Release

from bot.messages.common import BLOCK_LIMIT, clip, context, date, esc, mention, section

GO_ACTION, NOGO_ACTION = "vote_go", "vote_nogo"
_STATE_ICON = {"pending": ":hourglass_flowing_sand:", "approved": ":white_check_mark:", "cancelled": ":no_entry_sign:",
               "deploying": ":rocket:", "rolling_back": ":rewind:", "stabilising": ":eyes:",
               "rolled_back": ":leftwards_arrow_with_hook:", "failed": ":x:", "closed": ":lock:"}


def window(r: Release) -> str:
    return f"{date(r.start_at)} → {date(r.end_at, '{time}')} ({r.duration_minutes} min, planned in {esc(r.tz)})"


def type_line(r: Release) -> str:
    line = f"*Type:* {r.effective_type}"
    if r.misclassified:
        if r.misclassification_accepted_by:
            line += (f" (answers derive {r.derived_type}; {mention(r.misclassification_accepted_by)} accepted "
                     f"{r.requested_type}: {esc(r.misclassification_reason or '')})")
        else:
            line += f" :warning: requested {r.requested_type}, answers derive {r.derived_type}: misclassification"
    elif not r.classification_answered:
        line += " (declared by the requester; classification questions not answered)"
    return line


def record_fields(r: Release) -> list[dict]:
    head = (f"*{r.ref}* · *{esc(r.service)}* `{esc(r.version)}` → {esc(r.environment)}\n"
            f"{type_line(r)}\n*Window:* {window(r)}\n*Requested by:* {mention(r.requester_id)}")
    blocks = [section(head), section(f"*Summary*\n{esc(r.summary)}")]
    extras = [(t, v) for t, v in (("Risk and impact", r.risk), ("Rollback plan", r.rollback_plan),
                                  ("Links", r.links)) if v]
    if extras:
        blocks.append(section("\n".join(f"*{t}:* {esc(v)}" for t, v in extras)))
    return blocks


def roles_block(r: Release, st: ApprovalStatus) -> dict:
    lines = []
    if st.alternatives:
        # QMS 3.7: any one complete set approves; say which one did
        done = st.approver_set
        lines.append(f"Approved by the set *{done}*." if done else "Any one of these sets approves:")
        for one in st.sets:
            parts = []
            for name, n in one.items():
                goes = st.role(name).goes
                who = ", ".join(mention(u) for u in goes) or "waiting"
                parts.append(f"*{name}* {min(len(goes), n)}/{n}: {who}")
            icon = ":white_check_mark:" if st.set_complete(one) else ":hourglass_flowing_sand:"
            lines.append(f"{icon} " + " · ".join(parts))
    for role in st.roles if not st.alternatives else ():
        icon = ":white_check_mark:" if role.filled else ":hourglass_flowing_sand:"
        who = ", ".join(mention(u) for u in role.goes) or "waiting"
        lines.append(f"{icon} *{role.role}* {len(role.goes)}/{role.needed}: {who}")
    for v in st.nogos:
        lines.append(f":octagonal_sign: *No-go* from {mention(v.voter_id)} ({v.role}): {esc(v.note or '')}")
    return section(clip("*Required approvals*\n" + "\n".join(lines)))


def deployment_text(d: Deployment) -> str:
    via = f" via {esc(d.pipeline)}" if d.pipeline else ""
    lines = [f"*Deployment:* by {mention(d.deployer_id)}{via}, started {date(d.started_at)}"]
    if d.artifact or d.commit:
        lines.append(f"artifact `{esc(d.artifact or '')}` commit `{esc(d.commit or '')}`")
    if d.rollback_decided_at:
        lines.append(f"rollback decided {date(d.rollback_decided_at)} by {mention(d.rollback_decided_by or '')}")
    if d.finished_at:
        lines.append(f"finished {date(d.finished_at)}: *{esc(d.outcome or '')}*"
                     + (f" ({esc(d.note)})" if d.note else ""))
    if d.restored_at:
        lines.append(f"service restored {date(d.restored_at)}")
    if d.stabilisation_ends_at:
        lines.append(f"stabilisation until {date(d.stabilisation_ends_at)}")
    return "\n".join(lines)


def approval_message(r: Release, st: ApprovalStatus, dep: Deployment | None = None,
                     warnings: list[dict] | None = None) -> tuple[str, list[dict]]:
    state = r.state
    if state == "pending" and st.blocked:
        state = "blocked by No-go"
    text = f"{r.ref} {r.service} {r.version}: {state}"
    blocks = [section(f"{_STATE_ICON.get(r.state, '')} *Release {r.ref}: {state}*"), *record_fields(r),
              *(warnings or []), roles_block(r, st)]
    if dep is not None:
        blocks.append(section(clip(deployment_text(dep))))
    if r.round > 1:
        blocks.append(context(f"Round {r.round}: votes from earlier rounds no longer count, because the version, "
                              "scope or window changed."))
    if r.state in LIVE_STATES:
        elements = [
            {"type": "button", "action_id": GO_ACTION, "text": {"type": "plain_text", "text": "Go"},
             "style": "primary", "value": str(r.id)},
            {"type": "button", "action_id": NOGO_ACTION, "text": {"type": "plain_text", "text": "No-go"},
             "style": "danger", "value": str(r.id)},
        ]
        if r.state == APPROVED:
            elements.append({"type": "button", "action_id": "deploy_start", "value": str(r.id),
                             "text": {"type": "plain_text", "text": "Start deployment"}})
        blocks.append({"type": "actions", "block_id": f"vote:{r.id}", "elements": elements})
    elif r.state == CANCELLED:
        blocks.append(context(f"Cancelled: {esc(r.cancel_reason or '')}"))
    return esc(text), blocks


def record_message(rec: ReleaseRecord) -> list[dict]:
    r = rec.release
    blocks = [section(f"*{r.ref}*: {r.state}"), *record_fields(r), roles_block(r, rec.status)]
    votes = [f"round {v.round}: {mention(v.voter_id)} {v.decision} as {v.role} at {date(v.decided_at)}"
             + (f": {esc(v.note)}" if v.note else "") for v in rec.votes]
    if votes:
        blocks.append(section(clip("*Votes*\n" + "\n".join(votes))))
    if rec.flags:
        lines = []
        for f in rec.flags:
            how = (f"overridden by {mention(f.overridden_by)} at {date(f.overridden_at)}: {esc(f.override_reason or '')}"
                   if f.overridden_at else f"cleared {date(f.cleared_at)}" if f.cleared_at else "open")
            lines.append(f"{esc(f.kind)}: {esc(f.detail)} ({how})")
        blocks.append(section(clip("*Planning checks*\n" + "\n".join(lines))))
    if rec.deployment:
        blocks.append(section(clip(deployment_text(rec.deployment))))
    after = [f"sign-off {s.role}: {mention(s.user_id)} at {date(s.at)}" for s in rec.signoffs]
    after += [f"{t.kind} due {date(t.due_at)}: " + (f"recorded by {mention(t.done_by)} at {date(t.done_at)}"
                                                    if t.done_at else "open") for t in rec.tasks]
    after += [f":warning: non-conformance ({esc(n.kind)}) at {date(n.at)}: {esc(n.detail)}"
              for n in rec.nonconformances]
    if after:
        blocks.append(section(clip("*After deployment*\n" + "\n".join(after))))
    lines = [f"{date(e.at)} {mention(e.actor)} *{esc(e.action)}*" + (f": {esc(e.reason)}" if e.reason else "")
             for e in rec.trail]
    # Long trails are split over sections; past the block limit, point to the full export.
    room = BLOCK_LIMIT - len(blocks) - 2
    chunks, current = [], "*Audit trail*"
    for line in lines:
        if len(current) + len(line) + 1 > 2900:
            chunks.append(current)
            current = ""
        current += "\n" + line
    chunks.append(current)
    blocks.extend(section(c) for c in chunks[:room])
    if len(chunks) > room:
        blocks.append(context(f"Trail shortened; the full record: `releasebot audit {r.ref}`"))
    return blocks


def list_message(releases: list[Release], which: str | None) -> list[dict]:
    title = f"*Releases ({which})*" if which else "*Latest releases*"
    if not releases:
        return [section(f"{title}\nNone.")]
    lines = [f"*{r.ref}* {esc(r.service)} `{esc(r.version)}` {r.effective_type} · {r.state} · {date(r.start_at)}"
             for r in releases]
    return [section(clip(title + "\n" + "\n".join(lines)))]


def help_text() -> str:
    lines = ["*releasebot*: request a release, vote Go/No-go, and keep the audit trail."]
    lines += [f"• `{esc(form)}`" for form in USAGE.values()]
    lines.append("`/release request` with no fields opens a form with the classification questions.")
    return "\n".join(lines)


def error_text(message: str, form: str | None) -> str:
    text = f":warning: {esc(message)}"
    if form:
        text += f"\nThe right form: `{esc(form)}`"
    return text


