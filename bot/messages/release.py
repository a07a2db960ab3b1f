"""Release messages: the approval message, thread notes, the full record and lists."""
from __future__ import annotations

from datetime import datetime

from calendars.timeparse import zone
from commands.approval import ApprovalStatus
from commands.record import ReleaseRecord
from commands.release import APPROVED, CANCELLED, LIVE_STATES
from storage.models import Deployment, Release

from bot.messages.common import (BLOCK_LIMIT, TEXT_LIMIT, context, date, esc, mention, more_button, plain, section,
                                 sections, shorten, split)
from bot.messages.evidence import evidence_button
from bot.messages.validation import record_button
from bot.messages.ids import more_value

GO_ACTION, NOGO_ACTION = "vote_go", "vote_nogo"
RESCHEDULE_ACTION = "reschedule_slot"  # value: "<release id>:<slot start, epoch seconds>"
# On the approval message each free text shows this much (before escaping); `show` has all of it.
PREVIEW = 600
LIST_PAGE = 20  # releases a list shows; "More" shows the next ones
RECORD_MESSAGES = 4  # messages `show` sends at most for one record
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


def record_fields(r: Release, whole: bool = True) -> list[dict]:
    """The release's fields. `whole`: every free text in full, over as many sections as it takes
    (`show`); otherwise each is previewed and the message says where the rest is (the approval message)."""
    head = (f"*{r.ref}* · *{esc(r.service)}* `{esc(r.version)}` → {esc(r.environment)}\n"
            f"{type_line(r)}\n*Window:* {window(r)}\n*Requested by:* {mention(r.requester_id)}")
    texts = [(t, v) for t, v in (("Summary", r.summary), ("Risk and impact", r.risk),
                                 ("Rollback plan", r.rollback_plan), ("Links", r.links)) if v]
    rest = f"(the whole text: `/release show {r.ref}`)"
    shown = [(t, v if whole else shorten(v, PREVIEW, rest)) for t, v in texts]
    blocks = sections(head)
    short = "\n".join(f"*{t}:* {esc(v)}" for t, v in shown[1:])
    if whole or len(short) > TEXT_LIMIT:
        for t, v in shown:
            blocks.extend(sections(f"*{t}*\n{esc(v)}"))
    else:
        blocks.extend(sections(f"*{shown[0][0]}*\n{esc(shown[0][1])}") if shown else [])
        if short:
            blocks.append(section(short))
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
    return sections("*Required approvals*\n" + "\n".join(lines))


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
    blocks = [section(f"{_STATE_ICON.get(r.state, '')} *Release {r.ref}: {state}*"),
              *record_fields(r, whole=False), *(warnings or []), *roles_block(r, st)]
    if dep is not None:
        blocks.extend(sections(deployment_text(dep)))
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
        elements.append(record_button(r))  # QMS 4.3: the evidence the gate asks for
        blocks.append({"type": "actions", "block_id": f"vote:{r.id}", "elements": elements})
    elif r.state == CANCELLED:
        blocks.append(context(f"Cancelled: {esc(r.cancel_reason or '')}"))
    return esc(text), blocks


def reschedule_actions(r: Release, slots: list[datetime]) -> list[dict]:
    """A flagged release's next step: one button per free slot, its time on the button in the release's zone
    (button text is plain text, so no <!date^…>; the slot list above it has those)."""
    if not slots or r.state not in LIVE_STATES:
        return []
    tz = zone(r.tz)
    buttons = [{"type": "button", "action_id": RESCHEDULE_ACTION, "value": f"{r.id}:{int(s.timestamp())}",
                "text": plain(f"Reschedule to {s.astimezone(tz):%a %d %b %H:%M %Z}", 75)} for s in slots[:5]]
    return [{"type": "actions", "block_id": f"reschedule:{r.id}", "elements": buttons}]


def record_message(rec: ReleaseRecord) -> list[dict]:
    """The first message of record_messages (the whole of a record that fits one)."""
    return record_messages(rec)[0]


