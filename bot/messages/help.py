"""The ways in: `/release help` by what you want to do, the bare `/release` menu, and the welcome.

Examples are dated from the injected clock's today, so they never drift into the past. The ids of
the menu's buttons and of the global shortcut live here (one place for the entry points).
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from commands.usage import HELP_TOPICS, USAGE

from bot.messages.common import TEXT_LIMIT, context, esc, plain, section, sections

MENU_REQUEST, MENU_MINE, MENU_CALENDAR, MENU_HELP = "menu_request", "menu_mine", "menu_calendar", "menu_help"
MENU_ACTIONS = (MENU_REQUEST, MENU_MINE, MENU_CALENDAR, MENU_HELP)
REQUEST_SHORTCUT = "request_release"  # manifest.yml: features.shortcuts[].callback_id

# topic -> (title, what it is for, the commands it covers)
TOPICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "request": ("Request a release", "Ask for a release window; the approvers are asked in the release channel.",
                ("request", "edit", "reschedule", "cancel", "show", "list")),
    "approve": ("Approve", "Vote Go or No-go in a role the release needs. The requester never votes on their own "
                "release.", ("go", "nogo", "withdraw")),
    "deploy": ("Deploy", "An approved release, inside its window, by a deploying role that did not vote on it, "
                         "once its test phases and documents are in (or waived by a release manager), naming the "
                         "artefact and commit.", ("test", "waive", "deploy", "rollback", "done")),
    "after": ("After deployment", "Sign-offs after stabilisation, the follow-up and the retrospective; the "
              "non-conformance register and its corrective actions (QMS 6.2).", ("signoff", "followup", "retro", "nc")),
    "calendar": ("Calendar", "What is planned, and the blackouts (freezes) no release may fall in.",
                 ("calendar", "blackout")),
    "admin": ("Admin", "Roles come from the policy file; release managers accept misclassifications (or record one "
              "found after deployment), flags are overridden in writing; release managers and auditors take a "
              "release's evidence packet; the KPIs (QMS 4.2) are measured from the record.",
              ("roles", "accept", "misclassified", "override", "evidence", "metrics")),
}
assert tuple(TOPICS) == HELP_TOPICS  # the parser accepts exactly the topics written here
_A_DATE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}")


def form(command: str) -> str:
    """The command's form with any sample date as a placeholder: a fixed date would soon be in the past."""
    return _A_DATE.sub("YYYY-MM-DD HH:MM", USAGE[command])


def _at(day: datetime, hour: int) -> str:
    return f"{day:%Y-%m-%d} {hour:02d}:00"


def examples(topic: str, today: datetime) -> list[str]:
    """Examples that work when read: dated from today (past the longest common lead time, a week)."""
    soon, later = today + timedelta(days=10), today + timedelta(days=12)
    freeze = today + timedelta(days=20)
    return {
        "request": [
            "/release request   (opens the form, with the classification questions)",
            f'/release request service=payments version=2.3.1 type=minor start="{_at(soon, 14)}" tz=Europe/London '
            'duration=60m summary="Add refunds" flags=feature',
            f'/release reschedule REL-12 start="{_at(later, 10)}" reason="load test moved"',
            "/release list mine",
        ],
        "approve": ['/release go REL-12 note="tested on staging"', '/release nogo REL-12 reason="load test failed"',
                    "/release withdraw REL-12"],
        "deploy": ["/release test REL-12 phase=security status=passed url=https://ci.example.com/runs/981 "
                   "artifact=payments:2.3.1",
                   '/release waive REL-12 item=performance reason="baseline env down; canary watches p95"',
                   "/release edit REL-12 notes=https://wiki.example.com/rel-12 runbook=https://wiki.example.com/rb",
                   "/release deploy REL-12   (or the Start deployment button on the approval message)",
                   '/release rollback REL-12 reason="error rate +20% for 5 min"',
                   "/release done REL-12 outcome=success"],
        "after": ["/release signoff REL-12 role=qa_lead",
                  '/release followup REL-12 evidence="dashboards green for 24h"',
                  '/release retro REL-12 notes="what went well, what did not" actions="add a canary"',
                  '/release nc list overdue',
                  '/release nc plan NC-3 owner=@alice action="make the pipeline refuse unapproved releases"'],
        "calendar": ["/release calendar days=30 service=payments",
                     f'/release blackout add name="Year-end freeze" start="{_at(freeze, 0)}" '
                     f'end="{_at(freeze + timedelta(days=7), 0)}" tz=Europe/London',
                     "/release blackout list", '/release blackout remove 3 reason="freeze lifted"'],
        "admin": ["/release roles", "/release evidence REL-12",
                  '/release accept REL-12 reason="a config change; minor controls are right"',
                  '/release override REL-12 kind=lead_time reason="customer contract deadline"',
                  "/release metrics last-month payments"],
    }[topic]


