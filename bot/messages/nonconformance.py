"""The non-conformance register's messages: its announcement, the list, one NC, its changes and reminders.

Pure functions of records. Every free text is escaped; a long one goes over several sections
(nothing cut off), a long NC over several messages, and a list shows one page and says how many it
leaves out and where the whole register is (the CLI)."""
from __future__ import annotations

from commands.nonconformance_register import Entry, Notice
from commands.policy import Policy
from commands.text import when
from storage.models import NonConformance

from bot.messages.common import BLOCK_LIMIT, context, date, esc, mention, section, sections, shorten

LIST_PAGE = 20  # NCs one list shows; the rest are counted and pointed to
LINE_PREVIEW = 200  # of an NC's detail in a list line (before escaping); `nc show` has all of it
_STATE = {"open": ":red_circle: open", "action_planned": ":large_orange_circle: action planned",
          "actioned": ":large_yellow_circle: actioned", "verified": ":large_green_circle: verified",
          "closed": ":white_check_mark: closed"}
_TITLES = {None: "Open non-conformances", "open": "Open non-conformances", "overdue": "Overdue non-conformances",
           "mine": "Non-conformances you own"}


def _mentions(policy: Policy, roles) -> str:
    from bot.messages.aftercare import role_mentions  # aftercare hands its NC notes to this module
    return role_mentions(policy, roles)


def register_line(payload: dict) -> str:
    """NC-n, its kind, the due date and whether it is a repeat (all in the payload commands/ wrote)."""
    if not payload.get("nc"):
        return ""  # a note queued before the register existed
    line = f"*{esc(payload['nc'])}* · {esc(str(payload.get('kind', '')).replace('_', ' '))}"
    if payload.get("due"):
        line += f" · corrective action due {esc(payload['due'])}"
    if payload.get("repeat_of"):
        line += (f" · :repeat: *repeat* of {esc(payload['repeat_of'])}: a formal corrective action, its root "
                 "cause written before closure")
    return line


def thread_announcement(payload: dict) -> str:
    line = register_line(payload)
    text = f":warning: *Non-conformance (QMS 6.2)*: {esc(payload.get('detail', ''))}"
    return f"{text}\n{line}" if line else text


def channel_announcement(payload: dict, policy: Policy) -> str:
    line = register_line(payload)
    text = (f"{_mentions(policy, payload.get('roles') or ('release_manager',))}\n:warning: *Non-conformance "
            f"(QMS 6.2)* on {esc(payload.get('ref', ''))}: {esc(payload.get('detail', ''))}")
    return f"{text}\n{line}" if line else text


def _line(e: Entry) -> str:
    nc = e.nc
    about = e.release_ref or "no release"
    owner = mention(nc.owner_id) if nc.owner_id else "no owner"
    due = f"due {date(nc.due_at)}" if nc.due_at else "no due date"
    flags = (" :rotating_light: *overdue*" if e.overdue else "") + (" :repeat: repeat" if nc.repeat else "")
    return (f"*{nc.ref}* {_STATE.get(nc.state, esc(nc.state))} · {esc(nc.kind.replace('_', ' '))} · {about} · "
            f"{owner} · {due}{flags}\n{esc(shorten(nc.detail, LINE_PREVIEW, f'(/release nc show {nc.ref})'))}")


def list_message(entries: list[Entry], total: int, which: str | None) -> list[dict]:
    """One page: the first LIST_PAGE, and (when there are more) how many are left out and where they are."""
    title = f"*{_TITLES.get(which, 'Non-conformances')}* ({total})"
    if not entries:
        return [section(f"{title}\nNone.")]
    blocks = [section(title)] + [section(_line(e)) for e in entries[:LIST_PAGE]]
    left = total - min(len(entries), LIST_PAGE)
    if left > 0:
        cli = {"overdue": "releasebot nc list overdue", "mine": "releasebot nc list mine --owner <your member id>"}.get(
            which or "", "releasebot nc list open")
        blocks.append(context(f"{left} more not shown here. The whole list: `{cli}` on the bot's host, or "
                              "`/release nc show NC-n` for one."))
    return blocks


