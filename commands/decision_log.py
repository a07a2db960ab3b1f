"""An emergency's decision log (QMS 4.6): the bridge record.

What people read is the release's audit events (every decision, recorded where
it is made) merged with the entries people add: `/release log` and the
:pushpin: reaction in the bridge. Both are append-only in the database; a
correction is a new entry pointing at the one it corrects. `source_key` makes
a retried command or a pin Slack delivers twice land once.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from commands import announce, bridge
from commands.clock import Clock
from commands.decision import decide
from commands.errors import InputError, NotFound
from commands.outcome import Actor, Outcome
from commands.text import check_text
from storage import audit
from storage.db import read, transaction
from storage.models import AuditEvent, DecisionLogEntry, Release

LOG_FORM = "/release log REL-12 text…   or   /release log REL-12 correct=<entry number> text…"
TEXT_LIMIT = 3000  # a typed entry: shows whole in one section of a message
PIN_LIMIT = 40_000  # a pinned message: Slack's own limit on a message's text
# Audit actions that are bookkeeping, not decisions someone on the bridge would look for.
_NOT_DECISIONS = frozenset({"bridge_card_updated"})


@dataclass(frozen=True)
class LogLine:
    at: datetime
    actor: str
    kind: str  # "decision" (an audit event) | "command" | "pin"
    action: str  # the audit action, or "entry"
    text: str  # raw, unescaped: renderers escape
    entry_id: int | None = None
    corrects_id: int | None = None


def count(session: Session, release_id: int) -> int:
    return session.exec(select(func.count()).select_from(DecisionLogEntry)
                        .where(DecisionLogEntry.release_id == release_id)).one()


def entries(session: Session, release_id: int) -> list[DecisionLogEntry]:
    return list(session.exec(select(DecisionLogEntry).where(DecisionLogEntry.release_id == release_id)
                             .order_by(DecisionLogEntry.at, DecisionLogEntry.id)))


def merged(trail: list[AuditEvent], log: list[DecisionLogEntry]) -> list[LogLine]:
    """The decision log as people read it, oldest first: decisions and people's entries by when they happened."""
    lines = [LogLine(e.at, e.actor, "decision", e.action, describe(e)) for e in trail
             if e.action not in _NOT_DECISIONS]
    lines += [LogLine(x.at, x.author, x.source, "entry", x.text, x.id, x.corrects_id) for x in log]
    return sorted(lines, key=lambda line: line.at)


def load(db: Engine, release_id: int) -> tuple[Release, list[LogLine]]:
    from commands.release import load as load_release
    with read(db) as session:
        release = load_release(session, release_id)
        bridge.require_emergency(session, release, LOG_FORM)
        return release, merged(audit.trail(session, release_id), entries(session, release_id))


# The names people read for the audit actions of an emergency (as commands/ records them); any other
# action reads as its own words.
_PLAIN = {
    "emergency_opened": "Emergency opened", "requested": "Requested", "vote_go": "Go", "vote_nogo": "No-go",
    "vote_withdrawn": "Vote withdrawn", "approved": "Approved", "approval_revoked": "Approval revoked",
    "assessment_recorded": "Assessment", "assessment_complete": "Assessment complete",
    "deployment_started": "Deployment started", "deployment_success": "Deployed successfully",
    "deployment_rolled_back": "Deployment rolled back", "deployment_failed": "Deployment failed",
    "rollback_decided": "Rollback decided", "emergency_validated": "Validated",
    "deferred_steps_opened": "Deferred steps opened", "deferred_step_recorded": "Deferred step recorded",
    "cancelled": "Cancelled", "bridge_closed": "Bridge closed",
}


def describe(e: AuditEvent) -> str:
    """One audit event as a human line (raw text; the renderer escapes it)."""
    after = e.after or {}
    head = _PLAIN.get(e.action, e.action.replace("_", " ").capitalize())
    if e.action == "emergency_opened":
        head += f" for incident {after.get('incident') or '(none given)'}" + (
            ", security-related" if after.get("security") else "")
    elif e.action in ("vote_go", "vote_nogo") and (after.get("vote") or {}).get("role"):
        head += f" as {after['vote']['role']}"
    elif e.action == "deferred_step_recorded":
        head += f": {after.get('label') or after.get('step') or '(a step)'}"
        late = after.get("late_by_minutes") or 0
        head += f", {_late(late)} late" if after.get("late") and late else ", in time"
    return head + (f": {e.reason}" if e.reason else "")


