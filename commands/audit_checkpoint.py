"""Signed checkpoints of the audit chain: the outside witness.

A chain alone proves nothing against someone who can rewrite the whole table and recompute every hash.
So the bot signs the head (seq, hash, time) with Ed25519 and posts it to AUDIT_CHANNEL, where the
database owner cannot reach. Pasted back whole (`releasebot audit verify --checkpoint '…'`), it proves
the log still holds that hash at that seq, or fails loudly.

The signed bytes (version 1), UTF-8:
  "releasebot-audit-checkpoint/1\\nseq=<seq>\\nhash=<hex>\\ntime=<ISO 8601 in UTC, seconds, Z>\\n"
The fingerprint is OpenSSH's form: "SHA256:" + unpadded base64 of SHA-256 over the raw 32-byte public key.
"""
from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session

from storage import audit, audit_chain, outbox
from storage.db import read, transaction
from storage.models import AuditCheckpoint

HEADER = "releasebot audit checkpoint"
KIND = "audit_checkpoint"  # the outbox row that posts it
SIGNED_PREFIX = "releasebot-audit-checkpoint/1"
KEY_FORM = ("an Ed25519 private key in PEM (-----BEGIN PRIVATE KEY-----…), or the path of a PEM file, as "
            "`releasebot audit keygen` or `openssl genpkey -algorithm ed25519` writes it")


class AuditKeyError(ValueError):
    pass


def load_key(value: str) -> Ed25519PrivateKey:
    """RELEASEBOT_AUDIT_KEY: PEM text or a path to a PEM file. Errors never quote the key."""
    value = value.strip()
    if "-----BEGIN" in value:
        pem, where = value.replace("\\n", "\n").encode(), "its PEM text"
    else:
        path = Path(value).expanduser()
        try:
            pem, where = path.read_bytes(), f"the file {path}"
        except OSError as exc:
            raise AuditKeyError(f"it names a file that cannot be read ({exc.strerror or exc})") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        # cryptography says TypeError for "encrypted, and no password given"
        reason = ("it is encrypted; use a key without a passphrase" if isinstance(exc, TypeError)
                  else "it is not a PEM private key")
        raise AuditKeyError(f"{where}: {reason}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyError(f"{where}: it is a {type(key).__name__.replace('_', '').replace('PrivateKey', '')} key, "
                        "not Ed25519")
    return key


def keygen() -> bytes:
    """A new private key in PKCS#8 PEM, the form `openssl genpkey -algorithm ed25519` writes."""
    return Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption())


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return "SHA256:" + base64.b64encode(hashlib.sha256(_raw(public)).digest()).decode().rstrip("=")


