"""The `/release …` command line: tokens, key=value pairs and the right form for each subcommand."""
from __future__ import annotations

import difflib
import html
import re
import shlex
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from commands.errors import InputError, NotFound
from commands.usage import BLACKOUT_KEYS, HELP_TOPICS, KEYS, NC_LISTS, NC_VERBS, USAGE

_NEEDS_REF = {"assess", "go", "nogo", "withdraw", "show", "cancel", "edit", "accept", "misclassified", "reschedule",
              "deploy", "rollback", "done", "signoff", "followup", "retro", "override", "validate", "step", "evidence",
              "test", "waive"}
_REF = re.compile(r"^(?:REL-)?(\d+)\Z", re.IGNORECASE | re.ASCII)
_NUMBER = re.compile(r"^\d+\Z", re.ASCII)
# Ids are 32-bit in every table; a bigger number names nothing (and would overflow PostgreSQL's integer).
MAX_ID = 2**31 - 1
# Text no database keeps: PostgreSQL refuses NUL in text and JSON, and an unpaired
# surrogate cannot be encoded as UTF-8 at all. Refused at every edge, one check.
# Also the noncharacters U+FDD0-U+FDEF (Unicode keeps them for a program's own use): the
# time marker (when()) is made of them, so no text a person sends can pose as one.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff\ufdd0-\ufdef]")
UNSTORABLE = ("contains a NUL character, an unpaired surrogate or a Unicode noncharacter, which is not text; "
              "remove it and send it again")
# Names that reach a header or a calendar's name (the feed's service=): what a service may be called, no more.
SERVICE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,80}\Z", re.ASCII)
_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})
# Words people reach for that are another command here; the rest is found by edit distance.
ALIASES = {"approve": "go", "approved": "go", "lgtm": "go", "reject": "nogo", "deny": "nogo", "no-go": "nogo",
           "create": "request", "new": "request", "status": "show", "info": "show", "ls": "list",
           "move": "reschedule", "delete": "cancel", "abort": "cancel", "ship": "deploy", "revert": "rollback"}


def nearest(word: str, choices, *, aliases: dict[str, str] | None = None) -> str | None:
    """The choice someone most likely meant by word (an alias, else the closest by edit distance), or None."""
    word = word.strip().lower()
    if aliases and word in aliases:
        return aliases[word]
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(word: str, choices, *, shown: str = "{}", aliases: dict[str, str] | None = None) -> str:
    """ " Did you mean `…`?" for the nearest choice, or "" when nothing is near."""
    found = nearest(word, choices, aliases=aliases)
    return f" Did you mean `{shown.format(found)}`?" if found else ""


def _quoted(key: str, value: str) -> str:
    q = "'" if '"' in value and "'" not in value else '"'
    return f"{key}={q}{value}{q}"


# ---- times in replies -------------------------------------------------------------
# commands/ says *when*, never how a person sees it: Slack shows each reader their own zone
# (<!date^…>), the Pipeline API and the CLI ISO 8601 in UTC (bot/times.py). A marker between two noncharacters
# carries the instant, what to show (d: date, t: time, dt: both) and, optionally, the zone the
# person planned in; the renderers turn every marker into their form. check_text refuses
# these characters in anything a person sends, so a look-alike in user text never matches.
_MARK_OPEN, _MARK_CLOSE = "\ufdd0", "\ufdd1"
TIME_MARK = re.compile("\ufdd0(-?[0-9]{1,12});(dt|d|t);([A-Za-z0-9_+\\-/]{0,64})\ufdd1")
_STRAY = re.compile("[\ufdd0-\ufdef]")


def when(dt: datetime, tz: str | None = None, show: str = "dt") -> str:
    """A time as a person will read it in a reply; `tz` (an IANA zone) is added as the planned zone."""
    if show not in ("dt", "d", "t"):
        raise ValueError(f"show is dt, d or t, not {show!r}")
    if dt.tzinfo is None:
        raise ValueError("when() takes an aware datetime")
    return f"{_MARK_OPEN}{int(dt.timestamp())};{show};{tz or ''}{_MARK_CLOSE}"


def render_times(text: str, render: Callable[[datetime, str, str | None], str]) -> str:
    """Every marker in `text` as `render(instant in UTC, show, tz)` gives it; a broken one is dropped."""
    def one(m: re.Match) -> str:
        return render(datetime.fromtimestamp(int(m.group(1)), timezone.utc), m.group(2), m.group(3) or None)
    return _STRAY.sub("", TIME_MARK.sub(one, text))


@dataclass(frozen=True)
class ParsedCommand:
    name: str
    release_id: int | None = None
    args: dict[str, str] = field(default_factory=dict)
    positional: tuple[str, ...] = ()


def unstorable(value: object) -> bool:
    return isinstance(value, str) and _UNSTORABLE.search(value) is not None


