"""The hash chain, as the evidence packet reports it: each event's place and hash, the chain's verification
and the latest signed checkpoint.

The chain itself is storage.audit_chain (AuditEvent.seq/prev_hash/hash). An event written in a transaction
that has not committed yet has no seq: it reads as "not chained". Any failure of the check is reported,
never raised: a packet that cannot verify the log says so."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from storage.models import AuditEvent


@dataclass(frozen=True)
class ChainStatus:
    available: bool  # this version keeps a hash chain at all
    ok: bool | None  # None: not checked (not available, or the check itself failed)
    text: str  # one sentence a person reads
    count: int | None = None
    head_seq: int | None = None
    head_hash: str | None = None
    checkpoint: dict[str, Any] | None = None  # the latest signed checkpoint: seq, hash, at, fingerprint, text


def link(event: AuditEvent) -> tuple[int | None, str | None, str | None]:
    """(seq, prev_hash, hash) of one event; Nones where the chain is not (yet) recorded."""
    return getattr(event, "seq", None), getattr(event, "prev_hash", None), getattr(event, "hash", None)


def status(db: Engine) -> ChainStatus:
    try:
        from storage import audit_chain  # noqa: F401  (built by the hash-chain work; absent before it)
    except ImportError:
        return ChainStatus(False, None, "not available: this version of releasebot keeps no hash chain, so the "
                                        "trail below cannot be verified independently")
    try:
        return _verified(db, audit_chain)
    except Exception as exc:  # noqa: BLE001 - the packet reports a failed check instead of failing itself
        return ChainStatus(True, None, f"could not be verified while making this packet ({type(exc).__name__}: "
                                       f"{exc}); run `releasebot audit verify`")


def _verified(db: Engine, audit_chain) -> ChainStatus:
    result = audit_chain.verify(db)
    ok = bool(getattr(result, "ok", False))
    count = getattr(result, "count", None)
    head_seq = getattr(result, "head_seq", None)
    head_hash = getattr(result, "head_hash", None)
    if ok:
        text = f"verified: {count} events, unbroken, head {head_hash} at seq {head_seq}"
    else:
        bad = result.first_bad
        text = (f"BROKEN at seq {bad.seq} (event id {bad.id}): {bad.kind}, {bad.detail}; run `releasebot audit "
                "verify`" if bad is not None else "BROKEN: run `releasebot audit verify`")
    checkpoint = None
    latest = getattr(audit_chain, "latest_checkpoint", None)
    if latest is not None:
        cp = latest(db)
        if cp is not None:
            checkpoint = {k: getattr(cp, k, None) for k in ("seq", "hash", "at", "fingerprint", "text")}
    return ChainStatus(True, ok, text, count, head_seq, head_hash, checkpoint)
