"""What GitHub asked releasebot: one row per deployment protection rule request (issue 14).

A GitHub deployment waits on its environment's protection rule until the app answers (up to 30 days); the
row is what a later vote or the window opening answers, so nothing waits in memory.
"""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import BigInteger, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.columns import _json, _text, _ts

WAITING, APPROVED, REJECTED = "waiting", "approved", "rejected"


class GithubRequest(SQLModel, table=True):
    __tablename__ = "github_request"
    # GitHub asks once per deployment and environment; a redelivery finds its row
    __table_args__ = (UniqueConstraint("deployment_id", "environment", name="uq_github_request_deployment"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    deployment_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    repo: str = Field(max_length=200)
    environment: str = Field(max_length=255)  # GitHub's environment name
    installation_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    callback_url: str = _text(nullable=False)
    run_url: Optional[str] = _text()
    sender: str = Field(max_length=100)  # the GitHub login
    deployer_id: Optional[str] = Field(default=None, max_length=40)  # the Slack user it maps to
    unmapped: Optional[str] = _text()  # why the sender maps to nobody, when it does not
    release_id: Optional[int] = Field(default=None, foreign_key="release.id", index=True)
    service: Optional[str] = Field(default=None, max_length=120)
    release_environment: Optional[str] = Field(default=None, max_length=60)
    sha: Optional[str] = Field(default=None, max_length=80)
    ref: Optional[str] = Field(default=None, max_length=255)
    payload: dict = _json()  # the deployment's own payload (release, version, checklist)
    state: str = Field(default=WAITING, max_length=20, index=True)
    reports: int = 0  # status reports posted (GitHub keeps at most 10 per deployment)
    last_report: Optional[str] = _text()
    comment: Optional[str] = _text()  # the answer given
    received_at: datetime = _ts(nullable=False)
    answered_at: Optional[datetime] = _ts(nullable=True)
