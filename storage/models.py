"""Tables. Every timestamp is stored as UTC; zone names sit beside local rules."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from storage.columns import UTCDateTime, _json, _text, _ts  # noqa: F401  (UTCDateTime: migrations use it)


class Release(SQLModel, table=True):
    __tablename__ = "release"
    # Conflict checks ask "which live releases of this service (or environment)
    # overlap this window?": these make that a range scan, not a table scan.
    # state and id ride along so the free-slot search, which reads months of windows, never leaves the index.
    __table_args__ = (Index("ix_release_window", "start_at", "end_at"),
                      Index("ix_release_service_window", "service", "start_at", "end_at", "state", "id"),
                      Index("ix_release_environment_window", "environment", "start_at", "end_at", "state", "id"),
                      # a feed poll's 304 (commands.agenda.feed_revision) is answered from this index alone
                      Index("ix_release_feed", "start_at", "end_at", "updated_at", "revision", "message_ts", "id"),
                      # the emergency releases of a period (commands.metrics_sql), or of a service (commands.frequency)
                      Index("ix_release_emergency", "environment", "start_at", "state", "service", "id",
                            sqlite_where=text("effective_type = 'emergency'"),
                            postgresql_where=text("effective_type = 'emergency'")))

    id: Optional[int] = Field(default=None, primary_key=True)
    # Slack's trigger_id / view id of the request that created it: a retried
    # delivery or a double submit finds the release it already made.
    request_key: Optional[str] = Field(default=None, unique=True, max_length=255)
    service: str = Field(index=True, max_length=120)
    version: str = Field(max_length=200)
    environment: str = Field(index=True, max_length=60)
    requested_type: str = Field(max_length=20)
    derived_type: str = Field(max_length=20)
    effective_type: str = Field(max_length=20)
    classification_answered: bool = True
    answers: dict = _json()
    misclassified: bool = False
    misclassification_accepted_by: Optional[str] = Field(default=None, max_length=40)
    misclassification_reason: Optional[str] = _text()
    required_roles: dict = _json()  # with alternative sets: every role some set names, at its largest count
    # alternative approver sets (QMS 3.7 emergency: CAB, or RM + EL); null: required_roles is the one set
    approver_sets: Optional[list] = Field(default=None, sa_column=Column(JSON, nullable=True))
    start_at: datetime = _ts(nullable=False)
    end_at: datetime = _ts(nullable=False)
    tz: str = Field(max_length=64)
    duration_minutes: int
    summary: str = _text(nullable=False)
    risk: Optional[str] = _text()
    rollback_plan: Optional[str] = _text()
    links: Optional[str] = _text()
    # the release package (QMS 4.4): links (or text) written before the gate opens; rollback_plan is the third
    release_notes: Optional[str] = _text()
    runbook: Optional[str] = _text()
    requester_id: str = Field(index=True, max_length=40)
    state: str = Field(index=True, max_length=20)
    # Votes belong to a round; a change to version, scope or window starts a
    # new round so earlier votes no longer count (stale-approval dismissal).
    round: int = 1
    approval_seq: int = 0
    revision: int = 0  # bumped on every change; becomes the ICS SEQUENCE
    cancel_reason: Optional[str] = _text()
    channel_id: Optional[str] = Field(default=None, max_length=40)
    message_ts: Optional[str] = Field(default=None, max_length=40)
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)

    @property
    def ref(self) -> str:
        return f"REL-{self.id}"


class Vote(SQLModel, table=True):
    __tablename__ = "vote"
    # One row per person per round: the database, not the handler, makes a
    # double click or a retried delivery a no-op, and stops one person
    # filling two roles.
    __table_args__ = (UniqueConstraint("release_id", "round", "voter_id", name="uq_vote_person_round"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="release.id", index=True)
    round: int
    voter_id: str = Field(max_length=40)
    role: str = Field(max_length=40)
    decision: str = Field(max_length=12)  # go | nogo | withdrawn
    note: Optional[str] = _text()
    decided_at: datetime = _ts(nullable=False)
    # what was true when the vote was cast, for the evidence packet: who held the role then
    # (user ids, groups resolved), and a hash of the effective policy (commands.policy)
    role_holders: Optional[list] = Field(default=None, sa_column=Column(JSON, nullable=True))
    policy_hash: Optional[str] = Field(default=None, max_length=64)


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"
    # commands.metrics: a release's last approval before its deployment, one seek
    __table_args__ = (Index("ix_audit_event_release_action", "release_id", "action", "at"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    release_id: Optional[int] = Field(default=None, foreign_key="release.id", index=True)
    actor: str = Field(max_length=200)
    action: str = Field(index=True, max_length=60)
    at: datetime = _ts(nullable=False)
    reason: Optional[str] = _text()
    before: dict = _json()
    after: dict = _json()
    # The hash chain (storage/audit_chain.py): its place, the previous event's hash and its own, given as
    # its transaction commits (NULL only until then: a committed row without a seq was not written by the bot).
    seq: Optional[int] = Field(default=None, sa_column=Column(BigInteger, unique=True, nullable=True))
    prev_hash: Optional[str] = Field(default=None, max_length=64)
    hash: Optional[str] = Field(default=None, max_length=64)


class Outbox(SQLModel, table=True):
    """Something Slack must be told, written with the decision that caused it."""

    __tablename__ = "outbox"
    # Dead letters keep sent_at NULL: with dead_at in the index the due scan still skips them.
    __table_args__ = (Index("ix_outbox_pending", "sent_at", "dead_at", "due_at"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=255)  # stable: a replay hits the constraint
    release_id: Optional[int] = Field(default=None, foreign_key="release.id", index=True)
    # Rows of one stream go out in id order (a release's announcements); rows
    # without one (reminders) go out whenever they are due.
    stream: Optional[str] = Field(default=None, max_length=60, index=True)
    kind: str = Field(max_length=40)
    payload: dict = _json()
    created_at: datetime = _ts(nullable=False)
    due_at: datetime = _ts(nullable=False)
    attempts: int = 0
    claimed_until: Optional[datetime] = _ts(nullable=True)
    claim_token: Optional[str] = Field(default=None, max_length=64)
    sent_at: Optional[datetime] = _ts(nullable=True)
    last_error: Optional[str] = _text()
    result: Optional[str] = Field(default=None, max_length=200)  # "sent", or why it was skipped
    # A retryable failure is dead-lettered once this is [delivery] dead_letter_after old.
    first_attempt_at: Optional[datetime] = _ts(nullable=True)
    # Dead letter: Slack will not take this row. It no longer holds up its stream; dead_reason
    # stays when an operator re-queues it (`releasebot outbox --retry`), marking its one more try.
    dead_at: Optional[datetime] = _ts(nullable=True)
    dead_reason: Optional[str] = _text()


class Deployment(SQLModel, table=True):
    """One controlled deployment of a release: who, when, with what evidence, and how it ended."""

    __tablename__ = "deployment"
    # a period's deployments by start (commands.population, commands.frequency); the KPIs read deployment_fact,
    # which triggers on this table keep (storage/deployment_facts.py)
    __table_args__ = (Index("ix_deployment_metrics", "started_at", "outcome", "release_id", "finished_at",
                            "rollback_decided_at", "restored_at", "stabilisation_ends_at", "commit_time",
                            "package_complete"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="release.id", unique=True)
    deployer_id: str = Field(max_length=200)
    pipeline: Optional[str] = Field(default=None, max_length=80)  # the API client that reported it
    checklist: dict = _json()
    artifact: Optional[str] = _text()
    commit: Optional[str] = Field(default=None, max_length=80)
    pipeline_url: Optional[str] = _text()
    started_at: datetime = _ts(nullable=False)
    finished_at: Optional[datetime] = _ts(nullable=True)
    outcome: Optional[str] = Field(default=None, max_length=20)  # success | rolled_back | failed
    note: Optional[str] = _text()
    link: Optional[str] = _text()
    rollback_decided_at: Optional[datetime] = _ts(nullable=True)
    rollback_decided_by: Optional[str] = Field(default=None, max_length=80)
    restored_at: Optional[datetime] = _ts(nullable=True)
    stabilisation_ends_at: Optional[datetime] = _ts(nullable=True)
    # provenance and the single controlled path (QMS 4.4, ISO 20000 8.5.3)
    manual: bool = False  # started by hand from Slack, not by a pipeline
    justification: Optional[str] = _text()  # why a manual production deployment
    tag: Optional[str] = Field(default=None, max_length=200)  # the tag the artefact was built from, as reported
    forced: bool = False  # started through a path that skipped a gate check (recorded as a non-conformance)
    package_complete: Optional[bool] = None  # documents and test phases complete at the gate (KPI, QMS 4.2)
    commit_time: Optional[datetime] = _ts(nullable=True)  # the commit's time, when the pipeline reports it (lead time)
    policy_hash: Optional[str] = Field(default=None, max_length=64)


class SignOff(SQLModel, table=True):
    __tablename__ = "signoff"
    __table_args__ = (UniqueConstraint("release_id", "role", name="uq_signoff_role"),
                      UniqueConstraint("release_id", "user_id", name="uq_signoff_person"))

    id: Optional[int] = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="release.id", index=True)
    role: str = Field(max_length=40)
    user_id: str = Field(max_length=40)
    at: datetime = _ts(nullable=False)


class Task(SQLModel, table=True):
    """Work owed after a deployment: the 24-hour follow-up and the retrospective."""

    __tablename__ = "task"
    __table_args__ = (UniqueConstraint("release_id", "kind", name="uq_task_kind"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="release.id", index=True)
    kind: str = Field(max_length=30)  # followup | retrospective
    due_at: datetime = _ts(nullable=False)
    created_at: datetime = _ts(nullable=False)
    done_by: Optional[str] = Field(default=None, max_length=40)
    done_at: Optional[datetime] = _ts(nullable=True)
    details: dict = _json()
    # who owes it, when it is not simply the release's requester (an emergency's
    # deferred steps, a root-cause review owned by the release managers)
    owner_id: Optional[str] = Field(default=None, max_length=200)


class Blackout(SQLModel, table=True):
    """A freeze: one-off or recurring (RRULE), in local wall-clock time of an IANA zone."""

    __tablename__ = "blackout"

    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    start_local: datetime = Field(sa_column=Column(DateTime(timezone=False), nullable=False))  # wall clock
    end_local: datetime = Field(sa_column=Column(DateTime(timezone=False), nullable=False))
    tz: str = Field(max_length=64)
    rrule: Optional[str] = _text()
    services: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # empty: every service
    environments: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # empty: all
    subscription_id: Optional[int] = Field(default=None, foreign_key="calendar_subscription.id", index=True)
    created_by: str = Field(max_length=80)
    created_at: datetime = _ts(nullable=False)
    removed_by: Optional[str] = Field(default=None, max_length=80)
    removed_at: Optional[datetime] = _ts(nullable=True)
    revision: int = 0


class BlackoutOccurrence(SQLModel, table=True):
    """Blackouts expanded into UTC intervals over a horizon, so checks are index range queries."""

    __tablename__ = "blackout_occurrence"
    __table_args__ = (Index("ix_blackout_occurrence_window", "start_at", "end_at", "blackout_id"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    blackout_id: int = Field(foreign_key="blackout.id", index=True)
    start_at: datetime = _ts(nullable=False)
    end_at: datetime = _ts(nullable=False)
    # A subscribed calendar is one blackout whose occurrences are its events; each keeps its own title.
    summary: Optional[str] = Field(default=None, max_length=300)
    # Long occurrences are stored in pieces (bounded range queries); these keep the whole occurrence.
    occurrence_start: Optional[datetime] = _ts(nullable=True)
    occurrence_end: Optional[datetime] = _ts(nullable=True)


class CalendarSubscription(SQLModel, table=True):
    """An external ICS calendar whose events are blackouts; the last good copy is kept."""

    __tablename__ = "calendar_subscription"

    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    url: str = _text(nullable=False)
    services: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    environments: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    etag: Optional[str] = _text()
    last_modified: Optional[str] = _text()
    body: Optional[str] = _text()  # the last good ICS text
    fetched_at: Optional[datetime] = _ts(nullable=True)
    last_ok_at: Optional[datetime] = _ts(nullable=True)
    last_error: Optional[str] = _text()
    failing_since: Optional[datetime] = _ts(nullable=True)  # set on the first failure; the warning goes out once
    created_by: str = Field(max_length=80)
    created_at: datetime = _ts(nullable=False)
    removed_at: Optional[datetime] = _ts(nullable=True)


class ReleaseFlag(SQLModel, table=True):
    """A failed planning check (lead time, blackout, conflict) and how it was resolved."""

    __tablename__ = "release_flag"

    id: Optional[int] = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="release.id", index=True)
    kind: str = Field(max_length=20)  # lead_time | blackout | conflict
    detail: str = _text(nullable=False)
    ref: Optional[str] = Field(default=None, max_length=80)  # blackout:3, REL-12
    raised_at: datetime = _ts(nullable=False)
    cleared_at: Optional[datetime] = _ts(nullable=True)  # the window moved and the check now passes
    overridden_by: Optional[str] = Field(default=None, max_length=40)
    override_reason: Optional[str] = _text()
    overridden_at: Optional[datetime] = _ts(nullable=True)


class SeenDelivery(SQLModel, table=True):
    """One delivery from Slack, by its identity (bot.replay.identity), kept for the replay window.

    Inserting the row is the claim: the primary key makes a second delivery of the
    same click, command or submission (a replay, or Slack's retry) fail to insert."""

    __tablename__ = "seen_delivery"

    key: str = Field(primary_key=True, max_length=255)
    seen_at: datetime = _ts(nullable=False, index=True)


class InboxRow(SQLModel, table=True):
    """One acknowledged delivery's after-ack work, written before the ack (bot.inbox).

    A worker claims it with a lease, runs the listener's lazy function on it and
    marks it done; a row whose claimer died is claimable again when its lease runs
    out. Rows of one stream (one person's deliveries) are applied in the order they
    were acknowledged."""

    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_pending", "done_at", "id"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    kind: str = Field(max_length=100)  # the lazy function's name within its listener
    stream: Optional[str] = Field(default=None, max_length=60, index=True)
    body: dict = _json()  # the verified payload, as Bolt parsed it
    context: dict = _json()  # what the ack half left for the lazy half (bot.inbox.CARRIED)
    received_at: datetime = _ts(nullable=False)
    attempts: int = 0
    claimed_until: Optional[datetime] = _ts(nullable=True)
    claim_token: Optional[str] = Field(default=None, max_length=64)
    done_at: Optional[datetime] = _ts(nullable=True)
    result: Optional[str] = Field(default=None, max_length=200)


class Emergency(SQLModel, table=True):
    """The bridge record of an emergency release (QMS 4.6): its incident, bridge, assessment and clock.

    One row per emergency release, made in the transaction that creates the
    release. The bridge's channel is created later by the delivery loop under
    `bridge_key`, so a retry after Slack failed midway never makes a second one."""

    __tablename__ = "emergency"

    id: Optional[int] = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="release.id", unique=True)
    incident: str = Field(max_length=500)  # an id or URL of the incident being fixed
    security: bool = False
    opened_at: datetime = _ts(nullable=False)
    opened_by: str = Field(max_length=200)
    # the bridge: "channel" (conversations.create) or "thread" (in the release channel)
    bridge_key: str = Field(max_length=120, unique=True)
    bridge_kind: Optional[str] = Field(default=None, max_length=10)
    bridge_channel: Optional[str] = Field(default=None, max_length=40)
    bridge_thread_ts: Optional[str] = Field(default=None, max_length=40)
    bridge_fallback_reason: Optional[str] = _text()  # why it is a thread when policy asked for a channel
    card_ts: Optional[str] = Field(default=None, max_length=40)  # the pinned bridge card
    bridge_opened_at: Optional[datetime] = _ts(nullable=True)
    # assessment (QMS 4.6, Assessment row)
    blast_radius: Optional[str] = _text()
    blast_radius_by: Optional[str] = Field(default=None, max_length=200)
    rollback_option: Optional[str] = _text()
    rollback_option_by: Optional[str] = Field(default=None, max_length=200)
    scope_confirmed_by: Optional[str] = Field(default=None, max_length=200)
    scope_confirmed_at: Optional[datetime] = _ts(nullable=True)
    ci_passed_by: Optional[str] = Field(default=None, max_length=200)
    ci_passed_at: Optional[datetime] = _ts(nullable=True)
    assessed_at: Optional[datetime] = _ts(nullable=True)
    # the targets it was opened under (QMS 4.6 assessment < 15 min, 4.2 emergency approval < 30 min)
    assessment_target_minutes: Optional[int] = None
    approval_target_minutes: Optional[int] = None
    approved_at: Optional[datetime] = _ts(nullable=True)
    approver_set: Optional[str] = Field(default=None, max_length=200)  # which alternative set approved
    # validation: the on-call engineer confirms the incident is resolved and no new error patterns appeared
    validated_by: Optional[str] = Field(default=None, max_length=200)
    validated_at: Optional[datetime] = _ts(nullable=True)
    validation_note: Optional[str] = _text()
    closed_by: Optional[str] = Field(default=None, max_length=200)
    closed_at: Optional[datetime] = _ts(nullable=True)
    close_summary: Optional[str] = _text()


