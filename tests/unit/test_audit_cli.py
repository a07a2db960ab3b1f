"""`releasebot audit verify | checkpoint | keygen | REL-n` as an operator or auditor runs them: exit codes,
what is printed, and that looking never migrates or writes."""
from __future__ import annotations

import hashlib
import os

import pytest
from sqlalchemy import text

from bot import cli
from commands import audit_checkpoint as ac
from storage import audit_chain
from storage.db import make_engine
from storage.migrate import upgrade

from conftest import PG_URL
from test_audit_chain import _drop_pg, _fresh_pg, rewrite, sql, write


def run(monkeypatch, capsys, url, *args, **env) -> tuple[int, str, str]:
    monkeypatch.setenv("DATABASE_URL", url)
    for k in ("RELEASEBOT_AUDIT_KEY", "AUDIT_CHANNEL"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code = cli.main(["audit", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def fingerprint_of_database(db) -> str:
    """Everything in it, so a test can tell that nothing was written."""
    with db.connect() as conn:
        tables = ["audit_event", "audit_chain_head", "audit_checkpoint", "outbox", "alembic_version"]
        return hashlib.sha256(repr([list(conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))) for t in tables])
                              .encode()).hexdigest()


@pytest.fixture
def key_file(tmp_path, monkeypatch, capsys):
    path = tmp_path / "audit.pem"
    code, out, err = run(monkeypatch, capsys, "sqlite:///unused.db", "keygen", "-o", str(path))
    assert code == 0 and str(path) in out
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    fp = err.split("fingerprint: ")[1].split()[0]
    assert fp == ac.fingerprint(ac.load_key(str(path)))
    return path, fp


def test_verify_prints_count_and_head_and_writes_nothing(db, db_url, monkeypatch, capsys):
    write(db, 6)
    before = fingerprint_of_database(db)
    code, out, _ = run(monkeypatch, capsys, db_url, "verify")
    head = audit_chain.verify(db)
    assert code == 0
    assert "6 events" in out and f"head: seq 6, hash {head.head_hash}" in out and "latest checkpoint: none" in out
    assert fingerprint_of_database(db) == before


@pytest.mark.parametrize("tamper, kind, seq", [
    ("UPDATE audit_event SET reason = 'edited' WHERE seq = 4", "changed", 4),
    ("DELETE FROM audit_event WHERE seq = 2", "missing", 2),
])
def test_verify_names_the_first_bad_event_and_exits_1(db, db_url, monkeypatch, capsys, tamper, kind, seq):
    write(db, 6)
    sql(db, tamper)
    code, out, _ = run(monkeypatch, capsys, db_url, "verify")
    assert code == 1
    assert f"AUDIT LOG BROKEN: {kind}: event seq {seq}" in out


def test_checkpoint_then_verify_against_the_pasted_text(db, db_url, monkeypatch, capsys, key_file):
    path, fp = key_file
    write(db, 3)
    code, out, _ = run(monkeypatch, capsys, db_url, "checkpoint", RELEASEBOT_AUDIT_KEY=str(path),
                       AUDIT_CHANNEL="C0AUDIT")
    assert code == 0 and f"key: {fp}" in out and "posted to C0AUDIT" in out
    posted = out.split("\nposted to")[0]
    code, out, _ = run(monkeypatch, capsys, db_url, "verify", "--checkpoint", posted, RELEASEBOT_AUDIT_KEY=str(path))
    assert code == 0 and "CHECKPOINT HOLDS" in out and f"key {fp}" in out
    assert "latest checkpoint: seq 3" in out and "posted to C0AUDIT" in out
    # Someone rewrites history carefully: the chain still verifies, the checkpoint does not.
    rewrite(db, 2, "nothing to see")
    code, out, _ = run(monkeypatch, capsys, db_url, "verify", "--checkpoint", posted, "--fingerprint", fp)
    assert code == 1
    assert "one unbroken chain" in out and "CHECKPOINT FAILED" in out and "rewritten" in out


def test_checkpoint_without_a_key_says_how_to_make_one(db, db_url, monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, db_url, "checkpoint")
    assert code == 2 and "RELEASEBOT_AUDIT_KEY is not set" in err and "releasebot audit keygen" in err


def test_a_pasted_text_that_is_not_a_checkpoint_is_said(db, db_url, monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, db_url, "verify", "--checkpoint", "seq: 3")
    assert code == 2 and "not a whole checkpoint" in err and "signature" in err


def test_keygen_writes_to_stdout_and_never_overwrites(tmp_path, monkeypatch, capsys, key_file):
    path, _ = key_file
    code, _, err = run(monkeypatch, capsys, "sqlite:///unused.db", "keygen", "-o", str(path))
    assert code == 1 and "not overwriting" in err
    code, out, err = run(monkeypatch, capsys, "sqlite:///unused.db", "keygen")
    assert code == 0 and out.startswith("-----BEGIN PRIVATE KEY-----") and "fingerprint: SHA256:" in err
    assert ac.load_key(out)


def test_every_audit_subcommand_refuses_a_schema_behind_and_leaves_it(tmp_path, monkeypatch, capsys, key_file):
    path, _ = key_file
    url = _fresh_pg(tmp_path) if PG_URL else f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    try:
        upgrade(engine, "0014")
        for args in (["verify"], ["REL-1"], ["checkpoint"]):
            code, _, err = run(monkeypatch, capsys, url, *args, RELEASEBOT_AUDIT_KEY=str(path))
            assert code == 2 and "at schema 0014" in err and "releasebot migrate" in err, args
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0014"
    finally:
        engine.dispose()
        if PG_URL:
            _drop_pg(url)


def test_no_database_is_not_created_by_looking(tmp_path, monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, f"sqlite:///{tmp_path / 'none.db'}", "verify")
    assert code == 2 and "releasebot migrate" in err and not (tmp_path / "none.db").exists()