def unstorable_field(value: object, path: str = "") -> str | None:
    """Where in this (JSON-like) value a string holds NUL or an unpaired surrogate: its dotted path
    ("" for the value itself, the parent's path for a bad key), or None when all of it is text."""
    if isinstance(value, str):
        return path if unstorable(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if unstorable(key):
                return path
            found = unstorable_field(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for item in value:
            found = unstorable_field(item, path)
            if found is not None:
                return found
    return None


def check_text(value: object, field: str | None = None, form: str | None = None) -> None:
    """The one check every text input from Slack, the Pipeline API and the feed goes through."""
    where = unstorable_field(value)
    if where is not None:
        name = field or where
        raise InputError(f"{name} {UNSTORABLE}" if name else f"the text {UNSTORABLE}", field=name or None,
                         form=form)


def _bounded(digits: str, nothing: str) -> int:
    """ASCII digits as an id. Past 32 bits it names nothing; a very long one is never even converted."""
    if len(digits) > 10 or not 0 < int(digits) <= MAX_ID:
        shown = digits if len(digits) <= 24 else digits[:24] + "…"
        raise NotFound(nothing.format(shown))
    return int(digits)


def parse_command(text: str) -> ParsedCommand:
    # Slack sends &, <, > escaped; we store what the person actually typed.
    # Phones turn straight quotes into curly ones; treat them the same.
    text = html.unescape(text or "").translate(_QUOTES).strip()
    if not text:
        return ParsedCommand("help")
    if unstorable(text):
        first = text.split(maxsplit=1)[0].lower()
        check_text(text, form=USAGE.get(first, USAGE["help"]))
    if text.split(maxsplit=1)[0].lower() == "log":
        return _parse_log(text)
    try:
        tokens = shlex.split(text)
    except ValueError:
        first = text.split(maxsplit=1)[0].lower()
        raise InputError("a quote is not closed; put values with spaces in matching quotes, "
                         'like summary="Add refunds"', form=USAGE.get(first, USAGE["help"])) from None
    name = tokens[0].lower()
    if name not in USAGE:
        rest = text.split(maxsplit=1)[1] if len(tokens) > 1 else ""
        rest = rest if len(rest) <= 200 else rest[:199] + "…"
        first_key = tokens[0].partition("=")[0].lower()
        if "=" in tokens[0] and first_key in KEYS["request"]:  # the verb was left out
            hint = f" Did you mean `/release request {text if len(text) <= 200 else text[:199] + '…'}`?"
        else:
            hint = did_you_mean(name, USAGE, shown="/release {}" + (f" {rest}" if rest else ""), aliases=ALIASES)
        raise InputError(f"'{tokens[0]}' is not a /release command.{hint} Commands: {', '.join(USAGE)}",
                         form=USAGE["help"])
    form = USAGE[name]
    args: dict[str, str] = {}
    positional: list[str] = []
    spill: dict[str, list[str]] = {}  # bare words after key=value: the value had spaces and no quotes
    last_key = None
    for tok in tokens[1:]:
        key, eq, value = tok.partition("=")
        if eq:
            key = key.strip().lower()
            if key not in KEYS[name]:
                allowed = ", ".join(sorted(KEYS[name])) or "none"
                hint = did_you_mean(key, KEYS[name], shown="{}=")
                raise InputError(f"'{key}' is not a field of /release {name}.{hint} Fields: {allowed}",
                                 field=key, form=form)
            if key in args:
                raise InputError(f"'{key}' is given twice", field=key, form=form)
            args[key] = value.strip()
            last_key = key
        elif last_key is not None and not (name in _NEEDS_REF and not positional and _REF.match(tok)):
            spill.setdefault(last_key, []).append(tok)
        else:
            positional.append(tok)
    if spill:
        key, words = next(iter(spill.items()))
        raise InputError(f"the value of {key} has spaces, so put it in quotes: "
                         f"{_quoted(key, ' '.join([args[key], *words]))}", field=key, form=form)
    release_id = None
    if name in _NEEDS_REF:
        if not positional:
            raise InputError(f"/release {name} needs a release id like REL-12", form=form)
        release_id = _release_id(positional.pop(0), form)
    if name == "blackout":
        action = positional.pop(0).lower() if positional else "list"
        allowed = BLACKOUT_KEYS.get(action)
        if allowed is None:
            raise InputError(f"'{action}' is not a blackout action.{did_you_mean(action, BLACKOUT_KEYS)} "
                             "Use add, list, remove or subscribe", form=form)
        extra = sorted(set(args) - allowed)
        if extra:
            raise InputError(f"'{extra[0]}' is not a field of /release blackout {action}."
                             f"{did_you_mean(extra[0], allowed, shown='{}=')}", field=extra[0], form=form)
        if action == "remove":
            if len(positional) != 1 or not _NUMBER.match(positional[0]):
                raise InputError("blackout remove takes the blackout's number, e.g. /release blackout remove 3",
                                 form=form)
            _bounded(positional[0], "there is no blackout {}; /release blackout list shows them")
            return ParsedCommand(name, None, args, ("remove", positional[0]))
        if positional:
            raise InputError(f"'{positional[0]}' is not understood here; values are given as key=value", form=form)
        return ParsedCommand(name, None, args, (action,))
    if name == "nc":
        return _parse_nc(args, positional)
    if name == "help":
        if len(positional) > 1 or (positional and positional[0].lower() not in HELP_TOPICS):
            raise InputError(f"help topics are {', '.join(HELP_TOPICS)}", form=form)
        return ParsedCommand(name, None, args, tuple(p.lower() for p in positional))
    if name == "bridge":
        if len(positional) != 2 or positional[0].lower() != "close":
            raise InputError("bridge takes close and a release id, e.g. " + form, form=form)
        return ParsedCommand(name, _release_id(positional[1], form), args, ("close",))
    if name == "step":
        if len(positional) != 1:
            raise InputError("step takes the step's name after the release id, e.g. /release step REL-12 "
                             "change_request link=CR-123", form=form)
        return ParsedCommand(name, release_id, args, (positional[0].lower(),))
    if name == "metrics":  # [period] [service], in either form: words or period=/service=
        if len(positional) > 2:
            raise InputError(f"'{positional[2]}' is not understood here; metrics takes a period and a service",
                             form=form)
        return ParsedCommand(name, None, args, tuple(positional))
    if name == "list":
        if len(positional) > 1 or (positional and positional[0].lower() not in {"pending", "upcoming", "mine"}):
            hint = did_you_mean(positional[0], ("pending", "upcoming", "mine")) if len(positional) == 1 else ""
            raise InputError(f"list takes pending, upcoming or mine{'.' + hint if hint else ''}", form=form)
        positional = [p.lower() for p in positional]
    elif positional:
        raise InputError(f"'{positional[0]}' is not understood here; values are given as key=value", form=form)
    if "environment" in args:
        if "env" in args:
            raise InputError("'env' is given twice (env and environment mean the same)", field="env", form=form)
        args["env"] = args.pop("environment")
    return ParsedCommand(name, release_id, args, tuple(positional))


def _parse_nc(args: dict[str, str], positional: list[str]) -> ParsedCommand:
    """`nc <verb> [NC-n | list filter] key=value…`: positional holds the verb and what it is about."""
    form = USAGE["nc"]
    verb = positional.pop(0).lower() if positional else "list"
    allowed = NC_VERBS.get(verb)
    if allowed is None:
        raise InputError(f"'{verb}' is not an nc action.{did_you_mean(verb, NC_VERBS)} "
                         f"Use {', '.join(NC_VERBS)}", form=form)
    extra = sorted(set(args) - allowed)
    if extra:
        raise InputError(f"'{extra[0]}' is not a field of /release nc {verb}.{did_you_mean(extra[0], allowed, shown='{}=')}"
                         f" Fields: {', '.join(sorted(allowed)) or 'none'}", field=extra[0], form=form)
    if verb == "list":
        if len(positional) > 1 or (positional and positional[0].lower() not in NC_LISTS):
            hint = did_you_mean(positional[0], NC_LISTS) if len(positional) == 1 else ""
            raise InputError(f"nc list takes open, overdue or mine.{hint}", form=form)
        return ParsedCommand("nc", None, args, ("list", *(p.lower() for p in positional)))
    if not positional:
        raise InputError(f"/release nc {verb} needs a non-conformance id like NC-3", form=form)
    if len(positional) > 1:
        raise InputError(f"'{positional[1]}' is not understood here; values are given as key=value", form=form)
    return ParsedCommand("nc", None, args, (verb, str(parse_nc_ref(positional[0]))))


_NC_REF = re.compile(r"^(?:NC-?)?(\d+)\Z", re.IGNORECASE | re.ASCII)


def parse_nc_ref(text: str) -> int:
    """NC-12 (or 12) as an id; anything else is a clear "this is not an NC id"."""
    m = _NC_REF.match((text or "").strip())
    if not m:
        shown = text if len(text) <= 40 else text[:39] + "…"
        raise InputError(f"'{shown}' is not a non-conformance id; one looks like NC-3 (/release nc list shows "
                         "them)", form=USAGE["nc"])
    return _bounded(m.group(1), "NC-{} does not exist; /release nc list shows the register")


def _parse_log(text: str) -> ParsedCommand:
    """`log REL-n [correct=N] free text`: the text is taken as typed (quotes, '=' and all), not as fields."""
    form = USAGE["log"]
    parts = text.split(maxsplit=2)
    if len(parts) < 2:
        raise InputError("/release log needs a release id like REL-12 and the entry's text", form=form)
    release_id = _release_id(parts[1], form)
    rest = parts[2] if len(parts) > 2 else ""
    args: dict[str, str] = {}
    first, _, after = rest.partition(" ")
    if first.lower().startswith("correct="):
        args["correct"] = first.split("=", 1)[1]
        rest = after
    args["text"] = rest.strip()
    if not args["text"]:
        raise InputError("the log entry has no text", form=form)
    return ParsedCommand("log", release_id, args)


def _release_id(text: str, form: str | None = None) -> int:
    m = _REF.match(text.strip())
    if not m:
        raise InputError("a release id looks like REL-12", form=form)
    return _bounded(m.group(1), "REL-{} does not exist; /release list shows the releases")


def parse_ref(text: str) -> int:
    return _release_id(text)
