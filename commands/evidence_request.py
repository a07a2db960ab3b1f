"""Asking for a release's evidence packet from Slack: release managers and auditors only (others are refused,
and the refusal audited); the packet goes to the asker's DM as an upload through the outbox, made when it is
sent (bot/evidence_render.py's producer), so the request commits before anything is said."""
from __future__ import annotations

from sqlalchemy.engine import Engine

from commands import announce
from commands.clock import Clock
from commands.decision import refuse
from commands.errors import Refused
from commands.outcome import Actor, Outcome
from commands.release import load
from storage import audit
from storage.db import transaction

# Who may take the whole record away: the release managers who run the procedure and the auditors who check it.
READERS = ("release_manager", "auditor")
PRODUCER = "evidence_packet"


def request_packet(db: Engine, actor: Actor, release_id: int, clock: Clock, *, request_key: str,
                   fmt: str = "html") -> Outcome:
    """`request_key`: the delivery's identity (a command's trigger_id, a click's action_ts), so a retried
    delivery queues one upload while a later request gets the record as it is then."""
    now = clock.now()
    with transaction(db) as session:
        release = load(session, release_id)
        try:
            # CouldNotCheck (Slack could not list a group) escapes the transaction: nothing written or audited
            actor.require(READERS, f"The evidence packet of {release.ref} is for release managers and auditors; "
                                   "you hold neither role.", "not_a_reader")
        except Refused as exc:
            return refuse(session, release, actor.user_id, "evidence", exc, now)
        queued = announce.upload(session, key=f"evidence:{release.id}:{actor.user_id}:{request_key}"[:255],
                                 producer=PRODUCER, args={"release_id": release.id, "format": fmt},
                                 user=actor.user_id, now=now, release_id=release.id,
                                 comment=f"The evidence packet of {release.ref} ({fmt.upper()}), as the record "
                                         "stands now.")
        if queued:
            # who took the record away, and when: an auditor asks that too
            audit.record(session, actor=actor.user_id, action="evidence_requested", release_id=release.id, at=now,
                         after={"format": fmt})
        return Outcome(f"The evidence packet of {release.ref} ({fmt.upper()}) is on its way to your DM.", release,
                       changed=queued)
