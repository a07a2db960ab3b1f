"""Emergency bridge messages: the pinned card, the thread a fallback bridge lives in, the decision log
and the closing summary. Pure functions of records; user text is escaped; Slack's limits hold."""
from __future__ import annotations

from datetime import timedelta
from typing import Mapping

from commands.bridge import BridgeView, Span
from commands.decision_log import LogLine
from storage.models import Emergency, Release

from bot.messages.common import (BLOCK_LIMIT, TEXT_LIMIT, context, date, esc, mention, plain, section, sections,
                                 shorten, split)
from bot.messages.release import PREVIEW, roles_block

# Action, block and callback ids of the bridge (one place).
ASSESS_SCOPE = "bridge_assess_scope"
ASSESS_CI = "bridge_assess_ci"
ASSESS_FORM = "bridge_assess_form"  # opens the form for blast radius and rollback option
ASSESS_CALLBACK = "bridge_assess"
LOG_ACTION = "bridge_log"
LOG_PAGE_ACTION = "bridge_log_page"
SECTION_ROOM = 2900  # under the 3,000 characters of a section, with room for a heading
_SOURCE = {"decision": ":gear:", "command": ":memo:", "pin": ":pushpin:"}


def who(roles: tuple[str, ...], members: Mapping[str, tuple[str, ...]], requester: str) -> str:
    """Who is on the bridge, as policy names them: people as mentions, user groups as group mentions."""
    def one(m: str) -> str:
        return f"<!subteam^{m}>" if m.startswith("S") else mention(m)
    parts = [f"requester {mention(requester)}"]
    parts += [f"{role}: " + (", ".join(one(m) for m in members.get(role, ())) or "nobody named in policy")
              for role in roles]
    return "; ".join(parts)


