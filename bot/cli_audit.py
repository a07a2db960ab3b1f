"""`releasebot audit REL-n | verify [--checkpoint TEXT] | checkpoint | keygen [-o FILE]`.

None of them migrates: a schema behind the code is said, with exit 2, and the database is left as it is.
REL-n and verify only read. checkpoint writes one checkpoint row, its audit event and its post's outbox
row (a running bot posts it); keygen touches no database.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bot.config import ConfigError, operator


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="releasebot audit", description="The audit record and its tamper evidence.")
    parser.add_argument("what", metavar="REL-n|verify|checkpoint|keygen",
                        help="REL-n: a release's full record (text or --format json); verify: walk the hash chain (read-only); "
                             "checkpoint: sign the chain's head now and post it to AUDIT_CHANNEL; keygen: write a "
                             "new Ed25519 key for RELEASEBOT_AUDIT_KEY")
    parser.add_argument("--checkpoint", metavar="TEXT", help="verify: a posted checkpoint, pasted whole; proves the "
                                                            "log still holds its hash at its seq")
    parser.add_argument("--fingerprint", metavar="SHA256:…", help="verify: the key fingerprint recorded at set-up "
                                                                  "(default: RELEASEBOT_AUDIT_KEY's, when set)")
    parser.add_argument("-o", "--out", metavar="FILE", help="keygen: write the PEM here (mode 0600), not to stdout")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="REL-n: text (default), the record as people read it; json: every row, for tools")
    args = parser.parse_args(argv)
    if args.what == "keygen":
        return _keygen(args.out)
    if args.what == "verify":
        return _verify(args.checkpoint, args.fingerprint)
    if args.what == "checkpoint":
        return _checkpoint()
    if args.checkpoint or args.fingerprint or args.out:
        parser.error("--checkpoint and --fingerprint go with verify, --out with keygen")
    from bot import cli_evidence
    from bot.cli import _database
    return cli_evidence.run_audit(args.what, args.format, _database)  # read-only: it never migrates


def _engine():
    from bot.cli import _database
    return _database(migrate=False)


def _key_from_env(required: bool):
    from bot.audit_config import audit_settings
    problems: list[str] = []
    channel, key = audit_settings(lambda k: (os.environ.get(k) or "").strip(), problems)
    if problems:
        raise ConfigError("; ".join(problems) + ".")
    if required and key is None:
        raise ConfigError("RELEASEBOT_AUDIT_KEY is not set: a checkpoint is signed with it. Run "
                          "`releasebot audit keygen -o audit-key.pem` once and set RELEASEBOT_AUDIT_KEY to that path.")
    return channel, key


def _keygen(out: str | None) -> int:
    from cryptography.hazmat.primitives import serialization

    from commands.audit_checkpoint import fingerprint, keygen
    pem = keygen()
    fp = fingerprint(serialization.load_pem_private_key(pem, password=None))
    if out:
        path = Path(out)
        if path.exists():
            print(f"{path} exists; not overwriting a key (checkpoints signed with it would no longer verify "
                  "against the bot's key). Choose another path.", file=sys.stderr)
            return 1
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        print(f"wrote an Ed25519 private key to {path}; set RELEASEBOT_AUDIT_KEY={path}")
    else:
        sys.stdout.write(pem.decode())
    # stderr: the PEM on stdout stays a clean file when redirected
    print(f"fingerprint: {fp} (write it down: each checkpoint names it, and `audit verify` compares)",
          file=sys.stderr)
    return 0


def _verify(posted: str | None, trusted: str | None) -> int:
    from commands import audit_checkpoint
    from storage import audit_chain
    cp = None
    if posted is not None:
        try:
            cp = audit_checkpoint.parse(posted)
        except ValueError as exc:
            print(f"--checkpoint: {exc}", file=sys.stderr)
            return 2
    if trusted is None and os.environ.get("RELEASEBOT_AUDIT_KEY"):
        trusted = audit_checkpoint.fingerprint(_key_from_env(required=True)[1])
    engine = _engine()
    try:
        with audit_chain.snapshot(engine) as conn:
            result = audit_chain.verify(conn)
            latest = audit_chain.latest_checkpoint(conn)
            checked = audit_checkpoint.check(cp, conn, trusted) if cp is not None else None
    finally:
        engine.dispose()
    ok = result.ok and (checked is None or checked.ok)
    if result.ok:
        print(f"audit log verified: {result.count} events, one unbroken chain")
        print(f"head: seq {result.head_seq}, hash {result.head_hash}")
    else:
        bad = result.first_bad
        print(f"AUDIT LOG BROKEN: {bad.line()}")
        print(f"the chain holds up to seq {result.head_seq} ({result.count} events, hash {result.head_hash})")
    if latest is not None:
        print(f"latest checkpoint: seq {latest.seq}, hash {latest.hash}, signed {latest.at:%Y-%m-%dT%H:%M:%SZ} "
              f"with key {latest.fingerprint}" + (f", posted to {latest.channel}" if latest.channel else ", not posted"))
    else:
        print("latest checkpoint: none")
    if checked is not None:
        print(("CHECKPOINT HOLDS: " if checked.ok else "CHECKPOINT FAILED: ") + "; ".join(checked.lines))
    return 0 if ok else 1


def _checkpoint() -> int:
    from commands import audit_checkpoint
    from commands.clock import SystemClock
    channel, key = _key_from_env(required=True)
    engine = _engine()
    try:
        made = audit_checkpoint.manual(engine, key, SystemClock().now(), by=operator(), channel=channel)
    finally:
        engine.dispose()
    print(made.text)
    print(f"posted to {channel} by a running releasebot at its next tick" if channel else
          "not posted: AUDIT_CHANNEL is not set (kept in the database; `audit verify` shows it)")
    return 0
