"""Fixtures shared by the integration tests: the S3 servers most modules start.

A module that needs S3 asks for ``s3`` (an emulator, each test makes its own
bucket) or ``s3_endpoint`` (the Data API harness's S3, its bucket made); one
server serves the whole module and stops after its last test.

The Data API's tests ask for ``database``: each runs once on a SQLite file
and once on a new database of a PostgreSQL cluster (``postgres``) that
serves the whole session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.pg_cluster import PostgresCluster, PostgresMissing
from tests.integration.s3_server import S3Server


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    # Imported here so that collecting a module without S3 does not load the Data API.
    from tests.integration.data_api_harness import start_s3

    endpoint, stop = start_s3()
    yield endpoint
    stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One throw-away PostgreSQL cluster for the whole run; each test makes its own database."""
    pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is not installed")
    try:
        cluster = PostgresCluster.start()
    except PostgresMissing as exc:
        pytest.skip(f"PostgreSQL tests need Debian's postgresql package: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path) -> Path | str:
    """The Data API's database, once per store: a SQLite file, then a new PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "api.sqlite"
    return request.getfixturevalue("postgres").create_database("api")
