"""The App Home tab: one view drawn from commands.home.HomeView, within Slack's 100 blocks.

Pure: records in, a `views.publish` view out. Each list shows its first few rows and ends with
"and N more" and where to see them, never cutting silently. The buttons are the channel's own
(Go / No-go on the approval message, Start deployment) plus Show, which sends the release's record."""
from __future__ import annotations

from commands.home import (BlackoutItem, BlockedItem, Brief, Counted, DeployItem, HomeView, NCItem, TaskItem,
                           VoteItem)

from bot.home_metrics import WeekMetrics
from bot.messages.aftercare import START_DEPLOY
from bot.messages.common import context, date, esc, mention, plain, section, sections, shorten
from bot.messages.release import GO_ACTION, NOGO_ACTION

VIEW_BLOCKS = 100  # Slack's limit for a Home tab (and a modal)
SHOW_ACTION = "home_show"  # value: "<release id>": the release's record, sent to whoever clicks
# How many rows of each list the tab shows; the rest are counted. With every role, the tab stays near
# 70 blocks however many releases there are (tests/unit/test_home_view.py).
SHOWN = {"to_vote": 5, "cannot_vote": 8, "to_deploy": 5, "blocked": 5, "tasks": 10, "nonconformances": 8,
         "mine": 8}
TEXT_PREVIEW = 200  # characters of a free text (a flag's detail, a No-go's reason) on the tab


def button(text: str, action_id: str, value: str, style: str | None = None) -> dict:
    b = {"type": "button", "action_id": action_id, "value": value, "text": plain(text, 75)}
    return b | ({"style": style} if style else {})


def header(text: str) -> dict:
    return {"type": "header", "text": plain(text, 150)}


def more_line(n: int, where: str) -> list[dict]:
    return [context(f"… and {n} more — {where}")] if n > 0 else []


def release_line(r: Brief) -> str:
    return (f"*{r.ref}* {esc(shorten(r.service, 80, '…'))} `{esc(shorten(r.version, 60, '…'))}` "
            f"{r.effective_type} · {r.state} · {date(r.start_at)}")


def show_button(r: Brief) -> dict:
    return button("Show", SHOW_ACTION, str(r.id))


def home_view(v: HomeView, metrics: WeekMetrics | None = None) -> dict:
    blocks = [header("releasebot"), context(_whoami(v))]
    if v.approver:
        blocks += [{"type": "divider"}, *_to_vote(v.to_vote), *_cannot_vote(v.cannot_vote)]
    if v.deployer:
        blocks += [{"type": "divider"}, *_to_deploy(v.to_deploy)]
    if v.release_manager:
        blocks += [{"type": "divider"}, *_blocked(v.blocked), *_tasks(v.tasks), *_ncs(v.nonconformances),
                   *_metrics(metrics)]
    blocks += [{"type": "divider"}, *_mine(v.mine), *_blackouts(v.blackouts)]
    return {"type": "home", "blocks": fit(blocks)}


def fit(blocks: list[dict]) -> list[dict]:
    """The last guard of the 100-block limit (the lists' own caps keep well under it): say what is left out."""
    if len(blocks) <= VIEW_BLOCKS:
        return blocks
    return blocks[:VIEW_BLOCKS - 1] + [context("The Home tab holds 100 blocks and this one needs more; the rest: "
                                               "`/release list`, `/release list mine`.")]


def _whoami(v: HomeView) -> str:
    roles = ", ".join(sorted(v.roles)) or "no role (you can request releases)"
    text = f"{mention(v.user_id)} · your roles: {roles} · as of {date(v.now)}"
    if v.unresolved:
        text += (f" · :warning: Slack could not confirm {', '.join(sorted(v.unresolved))} just now; open the tab "
                 "again in a minute")
    return text


def _to_vote(c: Counted) -> list[dict]:
    out = [header(f"Awaiting your vote ({c.total})")]
    if not c.total:
        return out + [section("Nothing awaits your vote.")]
    for it in c.items[:SHOWN["to_vote"]]:
        it: VoteItem
        r = it.release
        text = f"{release_line(r)}\nStill needs: {esc(it.missing) or 'nobody more'} · your Go fills *{it.role}*"
        if it.flagged:
            text += "\n:warning: a planning flag holds its approval until it is rescheduled or overridden"
        out += [section(text), {"type": "actions", "block_id": f"home:vote:{r.id}",
                                "elements": [button("Go", GO_ACTION, str(r.id), "primary"),
                                             button("No-go", NOGO_ACTION, str(r.id), "danger"), show_button(r)]}]
    shown = min(len(c.items), SHOWN["to_vote"])
    return out + more_line(c.total - shown, "`/release list pending`")


def _cannot_vote(c: Counted) -> list[dict]:
    if not c.total:
        return []
    items = c.items[:SHOWN["cannot_vote"]]
    lines = [f"*{it.release.ref}* {esc(shorten(it.release.service, 80, '…'))}: {esc(it.why_not)}" for it in items]
    return ([header(f"Live releases you cannot vote on ({c.total})"), *sections("\n".join(lines))]
            + more_line(c.total - len(items), "`/release list pending`"))


