"""What every benchmark needs: a scratch database, a free port, percentiles."""
from __future__ import annotations

import socket
import sys
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from sqlalchemy import text  # noqa: E402

from storage.db import make_engine, normalise_url  # noqa: E402
from storage.migrate import upgrade  # noqa: E402


def scratch_database(url: str | None, stack: ExitStack, label: str = "bench") -> str:
    """A migrated database for one run, removed by `stack`: beside `url` on PostgreSQL
    (a new database, dropped at the end), otherwise a fresh SQLite file in a temp dir."""
    if url and normalise_url(url).startswith("postgresql"):
        admin = make_engine(url)
        stack.callback(admin.dispose)
        name = f"releasebot_{label}_{uuid.uuid4().hex[:8]}"
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))

        def drop() -> None:
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

        stack.callback(drop)
        url = normalise_url(url).rsplit("/", 1)[0] + f"/{name}"
    else:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"releasebot-{label}-"))
        url = f"sqlite:///{tmp}/releasebot.db"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(-(-p * len(ordered) // 100)) - 1))
    return ordered[k]