def _late(minutes: int) -> str:
    days, rest = divmod(int(minutes), 24 * 60)
    return (f"{days}d " if days else "") + f"{rest // 60}h{rest % 60:02d}m"


def _ts_time(ts: str) -> datetime:
    return datetime.fromtimestamp(float(ts), tz=timezone.utc)


def _insert(session: Session, **values) -> bool:
    """Insert unless an entry with this source_key exists (a retry). True if this call added it."""
    ins = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = (ins(DecisionLogEntry).values(**values).on_conflict_do_nothing(index_elements=["source_key"])
            .returning(DecisionLogEntry.id))
    return session.execute(stmt).first() is not None


def add_entry(db: Engine, actor: Actor, release_id: int, text: str, clock: Clock, *, source_key: str,
              correct: str | None = None) -> Outcome:
    """`/release log REL-n text…` (and `correct=<entry>`): an entry by the person typing it, now."""
    text = (text or "").strip()
    if not text:
        raise InputError("a log entry needs its text", form=LOG_FORM)
    check_text(text, "the entry", LOG_FORM)
    if len(text) > TEXT_LIMIT:
        raise InputError(f"a log entry is at most {TEXT_LIMIT} characters; split it in two", form=LOG_FORM)
    corrects = None
    if correct is not None:
        if not correct.isdigit() or len(correct) > 9:
            raise InputError("correct= takes the number of the entry it corrects, e.g. correct=3", form=LOG_FORM)
        corrects = int(correct)
    now = clock.now()

    def replay(d) -> Outcome | None:
        bridge.require_emergency(d.session, d.release, LOG_FORM)
        seen = d.session.exec(select(DecisionLogEntry).where(DecisionLogEntry.source_key == source_key)).first()
        return Outcome(f"Already logged as entry {seen.id}.", d.release) if seen else None

    def check(d) -> None:
        if corrects is not None:
            target = d.session.get(DecisionLogEntry, corrects)
            if target is None or target.release_id != d.release.id:
                raise NotFound(f"{d.release.ref} has no log entry {corrects}; `/release show {d.release.ref}` "
                               "lists its entries with their numbers", form=LOG_FORM)

    def change(d) -> Outcome:
        _insert(d.session, release_id=d.release.id, at=now, recorded_at=now, author=actor.user_id,
                recorded_by=actor.user_id, text=text, source="command", source_key=source_key,
                corrects_id=corrects)
        announce.bridge_card(d.session, d.release, now, f"log:{source_key}")
        what = f"a correction of entry {corrects}" if corrects else "an entry"
        return Outcome(f"Logged {what} in {d.release.ref}'s decision log.", d.release, changed=True)

    return decide(db, release_id, actor.user_id, "log", now, check=check, change=change, replay=replay)


def log_pin(db: Engine, release_id: int, channel: str, ts: str, author: str, text: str, pinned_by: str,
            clock: Clock) -> bool:
    """A message pinned with :pushpin: in the bridge: logged with its own author, text and time, once."""
    from commands.release import load as load_release
    # The message as it was said, all of it (Slack caps a message at 40,000 characters); the log's
    # renderers split it over as many sections as it takes.
    text = (text or "").strip()[:PIN_LIMIT] or "(a message with no text)"
    if not check_text_ok(text):
        return False  # text no database keeps: ignored quietly, like a message the bot cannot read
    now = clock.now()
    with transaction(db) as session:
        release = load_release(session, release_id, lock=True)
        added = _insert(session, release_id=release_id, at=_ts_time(ts), recorded_at=now, author=author,
                        recorded_by=pinned_by, text=text, source="pin", source_key=f"pin:{channel}:{ts}"[:200])
        if added:
            announce.bridge_card(session, release, now, f"pin:{channel}:{ts}")
        return added


def check_text_ok(text: str) -> bool:
    try:
        check_text(text)
        return True
    except InputError:
        return False
