"""Turning what a requester typed (modal or one line) into a valid draft, or saying exactly what is wrong."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping

from calendars.timeparse import DURATION_FORM, START_FORM, TimeInputError, parse_duration, parse_start, zone
from commands.classification import FLAG_TO_KEY, Answers
from commands.errors import FieldErrors
from commands.policy import RELEASE_TYPES, Policy
from commands.text import UNSTORABLE, did_you_mean, nearest, unstorable, when

REQUIRED = ("service", "version", "type", "start", "tz", "duration", "summary")
_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
_LIMITS = {"version": 200, "summary": 2000, "risk": 2000, "rollback": 2000, "links": 2000, "incident": 500,
           "notes": 2000, "runbook": 2000}
_LINK = re.compile(r"https?://\S+\Z")
INCIDENT_REQUIRED = ("an emergency answers a production incident (QMS 4.6 reserves the track for incident "
                     "response): give the incident's reference, an id or a URL, e.g. incident=INC-4211")
# A start a moment ago is someone typing "now"; an hour ago is a mistake.
_PAST_GRACE = timedelta(minutes=5)
# How far from now a release or a blackout may start (blackouts: either way). Planning years out is a
# typo, and year 9999 plus a window overflows the calendar. The one bound; commands/blackout.py uses it.
MAX_AHEAD = timedelta(days=730)
AHEAD_TEXT = "within two years of now"


@dataclass(frozen=True)
class Draft:
    service: str
    version: str
    requested_type: str
    environment: str
    start_at: datetime
    duration: timedelta
    tz: str
    summary: str
    risk: str | None
    rollback: str | None
    links: str | None
    answers: Answers | None  # None only for an edit, which leaves the classification alone
    note: str | None = None  # how an ambiguous start was read, said back with the window
    incident: str | None = None  # the incident an emergency answers (an id or URL)
    notes: str | None = None  # the release notes, a link (commands.package)
    runbook: str | None = None  # the deployment runbook, a link

    @property
    def end_at(self) -> datetime:
        return self.start_at + self.duration


_ANSWER = ("answer the classification questions: flags=feature,sensitive,… for each yes, or flags=none "
           "if every answer is no")


def missing_fields(raw: Mapping[str, str | None]) -> list[str]:
    """What a one-line request lacks; the form opens for any of it. The answers
    (flags=) are required like any field: with none, nothing could be misclassified."""
    return [f for f in (*REQUIRED, "flags") if not (raw.get(f) or "").strip()]


def parse_flags(text: str) -> Answers:
    """The yes answers, comma-separated; "none" is the requester's answer that every one is no."""
    given = [f for f in (f.strip().lower() for f in text.split(",")) if f]
    if given == ["none"]:
        return Answers()
    if not given or "none" in given:
        raise FieldErrors({"flags": _ANSWER})
    keys = []
    for flag in given:
        if flag not in FLAG_TO_KEY:
            raise FieldErrors({"flags": f"'{flag}' is not a classification flag; flags are "
                                        f"{', '.join(FLAG_TO_KEY)}, or none.{did_you_mean(flag, FLAG_TO_KEY)}"})
        keys.append(FLAG_TO_KEY[flag])
    return Answers.from_keys(keys)


def window_data(draft: Draft) -> dict:
    """For the Outcome: the window the bot says back (bot.messages.common.window_echo), and how an
    ambiguous start was read."""
    return {"window": (draft.start_at, draft.end_at, draft.tz), "reading": draft.note}


