"""The agenda, blackout lists and warnings, and planning flags with the next free slots."""
from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

from commands.agenda import Item
from calendars.recurrence import Occurrence
from storage.models import Blackout, ReleaseFlag

from bot.messages.common import BLOCK_LIMIT, context, date, esc, mention, more_button, section, sections
from bot.messages.ids import more_value

_DAY = "{date_long_pretty}"
BLACKOUT_PAGE = 10  # blackouts a list shows; "More" shows the next ones


def agenda(items: list[Item], days: int, service: str | None, feed_url: str | None) -> list[dict]:
    title = f"*Release calendar: next {days} days*" + (f" for {esc(service)}" if service else "")
    blocks = [section(title)]
    by_day: "OrderedDict[str, tuple[datetime, list[str]]]" = OrderedDict()
    for it in items:
        key = it.start.strftime("%Y-%m-%d")
        first, lines = by_day.setdefault(key, (it.start, []))
        if it.kind == "release":
            r = it.release
            lines.append(f"• {date(r.start_at, '{time}')}–{date(r.end_at, '{time}')} *{r.ref}* {esc(r.service)} "
                         f"`{esc(r.version)}` {r.effective_type} · {r.state}")
        else:
            lines.append(f"• :no_entry: {date(it.start, '{date_short} {time}')}–{date(it.end, '{date_short} {time}')} "
                         f"blackout *{esc(it.name)}*")
    if not by_day:
        blocks.append(section("Nothing scheduled."))
    for first, lines in by_day.values():
        day = sections(f"*{date(first, _DAY)}*\n" + "\n".join(lines))
        if len(blocks) + len(day) > BLOCK_LIMIT - 2:
            blocks.append(context(f"More days than one message holds: from {date(first, _DAY)} on, see the "
                                  "calendar feed, or `/release calendar days=…` with fewer days."))
            break
        blocks.extend(day)
    if feed_url:
        blocks.append(context(f"Subscribe in Google Calendar or Outlook: {feed_url} (this address is yours; "
                              "keep it private)"))
    else:
        blocks.append(context("The calendar feed needs RELEASEBOT_PUBLIC_URL to be set by the bot's operators."))
    return blocks


def blackout_list(rows: list[tuple[Blackout, list[Occurrence]]], status: dict[int, str] | None = None,
                  offset: int = 0) -> list[dict]:
    """One page of the blackouts (BLACKOUT_PAGE from `offset`), with a "More" button when more follow."""
    if not rows:
        return [section("*Blackouts*\nNone. Add one with `/release blackout add …`.")]
    page = rows[offset:offset + BLACKOUT_PAGE]
    title = "*Blackouts*" + (f" (from no. {offset + 1} of {len(rows)})" if offset else
                             f" ({len(rows)})" if len(rows) > BLACKOUT_PAGE else "")
    lines = []
    for b, nxt in page:
        scope = (f"{', '.join(map(esc, b.services)) or 'all services'} · "
                 f"{', '.join(map(esc, b.environments)) or 'all environments'}")
        kind = "subscribed calendar" if b.subscription_id else (f"repeats `{esc(b.rrule)}`" if b.rrule else "one-off")
        upcoming = ", ".join(f"{date(o.start)}–{date(o.end)}" for o in nxt) or "no upcoming occurrence"
        lines.append(f"*{b.id}* {esc(b.name)} ({kind}, {esc(b.tz)}) · {scope}\n    next: {upcoming}")
        if (status or {}).get(b.id):  # a subscribed calendar failing or cut short: a category, never its text
            lines.append(f"    :warning: {esc(status[b.id])}")
    blocks = sections(title + "\n" + "\n".join(lines)) if lines else [section(f"{title}\nNo more.")]
    if offset + BLACKOUT_PAGE < len(rows):
        blocks.append(more_button(more_value("blackouts", "all", offset + BLACKOUT_PAGE)))
    return blocks


def flags_block(flags: list[ReleaseFlag], slots: list[datetime]) -> list[dict]:
    if not flags:
        return []
    lines = []
    for f in flags:
        if f.overridden_at:
            lines.append(f":ballot_box_with_check: ~{esc(f.detail)}~ overridden by {mention(f.overridden_by)}: "
                         f"{esc(f.override_reason or '')}")
        else:
            lines.append(f":warning: {esc(f.detail)}")
    blocking = [f for f in flags if not f.overridden_at]
    text = "*Planning checks*\n" + "\n".join(lines)
    if blocking:
        text += ("\nIt cannot be approved until it is rescheduled into a clean window or overridden "
                 "(`/release override`; blackouts need an executive).")
        if slots:
            text += "\n*Next free slots:* " + ", ".join(date(s) for s in slots)
    return sections(text)


