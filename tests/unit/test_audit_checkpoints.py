"""Signed checkpoints: the head signed with Ed25519, kept once per period, and checked against the log.
A full rewrite with every hash recomputed passes the chain but not the checkpoint."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session, select

from commands import audit_checkpoint as ac
from commands.policy import Policy, PolicyError
from storage import audit_chain
from storage.models import AuditCheckpoint, AuditEvent, Outbox

from conftest import START
from test_audit_chain import rewrite, write

KEY = Ed25519PrivateKey.generate()
DAY = timedelta(hours=24)


def checkpoints(db) -> list[AuditCheckpoint]:
    with Session(db) as s:
        return list(s.exec(select(AuditCheckpoint).order_by(AuditCheckpoint.id)))


def check(db, text: str, trusted=None) -> ac.CheckResult:
    with audit_chain.snapshot(db) as conn:
        return ac.check(ac.parse(text), conn, trusted)


def test_a_checkpoint_signs_the_head_and_its_text_verifies(db):
    write(db, 4)
    cp = ac.due(db, KEY, START, DAY, "C0AUDIT")
    head = audit_chain.verify(db)
    with audit_chain.snapshot(db) as conn:
        assert (cp.seq, cp.hash) == (4, audit_chain.hash_at(conn, 4)[1])
    assert cp.fingerprint == ac.fingerprint(KEY) and cp.fingerprint in cp.text
    result = check(db, cp.text, trusted=ac.fingerprint(KEY))
    assert result.ok, result.lines
    assert head.ok and head.head_seq == 5
    # the checkpoint is an audit event itself, after the head it signed
    with Session(db) as s:
        last = s.exec(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
    assert (last.seq, last.action, last.actor, last.after["seq"]) == (5, "audit_checkpoint", "releasebot", 4)
    assert audit_chain.verify(db).ok


def test_a_full_rewrite_with_recomputed_hashes_is_caught_by_the_checkpoint(db):
    write(db, 4)
    cp = ac.due(db, KEY, START, DAY, None)
    rewrite(db, 2, "nothing to see")
    assert audit_chain.verify(db).ok  # the chain alone cannot tell
    result = check(db, cp.text)
    assert not result.ok
    assert "seq 4" in result.lines[-1] and "rewritten" in result.lines[-1]


def test_a_log_cut_back_below_the_checkpoint_fails(db):
    write(db, 4)
    cp = ac.due(db, KEY, START, DAY, None)
    from test_audit_chain import sql
    sql(db, "DELETE FROM audit_event WHERE seq >= 3", "UPDATE audit_chain_head SET seq = 2, hash = "
        "(SELECT hash FROM audit_event WHERE seq = 2)")
    assert audit_chain.verify(db).ok
    result = check(db, cp.text)
    assert not result.ok and "no event at seq 4" in result.lines[-1]


def test_an_altered_or_foreign_checkpoint_fails(db):
    write(db, 3)
    cp = ac.due(db, KEY, START, DAY, None)
    altered = cp.text.replace("seq: 3", "seq: 2")
    assert not check(db, altered).ok and "signature is not valid" in check(db, altered).lines[0]
    other = Ed25519PrivateKey.generate()
    foreign = ac.sign(other, 3, cp.hash, START).text()
    assert check(db, foreign).ok  # a valid signature by some key, and the hash is right...
    result = check(db, foreign, trusted=ac.fingerprint(KEY))
    assert not result.ok and "not one of ours" in result.lines[0]  # ...but not the bot's key
    mixed = foreign.replace(f"key: {ac.fingerprint(other)}", f"key: {ac.fingerprint(KEY)}")
    assert not check(db, mixed).ok and "forged" in check(db, mixed).lines[0]


def test_the_posted_text_pasted_from_slack_parses(db):
    write(db, 2)
    cp = ac.due(db, KEY, START, DAY, None)
    from bot.messages.audit import checkpoint_message
    fallback, blocks = checkpoint_message(cp.text)
    assert fallback == cp.text and len(blocks) == 1 and len(blocks[0]["text"]["text"]) <= 3000
    assert not any(c in cp.text for c in "<>&")  # nothing for Slack to link or escape
    pasted = "> " + blocks[0]["text"]["text"].replace("\n", "\n> ")  # quoted, code fences and all
    assert check(db, pasted).ok
    with pytest.raises(ValueError, match="no signature line"):
        ac.parse(cp.text.rsplit("\n", 1)[0])


def test_one_checkpoint_a_period_however_many_ticks_and_processes(db):
    write(db, 2)
    results = []
    barrier = threading.Barrier(4)

    def tick():
        barrier.wait()
        results.append(ac.due(db, KEY, START + timedelta(hours=3), DAY, "C0AUDIT"))

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    assert ac.due(db, KEY, START + timedelta(hours=14), DAY, "C0AUDIT") is None  # same UTC day
    assert ac.due(db, KEY, START + timedelta(hours=15), DAY, "C0AUDIT") is not None  # the next one (00:00 UTC)
    assert len(checkpoints(db)) == 2
    with Session(db) as s:
        rows = list(s.exec(select(Outbox).where(Outbox.kind == ac.KIND)))
    assert len(rows) == 2 and {r.payload["channel"] for r in rows} == {"C0AUDIT"}
    assert len({r.key for r in rows}) == 2


def test_without_a_channel_it_is_kept_not_posted(db):
    cp = ac.due(db, KEY, START, DAY, None)
    assert cp.channel is None and cp.seq == 0
    with Session(db) as s:
        assert not list(s.exec(select(Outbox).where(Outbox.kind == ac.KIND)))
    assert check(db, cp.text).ok  # an empty log's head is the genesis hash


def test_manual_checkpoints_are_their_own(db):
    write(db, 1)
    a = ac.manual(db, KEY, START, by="cli:ops", channel=None)
    b = ac.manual(db, KEY, START + timedelta(seconds=1), by="cli:ops", channel=None)
    assert a and b and (a.seq, b.seq) == (1, 2)
    assert audit_chain.latest_checkpoint(db).id == b.id


def test_keys_load_from_pem_text_or_a_path_and_bad_ones_are_named(tmp_path):
    pem = ac.keygen()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    key = ac.load_key(pem.decode())
    path = tmp_path / "k.pem"
    path.write_bytes(pem)
    assert ac.fingerprint(ac.load_key(str(path))) == ac.fingerprint(key)
    assert ac.fingerprint(key).startswith("SHA256:") and len(ac.fingerprint(key)) == 50
    with pytest.raises(ac.AuditKeyError, match="cannot be read"):
        ac.load_key(str(tmp_path / "missing.pem"))
    with pytest.raises(ac.AuditKeyError, match="not a PEM private key"):
        ac.load_key("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----")
    from cryptography.hazmat.primitives.asymmetric import ec
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(ac.AuditKeyError, match="not Ed25519"):
        ac.load_key(other.decode())


def test_a_bad_key_or_channel_stops_start_up_naming_it(tmp_path):
    from bot.config import ConfigError, load_config
    base = {"SLACK_BOT_TOKEN": "xoxb-t", "SLACK_SIGNING_SECRET": "s", "RELEASE_CHANNEL": "C0REL"}
    with pytest.raises(ConfigError) as err:
        load_config({**base, "RELEASEBOT_AUDIT_KEY": str(tmp_path / "nope.pem"), "AUDIT_CHANNEL": "#audit"})
    message = str(err.value)
    assert "RELEASEBOT_AUDIT_KEY cannot be used" in message and "openssl genpkey -algorithm ed25519" in message
    assert "AUDIT_CHANNEL '#audit' is not a channel id" in message
    secret = ac.keygen().decode()
    with pytest.raises(ConfigError) as err:
        load_config({**base, "RELEASEBOT_AUDIT_KEY": secret.replace("\n", "")[:60] + "\n-----END PRIVATE KEY-----"})
    assert secret.splitlines()[1][:20] not in str(err.value)  # never quotes the key
    config = load_config({**base, "RELEASEBOT_AUDIT_KEY": secret, "AUDIT_CHANNEL": "C0AUDIT"})
    assert ac.fingerprint(config.audit_key) == ac.fingerprint(ac.load_key(secret))


def test_the_policy_sets_the_period():
    assert Policy.default().audit.checkpoint_every == DAY
    assert Policy.from_mapping({"audit": {"checkpoint_every": "6h"}}).audit.checkpoint_every == timedelta(hours=6)
    with pytest.raises(PolicyError, match="audit.checkpoint_every: must be from 1h to 31d"):
        Policy.from_mapping({"audit": {"checkpoint_every": "5m"}})
    with pytest.raises(PolicyError, match="audit.every"):
        Policy.from_mapping({"audit": {"every": "1d"}})
