"""Another process's transaction holding locks, controlled by the test: taken on entry, let go on exit.

`writer_holds_the_database`: what a long write does to everyone else. On SQLite the write lock
(BEGIN IMMEDIATE) in a connection of its own; on PostgreSQL every table of the app locked IN
EXCLUSIVE MODE, which lets reads through and makes every write wait, as SQLite's lock does.
`release_row_locked`: PostgreSQL only, SELECT … FOR UPDATE on one release, as a decision on it does.
"""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy.engine import make_url

from storage.db import normalise_url


def _pg_dsn(url: str) -> str:
    return make_url(normalise_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def writer_holds_the_database(db_url: str) -> Iterator[None]:
    url = make_url(normalise_url(db_url))
    if url.get_backend_name() == "sqlite":
        con = sqlite3.connect(url.database, isolation_level=None, timeout=10)  # waits out a write in flight
        try:
            con.execute("BEGIN IMMEDIATE")
            yield
            con.execute("ROLLBACK")
        finally:
            con.close()
        return
    import psycopg
    with psycopg.connect(_pg_dsn(db_url)) as con:
        tables = [r[0] for r in con.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        con.execute(f"LOCK TABLE {', '.join(tables)} IN EXCLUSIVE MODE")
        yield
        con.rollback()


@contextmanager
def release_row_locked(db_url: str, release_id: int) -> Iterator[None]:
    import psycopg
    with psycopg.connect(_pg_dsn(db_url)) as con:
        assert con.execute("SELECT id FROM release WHERE id = %s FOR UPDATE", (release_id,)).fetchone()
        yield
        con.rollback()