def validate(raw: Mapping[str, str | None], answers: Answers | None, policy: Policy, now: datetime,
             *, allow_past_start: bool = False, classify: bool = True, locale: str | None = None) -> Draft:
    """Every wrong field at once, keyed by field name, so a modal can show them all inline.

    allow_past_start: an edit that leaves the window alone must not be refused
    because the window has since begun. classify=False: an edit, which changes
    neither the answers nor the type. locale: the requester's Slack locale, for a start like "12/03"."""
    get = lambda k: (raw.get(k) or "").strip()  # noqa: E731
    errors: dict[str, str] = {}
    bad = {f for f, v in raw.items() if unstorable(v)}
    if bad:  # nothing else is worth checking in text no database can store
        raise FieldErrors({f: UNSTORABLE for f in sorted(bad)})
    for f in REQUIRED:
        if not get(f):
            errors[f] = "is required"
    service, version, rtype = get("service"), get("version"), get("type").lower()
    if service and not _SERVICE.match(service):
        errors["service"] = "use letters, digits, '.', '_' or '-' (at most 80), e.g. payments-api"
    if version and any(c.isspace() for c in version):
        errors["version"] = "a version or artifact reference has no spaces, e.g. 2.3.1 or ghcr.io/acme/pay@sha256:…"
    if rtype and rtype not in RELEASE_TYPES:
        errors["type"] = (f"'{rtype}' is not a release type; types are {', '.join(RELEASE_TYPES)}."
                          f"{did_you_mean(rtype, RELEASE_TYPES)}")
    if classify and answers is None:
        errors["flags"] = _ANSWER
    elif classify and rtype == "emergency" and not answers.incident:
        errors["type"] = ("emergency is reserved for incident response (QMS 4.6): answer yes to "
                          "'Responds to a production incident or outage?' (flag incident), or choose another type")
    elif classify and answers.incident and not get("incident"):
        errors["incident"] = INCIDENT_REQUIRED
    env = get("env") or policy.default_environment
    if env not in policy.environments:
        errors["env"] = (f"'{env}' is not an environment; environments are {', '.join(policy.environments)}"
                         f"{'.' + did_you_mean(env, policy.environments) if nearest(env, policy.environments) else ''}")
    for f, limit in _LIMITS.items():
        if len(get(f)) > limit:
            errors[f] = f"is too long ({len(get(f))} characters; at most {limit})"
    for f in ("notes", "runbook"):
        if get(f) and f not in errors and not _LINK.match(get(f)):
            errors[f] = "is a link: an http(s) URL"
    tz = get("tz")
    if tz:
        try:
            zone(tz)
        except TimeInputError as exc:
            errors["tz"] = str(exc)
    start_at, note = None, None
    if get("start") and "tz" not in errors and tz:
        try:
            start = parse_start(get("start"), tz, now, locale)
            start_at, note = start.at, start.note
            read = f"{get('start')}, read as {when(start_at, tz)},"
            if start_at < now - _PAST_GRACE and not allow_past_start:
                errors["start"] = f"{read} is in the past; use {START_FORM}"
            elif start_at > now + MAX_AHEAD:
                errors["start"] = (f"{read} is more than two years ahead; a release starts "
                                   f"{AHEAD_TEXT} (by {when(now + MAX_AHEAD, show='d')})")
        except TimeInputError as exc:
            errors["start"] = str(exc)
    duration = None
    if get("duration"):
        try:
            duration = parse_duration(get("duration"))
            if duration > timedelta(days=14):
                errors["duration"] = "a deployment window longer than 14 days is not a window; split the release"
        except TimeInputError:
            errors["duration"] = f"'{get('duration')}' is not {DURATION_FORM}"
    if errors:
        raise FieldErrors(errors)
    return Draft(service=service, version=version, requested_type=rtype, environment=env, start_at=start_at,
                 duration=duration, tz=tz, summary=get("summary"), risk=get("risk") or None,
                 rollback=get("rollback") or None, links=get("links") or None, answers=answers, note=note,
                 incident=get("incident") or None, notes=get("notes") or None, runbook=get("runbook") or None)


def start_prefill(text: str | None, tz: str, now: datetime, locale: str | None = None) -> tuple[str | None, str]:
    """A typed start for the form's pickers: ("YYYY-MM-DD HH:MM" or None, the hint that keeps what was typed).
    The pickers take only a real date and an HH:mm time; anything else would make Slack refuse the form."""
    text = (text or "").strip()
    if not text:
        return None, ""
    shown = text if len(text) <= 80 else text[:79] + "…"
    try:
        start = parse_start(text, tz, now, locale)
    except TimeInputError as exc:
        why = str(exc) if shown == text else "not a start I can read"
        return None, f"You typed start \"{shown}\": {why}. Pick the date and time below."
    local = f"{start.local:%Y-%m-%d %H:%M}"
    note = f"; {start.note}" if start.note else ""
    return local, f"You typed start \"{shown}\": read as {start.local:%a %d %b %H:%M} {tz}{note}."