def _time(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def signed_bytes(seq: int, hash_: str, at: datetime) -> bytes:
    return f"{SIGNED_PREFIX}\nseq={seq}\nhash={hash_}\ntime={_time(at)}\n".encode()


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    at: datetime
    fingerprint: str
    public_key: str  # base64 of the raw 32 bytes
    signature: str  # base64 of the 64 bytes

    def text(self) -> str:
        """What is posted and pasted back: short, one fact a line."""
        return (f"{HEADER}\nseq: {self.seq}\nhash: {self.hash}\ntime: {_time(self.at)}\n"
                f"key: {self.fingerprint}\npublic key: {self.public_key}\nsignature: {self.signature}")


def sign(key: Ed25519PrivateKey, seq: int, hash_: str, at: datetime) -> Checkpoint:
    at = at.astimezone(timezone.utc).replace(microsecond=0)
    signature = key.sign(signed_bytes(seq, hash_, at))
    return Checkpoint(seq, hash_, at, fingerprint(key), base64.b64encode(_raw(key.public_key())).decode(),
                      base64.b64encode(signature).decode())


_LINE = re.compile(r"^\s*(seq|hash|time|key|public key|signature)\s*:\s*(\S+)\s*$", re.I)
CHECKPOINT_FORM = (f"the checkpoint message pasted whole: '{HEADER}' and then the lines seq:, hash:, time:, key:, "
                   "public key: and signature:")


def parse(posted: str) -> Checkpoint:
    """The posted text, as a person copies it out of Slack (code fences, quote marks and bold survive)."""
    found: dict[str, str] = {}
    for line in posted.replace("```", "\n").splitlines():
        m = _LINE.match(line.strip().lstrip(">").strip().strip("*_`"))
        if m:
            found.setdefault(m.group(1).lower(), m.group(2).strip("*_`"))
    missing = [k for k in ("seq", "hash", "time", "key", "public key", "signature") if k not in found]
    if missing:
        raise ValueError(f"this is not a whole checkpoint (no {', '.join(missing)} line); paste {CHECKPOINT_FORM}")
    if not found["seq"].isdigit() or not re.fullmatch(r"[0-9a-f]{64}", found["hash"]):
        raise ValueError(f"its seq or hash is malformed; paste {CHECKPOINT_FORM}")
    try:
        at = datetime.strptime(found["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise ValueError(f"its time '{found['time']}' is not like 2026-11-23T09:00:00Z; paste {CHECKPOINT_FORM}") from None
    return Checkpoint(int(found["seq"]), found["hash"], at, found["key"], found["public key"], found["signature"])


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    lines: list[str]  # what was proved, or what failed, one fact each


def check(cp: Checkpoint, source, trusted: Optional[str] = None) -> CheckResult:
    """Signature valid for the key it names AND (when given) the trusted fingerprint, AND the log holds
    that hash at that seq. `source`: a Session or Connection (read-only use)."""
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(cp.public_key, validate=True))
        public.verify(base64.b64decode(cp.signature, validate=True), signed_bytes(cp.seq, cp.hash, cp.at))
    except (InvalidSignature, ValueError):
        return CheckResult(False, ["the checkpoint's signature is not valid: the text was altered, or it was "
                                   "not signed by the key it names"])
    if fingerprint(public) != cp.fingerprint:
        return CheckResult(False, [f"the checkpoint names key {cp.fingerprint} but carries another public key "
                                   f"({fingerprint(public)}): forged"])
    if trusted and trusted != cp.fingerprint:
        return CheckResult(False, [f"the checkpoint was signed by key {cp.fingerprint}, not by this bot's key "
                                   f"{trusted}: it is not one of ours"])
    lines = [f"signature valid, key {cp.fingerprint}" + ("" if trusted else
                                                         " (compare it with the fingerprint recorded at set-up)")]
    held = (0, audit_chain.GENESIS) if cp.seq == 0 else audit_chain.hash_at(source, cp.seq)  # 0: an empty log
    if held is None:
        return CheckResult(False, lines + [f"the log has no event at seq {cp.seq}: it was cut back or rewritten "
                                           f"since {_time(cp.at)}"])
    if held[1] != cp.hash:
        return CheckResult(False, lines + [f"the event at seq {cp.seq} (id {held[0]}) has hash {held[1]}, not the "
                                           f"checkpoint's {cp.hash}: the log was rewritten since {_time(cp.at)}"])
    lines.append(f"the log still holds hash {cp.hash[:16]}… at seq {cp.seq}, as checkpointed at {_time(cp.at)}")
    return CheckResult(True, lines)


def period_of(now: datetime, every: timedelta) -> str:
    seconds = int(every.total_seconds())
    return f"every-{seconds}:{int(now.timestamp()) // seconds}"


def make(engine: Engine, key: Ed25519PrivateKey, now: datetime, *, period: str, by: str,
         channel: Optional[str]) -> Optional[AuditCheckpoint]:
    """Sign the head and keep it; queue its post when there is a channel. None if this period has one
    already (another process, or an earlier tick): one checkpoint a period, however many processes."""
    with transaction(engine) as session:
        seq, head = audit_chain.take_head(session)  # locked: the head cannot move while it is signed
        cp = sign(key, seq, head, now)
        values = dict(period=period, seq=cp.seq, hash=cp.hash, at=cp.at, fingerprint=cp.fingerprint,
                      signature=cp.signature, text=cp.text(), channel=channel, by=by)
        ins = (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)
        added = session.execute(ins(AuditCheckpoint).values(**values)
                                .on_conflict_do_nothing(index_elements=["period"]).returning(AuditCheckpoint.id)).first()
        if added is None:
            return None
        if channel:
            outbox.enqueue(session, key=f"audit-checkpoint:{period}", kind=KIND, at=now,
                           payload={"channel": channel, "text": cp.text(), "checkpoint_id": added.id})
        # After the signature: the checkpoint's own event is the first one the next checkpoint covers.
        audit.record(session, actor=by, action="audit_checkpoint", at=now,
                     after={"seq": cp.seq, "hash": cp.hash, "fingerprint": cp.fingerprint, "period": period,
                            "posted_to": channel})
        return session.get(AuditCheckpoint, added.id)


def due(engine: Engine, key: Optional[Ed25519PrivateKey], now: datetime, every: timedelta,
        channel: Optional[str]) -> Optional[AuditCheckpoint]:
    """The scheduler's tick: this period's checkpoint, if no process has made it yet."""
    if key is None:
        return None
    period = period_of(now, every)
    with read(engine) as session:  # the usual answer is "made already": no write lock for that
        if session.scalar(select(AuditCheckpoint.id).where(AuditCheckpoint.period == period)) is not None:
            return None
    return make(engine, key, now, period=period, by="releasebot", channel=channel)


def manual(engine: Engine, key: Ed25519PrivateKey, now: datetime, by: str,
           channel: Optional[str]) -> Optional[AuditCheckpoint]:
    return make(engine, key, now, period=f"manual:{now.astimezone(timezone.utc).isoformat()}", by=by, channel=channel)


def latest(session: Session) -> Optional[AuditCheckpoint]:
    return audit_chain.latest_checkpoint(session)
