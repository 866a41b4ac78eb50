"""A throw-away PostgreSQL cluster in a temporary folder, for tests and the benchmark.

Debian's ``postgresql`` package puts ``initdb`` and ``pg_ctl`` under
``/usr/lib/postgresql/<version>/bin``; they refuse to run as root, so as root
they run as the ``postgres`` user on a folder that user owns. The cluster
listens on 127.0.0.1 at a free port, trusts local connections, and is gone
with its folder once stopped.

The folder is a fresh one directly in the system's temporary folder, not
under pytest's ``tmp_path``: every pytest session resets
``/tmp/pytest-of-<user>`` to mode 0700, after which the ``postgres`` user
could no longer reach a cluster below it (a concurrent session would break
a running one).

    cluster = PostgresCluster.start()                    # PostgresMissing when not installed
    url = cluster.create_database("api_test")            # postgresql://postgres@127.0.0.1:P/api_test
    cluster.stop()
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sim.processes import free_port

BIN_GLOB = "/usr/lib/postgresql/*/bin"
START_TIMEOUT_S = 60
# Settings for a disposable cluster: nothing here has to survive a power cut.
SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off "
    "-c synchronous_commit=off -c full_page_writes=off -c shared_buffers=64MB"
)


class PostgresMissing(RuntimeError):
    """PostgreSQL's server programs are not installed (Debian: apt-get install postgresql)."""


def server_bin() -> Path:
    """The newest installed server's bin folder; raises PostgresMissing when there is none."""
    found = sorted(
        (Path(p) for p in glob.glob(BIN_GLOB) if (Path(p) / "initdb").is_file()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise PostgresMissing(f"no initdb under {BIN_GLOB} (apt-get install postgresql)")
    return found[-1]


@dataclass
class PostgresCluster:
    root: Path
    port: int
    bin: Path
    _as_postgres: list[str]
    _names: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @classmethod
    def start(cls, fsync: bool = False) -> PostgresCluster:
        """initdb and start a cluster in a new temporary folder; raises PostgresMissing.

        ``fsync=True`` keeps PostgreSQL's durable defaults (the benchmark's
        figures should be what an operator gets).
        """
        bin_dir = server_bin()
        as_postgres: list[str] = []
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            raise PostgresMissing("running as root without runuser to drop to postgres")
        root = Path(tempfile.mkdtemp(prefix="pg-cluster-"))
        if os.geteuid() == 0:
            as_postgres = ["runuser", "-u", "postgres", "--"]
            shutil.chown(root, "postgres", "postgres")
        cluster = cls(root, free_port(), bin_dir, as_postgres)
        options = f"-p {cluster.port} -k {root} {SERVER_OPTIONS}"
        if fsync:
            options = options.replace("-c fsync=off -c synchronous_commit=off ", "").replace(
                "-c full_page_writes=off ", ""
            )
        try:
            cluster._run("initdb", "-D", str(cluster.data), "-A", "trust", "-U", "postgres")
            cluster.pg_ctl("start", "-o", options, "-l", str(root / "log"))
        except BaseException:
            cluster._discard()  # nothing of a cluster that never started stays behind
            raise
        return cluster

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as_postgres, str(self.bin / program), *args],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
        if done.returncode != 0:
            log = self.root / "log"
            tail = log.read_text()[-2000:] if log.is_file() else ""
            raise RuntimeError(
                f"{program} {args[:3]} failed ({done.returncode}): {done.stdout}{done.stderr}{tail}"
            )

    def pg_ctl(self, action: str, *args: str) -> None:
        """``pg_ctl start|stop|restart`` on this cluster, waiting until it is done."""
        self._run("pg_ctl", "-D", str(self.data), "-w", action, *args)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "db") -> str:
        """A new empty database (a unique name from ``prefix``); its URL."""
        import psycopg  # the "postgres" extra, needed only by who asks for a database

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast mode) and remove its folder."""
        try:
            self.pg_ctl("stop", "-m", "fast")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _discard(self) -> None:
        """After a failed start: stop a server that may be up after all (``pg_ctl -w``
        gave up waiting), then remove the folder."""
        if (self.data / "postmaster.pid").is_file():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)
