"""The local Airflow's metadata database: an embedded PostgreSQL (pgserver) in a folder of its own.

PostgreSQL rather than SQLite: four Airflow processes write to the metadata at once, and
SQLite's single lock makes the API refuse requests now and then. The server outlives the
process that starts it (`local_airflow.py start` returns, Airflow keeps running); `stop`
ends it.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

# pgserver keeps a lock under the user's runtime folder; without XDG_RUNTIME_DIR it falls back
# to /tmp and warns on every command (start, status, trigger, stop), which is fine here.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
# pgserver logs its handle bookkeeping at INFO, also from an atexit hook that runs after a
# test runner has closed the streams its handlers write to ("--- Logging error ---").
logging.getLogger("pgserver").setLevel(logging.WARNING)


@dataclass(frozen=True)
class EmbeddedPostgres:
    """The server whose data folder is `pgdata`."""

    pgdata: Path

    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        from pgserver.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata) if self.pgdata.exists() else None
        return info.pid if info is not None and info.is_running() else None

    def start(self) -> str:
        """Start (or reuse) the server; the SQLAlchemy URL of its `airflow` database."""
        import pgserver

        self.pgdata.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: the server outlives this process; `stop` stops it.
        server = pgserver.get_server(self.pgdata, cleanup_mode=None)
        if "airflow" not in server.psql("SELECT datname FROM pg_database;"):
            server.psql("CREATE DATABASE airflow;")
        return server.get_uri("airflow").replace("postgresql://", "postgresql+psycopg2://", 1)

    def stop(self, grace: float = 30.0) -> None:
        """PostgreSQL's fast shutdown (SIGINT to the postmaster: sessions end, it checkpoints
        and exits); SIGKILL after `grace`. Not pgserver's handle clean-up: within one process
        it returns the handle `start` made, which leaves the server running."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + grace
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.pid() is not None:
            os.kill(pid, signal.SIGKILL)
