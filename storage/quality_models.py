"""The quality records (QMS 4.2, 4.3, 6.2): test evidence and waivers, the non-conformance
register, deployments reported without an approved release, incidents, and frozen metric reports."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.columns import _json, _text, _ts


class NonConformance(SQLModel, table=True):
    """QMS §6.2: something that happened outside the procedure, and its corrective action.

    Its register id is NC-<id>. The life cycle is open -> action_planned -> actioned ->
    verified -> closed; verification and closure belong to a release manager who is not
    the owner."""

    __tablename__ = "nonconformance"
    __table_args__ = (UniqueConstraint("kind", "subject", name="uq_nonconformance_subject"),
                      # "a second of the same kind for the same service within 90 days" is a range scan
                      Index("ix_nonconformance_repeat", "service", "kind", "at"),
                      Index("ix_nonconformance_due", "state", "due_at"))

    id: Optional[int] = Field(default=None, primary_key=True)
    release_id: Optional[int] = Field(default=None, foreign_key="release.id", index=True)
    deployment_id: Optional[int] = Field(default=None, foreign_key="deployment.id")
    unmatched_id: Optional[int] = Field(default=None, foreign_key="unmatched_deployment.id")
    service: Optional[str] = Field(default=None, max_length=120)
    kind: str = Field(max_length=60)
    # what it is about, unique per kind (commands.nonconformance): recorded once however often it is seen
    subject: Optional[str] = Field(default=None, max_length=200)
    detail: str = _text(nullable=False)
    reported_by: str = Field(max_length=200)
    at: datetime = _ts(nullable=False)  # detected at
    state: str = Field(default="open", max_length=20)
    due_at: Optional[datetime] = _ts(nullable=True)  # corrective action due (5 business days, policy)
    owner_id: Optional[str] = Field(default=None, max_length=40)
    action: Optional[str] = _text()  # the corrective action planned
    planned_by: Optional[str] = Field(default=None, max_length=40)
    planned_at: Optional[datetime] = _ts(nullable=True)
    evidence: Optional[str] = _text()  # evidence of the fix
    actioned_by: Optional[str] = Field(default=None, max_length=40)
    actioned_at: Optional[datetime] = _ts(nullable=True)
    verified_by: Optional[str] = Field(default=None, max_length=40)
    verified_at: Optional[datetime] = _ts(nullable=True)
    closed_by: Optional[str] = Field(default=None, max_length=40)
    closed_at: Optional[datetime] = _ts(nullable=True)
    # a second of the same kind for the same service within the repeat window: a formal
    # corrective action, whose root cause must be written before closure (QMS 6.2)
    repeat: bool = False
    repeat_of: Optional[int] = Field(default=None, foreign_key="nonconformance.id")
    root_cause: Optional[str] = _text()
    escalated_at: Optional[datetime] = _ts(nullable=True)

    @property
    def ref(self) -> str:
        return f"NC-{self.id}"


class TestResult(SQLModel, table=True):
    """One reported result of a test phase (QMS 4.3) for one artefact; the latest per phase counts."""

    __tablename__ = "test_result"
    __test__ = False  # not a pytest class
    __table_args__ = (Index("ix_test_result_phase", "release_id", "phase", "id"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="release.id")
    phase: str = Field(max_length=40)  # unit | integration | system | performance | security | regression | uat | infrastructure
    status: str = Field(max_length=10)  # passed | failed
    artifact: Optional[str] = Field(default=None, max_length=300)
    url: Optional[str] = _text()
    summary: Optional[str] = _text()
    reported_by: str = Field(max_length=200)  # "U123", or "pipeline:ci", or "U123 via pipeline:ci"
    source: str = Field(max_length=20)  # pipeline | slack
    at: datetime = _ts(nullable=False)


class Waiver(SQLModel, table=True):
    """A release manager's written exception for one required item: a test phase or a document."""

    __tablename__ = "waiver"
    __table_args__ = (Index("ix_waiver_release", "release_id", "item"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="release.id")
    item: str = Field(max_length=60)  # "phase:performance", "document:runbook"
    reason: str = _text(nullable=False)
    by: str = Field(max_length=40)
    at: datetime = _ts(nullable=False)


class UnmatchedDeployment(SQLModel, table=True):
    """A deployment reported (pipeline API, GitHub) that matches no approved release: the population
    an auditor samples must list these too."""

    __tablename__ = "unmatched_deployment"

    id: Optional[int] = Field(default=None, primary_key=True)
    # the delivery's own identity (an API request key, a GitHub deployment id): a retry lands once
    external_id: Optional[str] = Field(default=None, max_length=200, unique=True)
    source: str = Field(max_length=20)  # api | github
    release_id: Optional[int] = Field(default=None, foreign_key="release.id", index=True)  # named but not approved
    service: Optional[str] = Field(default=None, max_length=120)
    environment: Optional[str] = Field(default=None, max_length=60)
    status: str = Field(max_length=20)
    artifact: Optional[str] = _text()
    commit: Optional[str] = Field(default=None, max_length=80)
    tag: Optional[str] = Field(default=None, max_length=200)
    actor: Optional[str] = Field(default=None, max_length=200)
    pipeline: Optional[str] = Field(default=None, max_length=80)
    url: Optional[str] = _text()
    reported_at: datetime = _ts(nullable=False, index=True)
    details: dict = _json()


class Incident(SQLModel, table=True):
    """An incident from the incident tool, linked to the release that caused it (time to restore,
    change failure rate)."""

    __tablename__ = "incident"
    __table_args__ = (Index("ix_incident_service_opened", "service", "opened_at"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, unique=True)  # the incident tool's id
    service: str = Field(max_length=120)
    opened_at: datetime = _ts(nullable=False)
    resolved_at: Optional[datetime] = _ts(nullable=True)
    severity: Optional[str] = Field(default=None, max_length=20)
    caused_by_release_id: Optional[int] = Field(default=None, foreign_key="release.id", index=True)
    reported_by: str = Field(max_length=200)
    recorded_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class MetricSnapshot(SQLModel, table=True):
    """A metrics report as it was posted (QMS 6.1): frozen, so re-linking later changes nothing reported."""

    __tablename__ = "metric_snapshot"
    __table_args__ = (UniqueConstraint("kind", "period", name="uq_metric_snapshot_period"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    kind: str = Field(max_length=20)  # weekly | monthly
    period: str = Field(max_length=20)  # "2026-11", "2026-W48"
    from_at: datetime = _ts(nullable=False)
    to_at: datetime = _ts(nullable=False)
    figures: dict = _json()
    digest: str = Field(max_length=64)  # sha256 of the canonical figures
    created_at: datetime = _ts(nullable=False)