def show_messages(e: Entry) -> list[list[dict]]:
    """The whole NC, in as many messages as it takes (each at most BLOCK_LIMIT blocks)."""
    nc = e.nc
    head = (f"*{nc.ref}* · {_STATE.get(nc.state, esc(nc.state))} · {esc(nc.kind.replace('_', ' '))}\n"
            f"*About:* {e.release_ref or 'no release'}{' · ' + esc(nc.service) if nc.service else ''}\n"
            f"*Detected:* {date(nc.at)} by {mention(nc.reported_by)}\n"
            f"*Corrective action due:* {date(nc.due_at) if nc.due_at else 'no due date'}"
            f"{' :rotating_light: *overdue*' if e.overdue else ''}"
            f"{' (escalated ' + date(nc.escalated_at) + ')' if nc.escalated_at else ''}\n"
            f"*Owner:* {mention(nc.owner_id) if nc.owner_id else 'nobody yet (a release manager plans it)'}")
    if nc.repeat:
        head += (f"\n:repeat: *Repeat* of NC-{nc.repeat_of}: a formal corrective action; the root cause must be "
                 "written before closure")
    blocks = sections(head) + sections(f"*Detail*\n{esc(nc.detail)}")
    for title, value in (("Corrective action", nc.action), ("Root cause", nc.root_cause),
                         ("Evidence of the fix", nc.evidence)):
        if value:
            blocks += sections(f"*{title}*\n{esc(value)}")
    steps = [f"{what} {mention(who)} {date(at)}" for what, who, at in (
        ("planned by", nc.planned_by, nc.planned_at), ("actioned by", nc.actioned_by, nc.actioned_at),
        ("verified by", nc.verified_by, nc.verified_at), ("closed by", nc.closed_by, nc.closed_at)) if who and at]
    if steps:
        blocks.append(context(" · ".join(steps)))
    return [blocks[i:i + BLOCK_LIMIT] for i in range(0, len(blocks), BLOCK_LIMIT)]


_CHANGES = {
    "planned": "{owner}: you own the corrective action of {ref}, due {due}. Record the fix with "
               "`/release nc done {ref} evidence=…`.\n*Action:* {action}",
    "actioned": "{ref}'s corrective action was recorded as done by {by}. A release manager other than the owner "
                "verifies it: `/release nc verify {ref}`.\n*Evidence:* {evidence}",
    "verified": "{ref}'s corrective action was verified by {by}.",
    "closed": ":white_check_mark: {ref} was closed by {by}.",
}


def change_note(payload: dict, nc: NonConformance, policy: Policy) -> tuple[str, list[dict]]:
    event = payload.get("event", "")
    template = _CHANGES.get(event, "{ref}: " + esc(event))
    text = template.format(ref=nc.ref, owner=mention(payload.get("owner", "")), by=mention(payload.get("by", "")),
                           due=esc(payload.get("due", "")), action=esc(payload.get("action", "")),
                           evidence=esc(payload.get("evidence", "")))
    if event == "actioned":
        text = f"{_mentions(policy, ('release_manager',))}\n{text}"
    return text, sections(text)


_REMINDERS = {
    "nc_soon": "The corrective action of {ref} ({kind}) is due {due}. Record it with `/release nc done {ref} "
               "evidence=…`.",
    "nc_due": ":alarm_clock: The corrective action of {ref} ({kind}) is due now ({due}). Record it with "
              "`/release nc done {ref} evidence=…`.",
    "nc_escalation": ":rotating_light: The corrective action of {ref} ({kind}) is overdue: it was due {due} and "
                     "is not yet actioned (QMS 6.2: a documented corrective action within 5 business days). Escalated to the release managers.",
}
_UNOWNED = (" It has no owner yet: a release manager plans it with `/release nc plan {ref} owner=@person "
            "action=\"…\"`.")


def reminder(n: Notice, policy: Policy) -> tuple[str, list[dict]]:
    nc = n.nc
    fields = dict(ref=nc.ref, kind=esc(nc.kind.replace("_", " ")), due=esc(when(nc.due_at, n.tz)) if nc.due_at else "")
    text = _REMINDERS.get(n.what, "{ref}: reminder").format(**fields)
    if not nc.owner_id:
        text += _UNOWNED.format(**fields)
    who = " ".join([*(mention(u) for u in n.users), _mentions(policy, n.roles) if n.roles else ""]).strip()
    return f"{nc.ref}: {text}", sections(f"{who}\n{text}" if who else text)
