"""The release package's documents (QMS 4.4 step 2): release notes, deployment runbook, rollback plan.

Release notes and the runbook are links; the rollback plan is a link or text. They come with the
request, `/release edit`, the request form or the Pipeline API. Adding or changing a document is
not a change of scope: approvers approved the change, not its paperwork, so it never resets the
votes (commands.release.edit_release leaves them out of what starts a new round). Which documents a
type needs before the gate opens is policy ([validation] documents); an emergency's are its
deferred "docs" step (QMS 4.6).
"""
from __future__ import annotations

import re
from typing import Mapping

from sqlalchemy.engine import Engine

from commands import announce
from commands.clock import Clock
from commands.decision import Decision, decide
from commands.errors import InputError, Refused
from commands.outcome import Actor, Outcome
from commands.states import LIVE_STATES
from commands.text import check_text

# the command-line / API key -> the Release column
KEYS = {"notes": "release_notes", "runbook": "runbook", "rollback": "rollback_plan"}
LINKS = ("notes", "runbook")  # links only; the rollback plan may be text
LIMIT = 2000
FORM = '/release edit REL-12 [notes=https://…] [runbook=https://…] [rollback="…" or https://…]'
_URL = re.compile(r"https?://\S+\Z")


def take(changes: dict) -> dict[str, str | None]:
    """Pop the document keys out of `changes` (a request's or an edit's fields), checked: key -> column value
    ("" clears it, as None)."""
    docs = {k: changes.pop(k) for k in list(changes) if k in KEYS}
    return valid(docs)


def valid(docs: Mapping[str, object]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, value in docs.items():
        if key not in KEYS:
            raise InputError(f"'{key}' is not a document; documents are {', '.join(KEYS)}", field=key, form=FORM)
        if value is not None and not isinstance(value, str):
            raise InputError(f"{key} must be a string", field=key, form=FORM)
        text = (value or "").strip()
        check_text(text, key, FORM)
        if len(text) > LIMIT:
            raise InputError(f"{key} is too long ({len(text)} characters; at most {LIMIT})", field=key, form=FORM)
        if text and key in LINKS and not _URL.match(text):
            what = "release notes" if key == "notes" else "runbook"
            raise InputError(f"{key} is a link: an http(s) URL to the {what}", field=key, form=FORM)
        out[KEYS[key]] = text or None
    return out


def apply(d: Decision, docs: Mapping[str, str | None], who: str) -> list[str]:
    """Set the documents on the locked release, audited `documents_set`; the columns that changed."""
    release = d.release
    changed = [col for col, v in docs.items() if getattr(release, col) != v]
    if not changed:
        return []
    before = {col: getattr(release, col) for col in changed}
    for col in changed:
        setattr(release, col, docs[col])
    ev = d.record("documents_set", before=before, after={col: docs[col] for col in changed}, touch=False)
    announce.note(d.session, release, "documents_set", d.now, key_suffix=str(ev.id), by=who.split(" ")[0],
                  detail=", ".join(changed))
    return changed


def set_documents(db: Engine, actor: Actor, release_id: int, docs: Mapping[str, str | None], clock: Clock, *,
                  pipeline: str | None = None, environments: frozenset[str] | None = None) -> Outcome:
    """The requester or a release manager, or a pipeline within its token's environments."""
    who = actor.user_id if pipeline is None or actor.user_id == f"pipeline:{pipeline}" else \
        f"{actor.user_id} via pipeline:{pipeline}"
    if not docs:
        raise InputError("nothing to set: give notes=, runbook= or rollback=", form=FORM)

    def check(d: Decision) -> None:
        release = d.release
        if pipeline is not None:
            if environments is not None and release.environment not in environments:
                raise Refused(f"pipeline:{pipeline} may report only for {', '.join(sorted(environments))}; "
                              f"{release.ref} is for {release.environment}", "pipeline_scope")
        elif actor.user_id != release.requester_id:
            actor.require(("release_manager",), f"Only the requester or a release manager can change the documents "
                                                f"of {release.ref}.", "not_owner")
        if release.state not in LIVE_STATES:
            raise Refused(f"{release.ref} is {release.state}; its documents count for the gate only before the "
                          "deployment starts (an emergency's come with /release step docs).", "not_live")

    def change(d: Decision) -> Outcome:
        changed = apply(d, docs, who)
        if not changed:
            return Outcome(f"{d.release.ref} already has those documents; nothing changed.", d.release)
        return Outcome(f"{d.release.ref}: {', '.join(changed)} recorded. Votes are unaffected: documents are not a "
                       "change of scope.", d.release, changed=True, data={"documents": changed})

    return decide(db, release_id, who, "documents", clock.now(), check=check, change=change)