def record_messages(rec: ReleaseRecord) -> list[list[dict]]:
    """The release record for `show`, whole: as many messages of at most 50 blocks as it takes (a record
    with every free text at its longest needs a few). Only an audit trail longer than RECORD_MESSAGES hold
    is left to the full export, and the last message says so."""
    r = rec.release
    blocks = [section(f"*{r.ref}*: {r.state}"), *record_fields(r), *roles_block(r, rec.status)]
    votes = [f"round {v.round}: {mention(v.voter_id)} {v.decision} as {v.role} at {date(v.decided_at)}"
             + (f": {esc(v.note)}" if v.note else "") for v in rec.votes]
    if votes:
        blocks.extend(sections("*Votes*\n" + "\n".join(votes)))
    if rec.flags:
        lines = []
        for f in rec.flags:
            how = (f"overridden by {mention(f.overridden_by)} at {date(f.overridden_at)}: {esc(f.override_reason or '')}"
                   if f.overridden_at else f"cleared {date(f.cleared_at)}" if f.cleared_at else "open")
            lines.append(f"{esc(f.kind)}: {esc(f.detail)} ({how})")
        blocks.extend(sections("*Planning checks*\n" + "\n".join(lines)))
    if rec.deployment:
        blocks.extend(sections(deployment_text(rec.deployment)))
    after = [f"sign-off {s.role}: {mention(s.user_id)} at {date(s.at)}" for s in rec.signoffs]
    after += [f"{t.kind} due {date(t.due_at)}: " + (f"recorded by {mention(t.done_by)} at {date(t.done_at)}"
                                                    if t.done_at else "open") for t in rec.tasks]
    after += [f":warning: non-conformance ({esc(n.kind)}) at {date(n.at)}: {esc(n.detail)}"
              for n in rec.nonconformances]
    if after:
        blocks.extend(sections("*After deployment*\n" + "\n".join(after)))
    if rec.emergency is not None:
        from bot.messages.bridge import record_blocks  # bridge messages build on this module
        blocks += record_blocks(r, rec.emergency, rec.decision_log, room=max(BLOCK_LIMIT - len(blocks), 4))
    lines = [f"{date(e.at)} {mention(e.actor)} *{esc(e.action)}*" + (f": {esc(e.reason)}" if e.reason else "")
             for e in rec.trail]
    # Long trails are split over sections; past what the messages hold, the newest events are left
    # out and the last message says so, and where the whole record is.
    room = max(RECORD_MESSAGES * BLOCK_LIMIT - len(blocks) - 2, 1)  # the note and the Evidence button last
    chunks = split("*Audit trail*\n" + "\n".join(lines))
    blocks.extend(section(c) for c in chunks[:room])
    if len(chunks) > room:
        blocks.append(context(f"The audit trail goes on past what these messages hold; the whole record is in "
                              f"its evidence packet: `/release evidence {r.ref}` (release managers and auditors), "
                              f"or `releasebot audit {r.ref}` (ask the bot's operators)."))
    blocks.append(evidence_button(r.id))  # the whole record as a file, to the DM of whoever clicks
    return [blocks[i:i + BLOCK_LIMIT] for i in range(0, len(blocks), BLOCK_LIMIT)]


def list_message(releases: list[Release], which: str | None, offset: int = 0, more: bool = False) -> list[dict]:
    """One page of a list (at most LIST_PAGE releases from `offset`); `more`: a "More" button shows the next."""
    title = f"*Releases ({which})*" if which else "*Latest releases*"
    if offset:
        title += f" (from no. {offset + 1})"
    if not releases:
        return [section(f"{title}\nNone.")]
    lines = [f"*{r.ref}* {esc(r.service)} `{esc(r.version)}` {r.effective_type} · {r.state} · {date(r.start_at)}"
             for r in releases[:LIST_PAGE]]
    blocks = sections(title + "\n" + "\n".join(lines))
    if more:
        blocks.append(more_button(more_value("releases", which or "latest", offset + LIST_PAGE)))
    return blocks



def error_text(message: str, form: str | None) -> str:
    text = f":warning: {esc(message)}"
    if form:
        text += f"\nThe right form: `{esc(form)}`"
    return text