def blackout_warning(detail: dict) -> tuple[str, list[dict]]:
    head = (f":no_entry: Blackout *{esc(detail['name'])}* starts {date(detail['start'])} and runs until "
            f"{date(detail['end'])}.")
    rels = detail.get("releases") or []
    if rels:
        body = "\n".join(f"• *{ref}* {esc(svc)} `{esc(ver)}` → {esc(env)} · {state} · {date(start)}"
                         for ref, svc, ver, env, state, start in rels)
        text = f"{head}\nReleases scheduled inside it:\n{body}"
    else:
        text = f"{head}\nNo release is scheduled inside it."
    # The notification text is shown raw too (push notifications, the channel list): escaped like the blocks.
    blocks = sections(text)
    if len(blocks) > BLOCK_LIMIT:
        blocks = blocks[:BLOCK_LIMIT - 1] + [context("More releases than one message holds: `/release calendar` "
                                                     "lists them all.")]
    return f"Blackout {esc(detail['name'])} starts soon", blocks


def channel_note(payload: dict) -> str:
    if payload.get("event") == "subscription_cut_short":
        return (f":warning: The subscribed calendar *{esc(payload.get('name', ''))}* was cut short: it makes more "
                f"occurrences than the bot keeps (at most {payload.get('limit')}, up to {payload.get('days')} days "
                "ahead), so the rest are not blackouts. Check its repeating events; one that repeats every few "
                "minutes is the usual cause. This is said once.")
    return subscription_failed(payload)


def subscription_failed(payload: dict) -> str:
    copy = ("The last good copy stays in force." if payload.get("has_copy")
            else "No copy has been fetched yet, so its events are not blackouts yet.")
    return (f":warning: The subscribed calendar *{esc(payload.get('name', ''))}* could not be fetched "
            f"({esc(payload.get('error', ''))}). {copy} The bot keeps retrying and will not repeat this warning.")


# Thread notes for a release whose planning checks changed because the calendar changed under it.
REPLAN_NOTES = ("blackout_flagged", "blackout_moved", "blackout_cleared", "blackout_held", "conflict_cleared")


def _when(payload: dict) -> str:
    try:
        start, end = datetime.fromisoformat(payload["start"]), datetime.fromisoformat(payload["end"])
    except (KeyError, TypeError, ValueError):
        return ""
    return f" ({date(start)}–{date(end)})"


def replan_note(event: str, r, payload: dict) -> str:
    name = esc(payload.get("name", ""))
    if event == "blackout_flagged":
        text = (f":no_entry: Blackout *{name}*{_when(payload)} now covers {r.ref}'s window. It is flagged and "
                f"cannot be approved until it moves to a clean window or an executive overrides the flag "
                f"(`/release override {r.ref} kind=blackout reason=…`, QMS 5.1).")
        if payload.get("revoked"):
            text += f" {r.ref} is no longer approved."
    elif event == "blackout_moved":
        text = f"Blackout *{name}* changed and still covers {r.ref}'s window, now{_when(payload)}; its flag stands."
    elif event == "blackout_cleared":
        text = (f":white_check_mark: Blackout *{name}* was lifted by {mention(payload.get('by', ''))}: "
                f"{esc(payload.get('reason', ''))}. It no longer flags {r.ref}.")
    elif event == "blackout_held":
        text = (f":warning: Blackout *{name}* no longer covers {r.ref}'s window, but shortening a blackout over a "
                f"live release needs an executive: it is kept over {r.ref}, and its flag stands until an executive "
                f"overrides it or {r.ref} is rescheduled into a clean window.")
    else:
        how = "was cancelled" if payload.get("how") == "cancelled" else "moved"
        text = (f"{esc(payload.get('other', ''))} {how}, so it no longer conflicts with {r.ref}; cleared: "
                + "; ".join(esc(d) for d in payload.get("details", [])) + ".")
    if payload.get("approved"):
        text += f" {r.ref} is now approved."
    return text