def _span(d: timedelta) -> str:
    minutes = int(d.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def _check(label: str, value: str | None, by: str | None) -> str:
    if value is None and by is None:
        return f":white_large_square: {label}"
    return f":white_check_mark: {label}" + (f": {esc(value)}" if value else "") + (f" ({mention(by)})" if by else "")


def card(v: BridgeView, members: Mapping[str, tuple[str, ...]]) -> tuple[str, list[dict]]:
    """The pinned card. Nothing is cut silently: long text goes over several sections, and the fix scope
    (up to 2,000 characters, five times that escaped) is previewed with where to read it whole."""
    r, e = v.release, v.emergency
    text = f"{r.ref} emergency bridge: {r.service} {r.version}, incident {e.incident}"
    state = "closed" if e.closed_at else r.state
    whole = f"(the whole text: `/release show {r.ref}`)"
    head = (f":rotating_light: *Emergency {r.ref}* · *{esc(r.service)}* `{esc(r.version)}` · {state}\n"
            f"*Incident:* {esc(e.incident) or '(none given)'}" + (" · :lock: security-related" if e.security else "")
            + f"\n*Fix scope:* {esc(shorten(r.summary or '', PREVIEW, whole))}")
    opened = e.opened_at  # the emergency opens at the request (QMS 4.6), as its targets count from
    blocks = [*sections(head),
              *sections(f"*On the bridge:* {who(v.roles, members, r.requester_id)}"),
              section(f"*Clock:* opened {date(opened)} ({date(opened, '{ago}')})"
                      + (f"\nassessed {date(e.assessed_at)}" if e.assessed_at else "")
                      + (f"\napproved {date(e.approved_at)}" + (f" by set {esc(e.approver_set)}" if e.approver_set
                                                                 else "") if e.approved_at else "")
                      + (f"\nvalidated {date(e.validated_at)} by {mention(e.validated_by or '')}"
                         if e.validated_at else "")
                      + (f"\nbridge closed {date(e.closed_at)}" if e.closed_at else ""))]
    if e.approved_at is None:
        blocks.extend(roles_block(r, v.status))
    checks = [_check("Blast radius", e.blast_radius, e.blast_radius_by),
              _check("Rollback option", e.rollback_option, e.rollback_option_by),
              _check("Scope confirmed as the minimum needed", None, e.scope_confirmed_by),
              _check("Automated CI checks passed", None, e.ci_passed_by)]
    blocks.extend(sections("*Assessment*\n" + "\n".join(checks)))
    buttons = []
    if e.closed_at is None and e.assessed_at is None:
        if e.blast_radius is None or e.rollback_option is None:
            buttons.append(_button(ASSESS_FORM, "Blast radius / rollback…", r.id))
        if e.scope_confirmed_by is None:
            buttons.append(_button(ASSESS_SCOPE, "Scope confirmed", r.id))
        if e.ci_passed_by is None:
            buttons.append(_button(ASSESS_CI, "CI passed", r.id))
    if v.steps:
        lines = [f"{'✅' if t.done_at else '⏳'} {esc(t.kind.replace('_', ' '))} · {mention(t.owner_id or '')} · "
                 f"due {date(t.due_at)}" + (f" · done {date(t.done_at)}" if t.done_at else "") for t in v.steps]
        blocks.extend(sections("*Deferred steps*\n" + "\n".join(lines)))
    buttons.append(_button(LOG_ACTION, f"Decision log ({v.log_count} entries)" if v.log_count else "Decision log",
                           r.id))
    tail = [{"type": "actions", "block_id": f"bridge:{r.id}", "elements": buttons}]
    if e.bridge_fallback_reason:
        tail.append(context(f"This bridge is a thread because a channel could not be made: "
                            f"{esc(e.bridge_fallback_reason)}"))
    tail.append(context("React with :pushpin: to a message here to put it in the decision log; "
                        f"`/release log {r.ref} text…` adds an entry from anywhere."))
    if len(blocks) + len(tail) > BLOCK_LIMIT:  # Slack takes 50 blocks: say where the rest is, keep the buttons
        blocks = blocks[:BLOCK_LIMIT - len(tail) - 1] + [context(f"The card goes on: `/release show {r.ref}` "
                                                                 "and `/release roles` show the rest.")]
    return esc(text), blocks + tail


def _button(action_id: str, label: str, release_id: int, value: str | None = None) -> dict:
    return {"type": "button", "action_id": action_id, "text": plain(label, 75), "value": value or str(release_id)}


def thread_root(r: Release, e: Emergency, reason: str | None, people: list[str]) -> str:
    """The release-channel message a thread bridge lives under."""
    why = f" A channel could not be made: {esc(reason)}." if reason else ""
    return (f":rotating_light: *{r.ref} emergency bridge* ({esc(r.service)}, incident {esc(e.incident)}): "
            f"this thread.{why} " + " ".join(mention(u) for u in people))[:TEXT_LIMIT]


def link_line(r: Release, e: Emergency) -> str:
    return (f":rotating_light: {r.ref} ({esc(r.service)}) is an emergency, incident {esc(e.incident)}. "
            f"Its bridge: <#{e.bridge_channel}>")


def log_line(line: LogLine) -> str:
    number = f"#{line.entry_id} " if line.entry_id is not None else ""
    fix = f"(corrects #{line.corrects_id}) " if line.corrects_id is not None else ""
    return f"{_SOURCE.get(line.kind, '')} {date(line.at)} {mention(line.actor)} {number}{fix}{esc(line.text)}"


def log_sections(lines: list[LogLine]) -> list[str]:
    """The log as section texts, each under Slack's 3,000 characters; nothing is cut off."""
    chunks, current = [], ""
    for line in (log_line(x) for x in lines):
        # a line longer than a section (a long pinned message, escaped) goes on over the next ones
        for text in split(line, SECTION_ROOM):
            if current and len(current) + len(text) + 1 > SECTION_ROOM:
                chunks.append(current)
                current = ""
            current = f"{current}\n{text}" if current else text
    if current:
        chunks.append(current)
    return chunks


def log_page(ref: str, release_id: int, lines: list[LogLine], page: int = 0, per_page: int = 20) -> list[dict]:
    """One page of the decision log (sections of up to 2,900 characters), with a button to the next."""
    chunks = log_sections(lines) or ["Nothing logged yet."]
    per_page = min(per_page, BLOCK_LIMIT - 3)
    pages = max(1, -(-len(chunks) // per_page))
    page = min(max(page, 0), pages - 1)
    blocks = [section(f"*Decision log of {ref}*" + (f" (page {page + 1} of {pages})" if pages > 1 else ""))]
    blocks += [section(c) for c in chunks[page * per_page:(page + 1) * per_page]]
    if page + 1 < pages:
        blocks.append({"type": "actions", "block_id": f"log:{release_id}:{page + 1}",
                       "elements": [_button(LOG_PAGE_ACTION, "Next page", release_id, f"{release_id}:{page + 1}")]})
    blocks.append(context(f"The whole record as JSON: `releasebot audit {ref}`"))
    return blocks


def closed_summary(r: Release, e: Emergency, spans: list[Span], lines: list[LogLine]) -> tuple[str, list[dict]]:
    steps = []
    for s in spans:
        if s.at is None:
            steps.append(f"• {s.label}: not recorded")
        else:
            steps.append(f"• {s.label} {date(s.at)}" + (f" (+{_span(s.since_previous)})" if s.since_previous
                                                        is not None else ""))
    people = sum(1 for x in lines if x.kind != "decision")
    blocks = [section(f":white_check_mark: *{r.ref} bridge closed* by {mention(e.closed_by or '')} "
                      f"{date(e.closed_at)}\n*Summary:* {esc(e.close_summary or '')}"),
              section("*Timeline*\n" + "\n".join(steps)),
              section(f"*Decision log:* {len(lines)} entries ({len(lines) - people} decisions, {people} added by "
                      f"people). `/release show {r.ref}` shows it whole.")]
    room = BLOCK_LIMIT - len(blocks) - 1
    chunks = log_sections(lines)
    blocks += [section(c) for c in chunks[:room]]
    if len(chunks) > room:
        blocks.append(context(f"The rest of the log: `releasebot audit {r.ref}`"))
    return esc(f"{r.ref} bridge closed: {e.close_summary or ''}"), blocks


def assess_modal(r: Release, e: Emergency, channel_id: str) -> dict:
    """Blast radius and rollback option, the two assessment items that are text."""
    import json

    def field(block_id: str, label: str, value: str | None) -> dict:
        element = {"type": "plain_text_input", "action_id": block_id, "multiline": True, "max_length": 2000}
        if value:
            element["initial_value"] = value[:2000]
        return {"type": "input", "block_id": block_id, "label": plain(label), "element": element, "optional": True}
    return {"type": "modal", "callback_id": ASSESS_CALLBACK, "title": plain(f"Assess {r.ref}", 24),
            "submit": plain("Record"), "close": plain("Cancel"),
            "private_metadata": json.dumps({"release": r.id, "channel": channel_id}),
            "blocks": [field("blast_radius", "Blast radius", e.blast_radius),
                       field("rollback", "Rollback option", e.rollback_option)]}


def record_blocks(r: Release, e: Emergency, lines: list[LogLine], room: int) -> list[dict]:
    """The emergency part of `/release show`: where the bridge is, and as much of the log as fits in `room`
    blocks; the rest is one click (the card's Decision log button) or the CLI away, never cut silently."""
    where = (f"<#{e.bridge_channel}>" if e.bridge_kind == "channel" and e.bridge_channel
             else "a thread in the release channel" if e.bridge_kind == "thread" else "being opened")
    head = (f"*Emergency* · incident {esc(e.incident) or '(none given)'} · bridge: {where} · opened {date(e.opened_at)}"
            + (f" · closed {date(e.closed_at)}: {esc(e.close_summary or '')}" if e.closed_at else ""))
    chunks = log_sections(lines) or ["Nothing logged yet."]
    blocks = sections(head)  # an incident of 500 characters and a long close summary, whole
    room = max(room - len(blocks) - 1, 1)
    blocks += [section(("*Decision log*\n" if i == 0 else "") + c) for i, c in enumerate(chunks[:room])]
    if len(chunks) > room:
        blocks.append(context(f"The decision log goes on: the bridge card's *Decision log* button pages through it, "
                              f"and `releasebot audit {r.ref}` prints all of it."))
    return blocks
