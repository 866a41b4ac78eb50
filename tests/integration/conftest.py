"""Fixtures shared by the integration tests: the S3 servers most modules start.

A module that needs S3 asks for ``s3`` (an emulator, each test makes its own
bucket) or ``s3_endpoint`` (the Data API harness's S3, its bucket made); one
server serves the whole module and stops after its last test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
