"""The throw-away PostgreSQL cluster of the tests and the benchmark (``sim/pg_cluster.py``).

Incident guarded against: a start that failed (its port taken, initdb
refused) left its temporary folder behind, one per failed run.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import pytest

from sim import pg_cluster
from sim.pg_cluster import PostgresCluster, PostgresMissing

pytestmark = pytest.mark.integration


def test_a_cluster_that_fails_to_start_leaves_no_folder_behind(monkeypatch):
    try:
        pg_cluster.server_bin()
    except PostgresMissing as exc:
        pytest.skip(str(exc))
    made: list[Path] = []
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*args, **kwargs) -> str:
        made.append(Path(real_mkdtemp(*args, **kwargs)))
        return str(made[-1])

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(pg_cluster.tempfile, "mkdtemp", mkdtemp)
        monkeypatch.setattr(pg_cluster, "free_port", lambda: taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="pg_ctl"):
            PostgresCluster.start()
    assert made and not made[0].exists()
