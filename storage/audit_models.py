"""The audit chain's head and its signed checkpoints (storage/audit_chain.py, commands/audit_checkpoint.py)."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import BigInteger, Column
from sqlmodel import Field, SQLModel

from storage.columns import _text, _ts

HEAD_ID = 1


class AuditChainHead(SQLModel, table=True):
    """One row: the last chained event. Taken FOR UPDATE (PostgreSQL) by every transaction that writes an
    audit event, so writers append one at a time and the chain never forks."""

    __tablename__ = "audit_chain_head"

    id: int = Field(default=HEAD_ID, primary_key=True)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    hash: str = Field(max_length=64)


class AuditCheckpoint(SQLModel, table=True):
    """A signed head (seq, hash, time), posted to AUDIT_CHANNEL: a witness the database owner cannot rewrite."""

    __tablename__ = "audit_checkpoint"

    id: Optional[int] = Field(default=None, primary_key=True)
    # "every-86400:20415" (the policy's period and its number) or "manual:<time>": one checkpoint per period
    period: str = Field(unique=True, max_length=80)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    hash: str = Field(max_length=64)
    at: datetime = _ts(nullable=False)
    fingerprint: str = Field(max_length=80)
    signature: str = Field(max_length=120)
    text: str = _text(nullable=False)  # exactly what was posted
    channel: Optional[str] = Field(default=None, max_length=40)  # None: AUDIT_CHANNEL was not set
    by: str = Field(max_length=200)