class DecisionLogEntry(SQLModel, table=True):
    """An entry people add to an emergency's decision log (the decisions themselves are audit events).

    Append-only, enforced by database triggers like the audit log: a correction is
    a new entry that points at the one it corrects. `source_key` makes a retried
    pin (channel:message ts) or a retried command land once."""

    __tablename__ = "decision_log"

    id: Optional[int] = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="release.id", index=True)
    at: datetime = _ts(nullable=False)  # when it was said: a pinned message's own timestamp
    recorded_at: datetime = _ts(nullable=False)
    author: str = Field(max_length=200)
    recorded_by: str = Field(max_length=200)
    text: str = _text(nullable=False)
    source: str = Field(max_length=20)  # command | pin
    source_key: str = Field(max_length=200, unique=True)
    corrects_id: Optional[int] = Field(default=None, foreign_key="decision_log.id")


# The QMS records added for test evidence, non-conformances, incidents and metrics live in
# storage/quality_models.py; re-exported here so `from storage.models import …` keeps working.
from storage.quality_models import (Incident, MetricSnapshot, NonConformance, TestResult,  # noqa: E402,F401
                                    UnmatchedDeployment, Waiver)
from storage.github_models import GithubRequest  # noqa: E402,F401
from storage.audit_models import AuditChainHead, AuditCheckpoint  # noqa: E402,F401
from storage.deployment_facts import DeploymentFact  # noqa: E402,F401