def _to_deploy(c: Counted) -> list[dict]:
    out = [header(f"Approved, window open or near ({c.total})")]
    if not c.total:
        return out + [section("No approved release has its window open or opening within a day.")]
    for it in c.items[:SHOWN["to_deploy"]]:
        it: DeployItem
        r = it.release
        when = (f"window open now, until {date(r.end_at)}" if it.open_now else f"window opens {date(r.start_at)}")
        text = f"{release_line(r)}\n{when}"
        elements = [show_button(r)]
        if it.voted_as:
            text += f"\nYou voted on it as {it.voted_as}: another deployer runs it (QMS 3.4)."
        else:
            elements.insert(0, button("Start deployment", START_DEPLOY, str(r.id), "primary"))
        out += [section(text), {"type": "actions", "block_id": f"home:deploy:{r.id}", "elements": elements}]
    shown = min(len(c.items), SHOWN["to_deploy"])
    return out + more_line(c.total - shown, "`/release list upcoming`")


def _blocked(c: Counted) -> list[dict]:
    out = [header(f"Blocked releases ({c.total})")]
    if not c.total:
        return out + [section("No live release is blocked.")]
    for it in c.items[:SHOWN["blocked"]]:
        it: BlockedItem
        reasons = "\n".join(f"• {esc(shorten(x, TEXT_PREVIEW, '…'))}" for x in it.reasons[:3])
        if len(it.reasons) > 3:
            reasons += f"\n• … and {len(it.reasons) - 3} more: `/release show {it.release.ref}`"
        out.append(section(f"{release_line(it.release)}\n{reasons}") | {"accessory": show_button(it.release)})
    shown = min(len(c.items), SHOWN["blocked"])
    return out + more_line(c.total - shown, "`/release list pending`")


def _tasks(c: Counted) -> list[dict]:
    out = [header(f"Overdue tasks and deferred steps ({c.total})")]
    if not c.total:
        return out + [section("No task is overdue and no deferred step is open.")]
    lines = []
    for t in c.items[:SHOWN["tasks"]]:
        t: TaskItem
        due = f":red_circle: overdue since {date(t.due_at)}" if t.overdue else f"due {date(t.due_at)}"
        owner = f" · {mention(t.owner_id)}" if t.owner_id and not t.owner_id.startswith("role:") else (
            f" · {esc(t.owner_id[5:])}s" if t.owner_id else "")
        lines.append(f"*{t.release_ref}* {esc(t.label)}{' (deferred step)' if t.deferred else ''}: {due}{owner}")
    shown = min(len(c.items), SHOWN["tasks"])
    return out + sections("\n".join(lines)) + more_line(c.total - shown, "`/release show REL-n` lists a "
                                                                           "release's tasks")


def _ncs(c: Counted) -> list[dict]:
    out = [header(f"Open non-conformances ({c.total})")]
    if not c.total:
        return out + [section("No open non-conformance.")]
    lines = []
    for n in c.items[:SHOWN["nonconformances"]]:
        n: NCItem
        where = f" on {n.release_ref}" if n.release_ref else ""
        due = f" · action due {date(n.due_at)}" if n.due_at else ""
        owner = f" · {mention(n.owner_id)}" if n.owner_id else ""
        lines.append(f"*{n.ref}* {esc(n.kind)}{where} ({esc(n.state)}, {date(n.at)}){due}{owner}: "
                     f"{esc(shorten(n.detail, TEXT_PREVIEW, '…'))}")
    shown = min(len(c.items), SHOWN["nonconformances"])
    return out + sections("\n".join(lines)) + more_line(c.total - shown, "`/release show REL-n` lists a "
                                                                           "release's non-conformances")


def _metrics(m: WeekMetrics | None) -> list[dict]:
    if m is None:
        return []
    out = [header("This week's metrics")]
    if m.unavailable:
        return out + [context(f"{esc(m.unavailable)} ({date(m.start, show='d')} to {date(m.end)})")]
    icon = {True: ":white_check_mark:", False: ":warning:", None: "•"}
    lines = [f"{icon[ln.met]} *{esc(ln.label)}*: {esc(ln.text)}" + (f" (target {esc(ln.target)})" if ln.target else "")
             for ln in m.lines[:20]]
    return out + sections("\n".join(lines) or "No figures this week.") + [
        context(f"From {date(m.start)} to {date(m.end)} · `/release metrics` for the whole report")]


def _mine(c: Counted) -> list[dict]:
    out = [header(f"Your requests ({c.total})")]
    if not c.total:
        return out + [section("You have no open request. `/release request` asks for one.")]
    out += [section(release_line(r)) | {"accessory": show_button(r)} for r in c.items[:SHOWN["mine"]]]
    shown = min(len(c.items), SHOWN["mine"])
    return out + more_line(c.total - shown, "`/release list mine`")


def _blackouts(items: tuple[BlackoutItem, ...]) -> list[dict]:
    out = [header("Next blackouts")]
    if not items:
        return out + [section("No blackout ahead.")]
    lines = [f"*{esc(shorten(b.name, 150, '…'))}* {date(b.start)} → {date(b.end)}" for b in items]
    return out + sections("\n".join(lines)) + [context("`/release blackout list` shows them all")]