def _group(topic: str) -> str:
    title, _, commands = TOPICS[topic]
    return f"*{title}* (`/release help {topic}`)\n" + "\n".join(f"• `{esc(form(c))}`" for c in commands)


def help_overview() -> tuple[str, list[dict]]:
    """`/release help`: every command, grouped by what you want to do."""
    head = "*releasebot*: request a release, vote Go/No-go, deploy, and keep the audit trail."
    groups = [_group(t) for t in HELP_TOPICS]
    tail = "`/release help <topic>` shows a topic with examples. A bare `/release` shows buttons."
    blocks = [section(head), *(b for g in groups for b in sections(g)), context(tail)]
    # The blocks carry every command with its notes; the notification text, which has a limit of its own,
    # carries every form without the notes, and if even that grew too long, the topics, rather than a cut.
    forms = [f"*{TOPICS[t][0]}*\n" + "\n".join(esc(form(c).split("   (")[0]) for c in TOPICS[t][2])
             for t in HELP_TOPICS]
    text = "\n\n".join([head, *forms, tail])
    if len(text) > TEXT_LIMIT:
        text = f"{head}\n\nTopics: {', '.join(HELP_TOPICS)}.\n\n{tail}"
    return text, blocks


def help_topic(topic: str, today: datetime) -> tuple[str, list[dict]]:
    title, what, commands = TOPICS[topic]
    head = f"*{title}*\n{esc(what)}"
    forms = "*Forms*\n" + "\n".join(f"• `{esc(form(c))}`" for c in commands)
    shown = "*Examples*\n" + "\n".join(f"• `{esc(e)}`" for e in examples(topic, today))
    other = ", ".join(t for t in HELP_TOPICS if t != topic)
    tail = f"Other topics: {other}. Dates are read in the tz= you give."
    text = "\n\n".join([head, forms, shown, tail])
    if len(text) > TEXT_LIMIT:  # the blocks carry it all; the notification says where, rather than cut
        text = f"{head}\n\n{tail}"
    return text, [*sections(head), *sections(forms), *sections(shown), context(tail)]


def _button(text: str, action_id: str, style: str | None = None) -> dict:
    b = {"type": "button", "action_id": action_id, "text": plain(text), "value": action_id}
    if style:
        b["style"] = style
    return b


def menu() -> tuple[str, list[dict]]:
    """A bare `/release`: the common next steps, each a button that does it."""
    text = "What would you like to do?"
    return text, [section(f"*releasebot* · {text}"),
                  {"type": "actions", "block_id": "menu", "elements": [
                      _button("Request a release", MENU_REQUEST, "primary"), _button("My releases", MENU_MINE),
                      _button("Calendar", MENU_CALENDAR), _button("Help", MENU_HELP)]},
                  context("Or type `/release help` for every command.")]


def welcome(empty_roles: list[str], source: str, release_channel: str | None) -> tuple[str, list[dict]]:
    """What the bot says when it is added to a channel: what it does, where to start, what is missing."""
    text = ("Hello, I am releasebot: release requests, Go/No-go votes by role with separation of duties, the "
            "deployment checklist, and an audit trail of every decision.")
    start = "Start with `/release help`, or `/release request` to ask for a release window."
    if release_channel:
        start += f" Approval messages are posted in <#{release_channel}>."
    if empty_roles:
        roles = (f":warning: These roles have nobody yet: {', '.join(empty_roles)}. What needs them cannot be "
                 f"approved until someone holds them: set them in {esc(source)} (`[roles]`), then check with "
                 "`/release roles`.")
    else:
        roles = f"Every role has someone (from {esc(source)}); `/release roles` shows who."
    return text, [section(text), section(start), section(roles)]
