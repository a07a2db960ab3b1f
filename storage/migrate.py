"""Run pending Alembic migrations from code, for `releasebot migrate` and start-up."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> tuple[Optional[str], Optional[str]]:
    """Migrate to `revision`; returns the schema revision before and after, for the one line the caller logs."""
    cfg = alembic_config()
    # Alembic's INFO lines (a "setup plugin" line per plugin, "Context impl", one per step) say nothing an
    # operator acts on; its warnings and errors still show.
    quiet = logging.getLogger("alembic")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        with engine.begin() as conn:
            # On PostgreSQL an advisory lock keeps two processes starting together
            # from running the same migration twice.
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
            before = MigrationContext.configure(conn).get_current_revision()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            return before, MigrationContext.configure(conn).get_current_revision()
    finally:
        quiet.setLevel(level)
