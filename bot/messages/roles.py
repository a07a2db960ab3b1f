"""Who holds each role, as people read it: `/release roles`, and the line a role refusal ends with."""
from __future__ import annotations

from commands.roles import Group, Holders

from bot.messages.common import context, esc, mention, section

MAX_SHOWN = 40  # people listed per role or group; a 2,000-member group is named, not spelled out


def group_mention(group_id: str) -> str:
    return f"<!subteam^{group_id}>"


def _people(ids: tuple[str, ...] | list[str]) -> str:
    ids = sorted(ids)
    shown = ", ".join(mention(u) for u in ids[:MAX_SHOWN])
    return shown + (f" and {len(ids) - MAX_SHOWN} more" if len(ids) > MAX_SHOWN else "")


def _group(g: Group, resolved: bool) -> str:
    name = f"group {group_mention(g.group_id)}"
    if not resolved:
        return name
    if g.members is None:
        return f"{name} (Slack could not list its members just now)"
    return f"{name} ({_people(g.members)})" if g.members else f"{name} (no members)"


def held_by(h: Holders, resolved: bool = False, budget: int = 2500) -> str:
    """"<@U0QA> and group <!subteam^S0QALEADS>"; `resolved` adds each group's members.

    Within `budget` characters, whole mentions only: what does not fit is counted, never cut."""
    parts = ([_people(h.users)] if h.users else []) + [_group(g, resolved) for g in h.groups]
    if not parts:
        return "nobody"
    if resolved and sum(len(p) + 2 for p in parts) > budget:
        return held_by(h, False, budget)  # the groups named without their members
    kept, used = [], 0
    for part in parts:
        if kept and used + len(part) + 2 > budget:
            break
        kept.append(part)
        used += len(part) + 2
    more = len(parts) - len(kept)
    if more:
        return ", ".join(kept) + f" and {more} more (see `[roles]` in the policy file)"
    return ", ".join(kept[:-1]) + (" and " if len(kept) > 1 else "") + kept[-1]


def refusal_note(holders: list[Holders], source: str) -> str:
    """What a refusal for a missing role ends with: who could do it instead."""
    lines = []
    for h in holders:
        if h.users or h.groups:
            lines.append(f"{h.role}: held by {held_by(h, budget=600)}")
        else:
            lines.append(f"{h.role}: nobody holds it yet (set roles.{h.role} in {esc(source)})")
    if not lines:
        return ""
    return "\nThis needs " + "; ".join(lines) + "."


def roles_message(holders: list[Holders], source: str) -> tuple[str, list[dict]]:
    lines = []
    for h in holders:
        if h.empty:
            lines.append(f":warning: *{h.role}*: nobody holds it")
        else:
            lines.append(f"• *{h.role}*: {held_by(h, resolved=True)}")
    empty = [h.role for h in holders if h.empty]
    blocks = [section("*Who holds each role*")]
    blocks += [section(line) for line in lines]
    summary = (f"Empty roles: {', '.join(empty)}. Until someone holds them, what needs them cannot be approved."
               if empty else "Every role has someone.")
    blocks.append(context(f"{summary} Roles come from {esc(source)} (`[roles]`: Slack user ids U… and user "
                          "group ids S…); a group's members are read from Slack and cached for a few minutes."))
    return "Who holds each role", blocks
