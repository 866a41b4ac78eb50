"""Fuzzing every Data API endpoint's body, path and query: no input yields a 5xx.

Requests are correctly signed by a caller the route accepts, so the fuzzed
input gets past authentication and reaches parsing and the handlers; every
answer must be below 500 and, when it is an error, a JSON error body.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import quote, urlencode

import aiohttp
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from common.data_api_models import (
    HoneypotReference,
    ReadUrlsRequest,
    StatusReport,
    UploadUrlRequest,
)
from tests.integration.data_api_harness import call, make_subnet, running

pytestmark = pytest.mark.integration

EXAMPLES = hsettings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def near_valid(model) -> st.SearchStrategy[bytes]:
    """Objects with the model's own field names and arbitrary values (the interesting case)."""
    fields = {name: json_values for name in model.model_fields}
    return st.fixed_dictionaries({}, optional=fields).map(lambda d: json.dumps(d).encode())


def bodies(model) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        near_valid(model),
    )


queries = st.one_of(
    st.just(""),
    st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=16), max_size=3).map(
        lambda q: "?" + urlencode(q) if q else ""
    ),
)
epoch_segments = st.one_of(
    st.integers(min_value=-5, max_value=10**14).map(str),
    st.text(min_size=1, max_size=16).map(lambda t: quote(t, safe="")),
)


class Harness:
    """One server for the module, driven from synchronous hypothesis tests."""

    def __init__(self, subnet, tmp, s3) -> None:
        self.subnet = subnet
        self.loop = asyncio.new_event_loop()
        self._context = running(subnet, tmp / "api.sqlite", s3=s3, max_body_bytes=4096)
        self.api = self.loop.run_until_complete(self._context.__aenter__())
        self.session = self.loop.run_until_complete(self._session())
        self.statuses: list[int] = []

    @staticmethod
    async def _session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    def send(self, who: str | None, method: str, path: str, body: bytes = b"") -> int:
        signer = self.subnet.people[who] if who else None
        if who == "owner":
            signer = self.subnet.owner
        status, payload, _ = self.loop.run_until_complete(
            call(self.session, self.api, signer, method, path, body)
        )
        assert status < 500, (method, path, body[:100], payload)
        if status >= 400:
            assert set(payload) == {"error"}, payload
            assert set(payload["error"]) == {"code", "message", "request_id"}
        self.statuses.append(status)
        return status

    def close(self) -> None:
        self.loop.run_until_complete(self.session.close())
        self.loop.run_until_complete(self._context.__aexit__(None, None, None))
        self.loop.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory, s3_endpoint):
    tmp = tmp_path_factory.mktemp("data-api-fuzz")
    h = Harness(make_subnet(tmp), tmp, s3_endpoint)
    # A block for the current epoch exists, so fuzzed uploads reach the S3 presigner.
    assert h.send("validator", "GET", "/v1/epochs/current") == 200
    yield h
    h.close()
    # The fuzzing reached the handlers: not everything was refused at the door.
    assert any(status in (200, 400, 409, 422) for status in h.statuses)


@given(query=queries)
@EXAMPLES
def test_current_block_query(harness, query):
    harness.send("validator", "GET", f"/v1/epochs/current{query}")


@given(epoch=epoch_segments, what=st.sampled_from(["block", "honeypots"]), query=queries)
@EXAMPLES
def test_epoch_paths(harness, epoch, what, query):
    harness.send("validator", "GET", f"/v1/epochs/{epoch}/{what}{query}")


@given(epoch=epoch_segments, body=bodies(StatusReport))
@EXAMPLES
def test_status_bodies(harness, epoch, body):
    harness.send("validator", "POST", f"/v1/epochs/{epoch}/status", body)


@given(body=bodies(UploadUrlRequest))
@EXAMPLES
def test_upload_url_bodies(harness, body):
    harness.send("miner", "POST", "/v1/s3/upload-url", body)


@given(
    epoch=st.integers(min_value=-1, max_value=10**13),
    zipcode=st.text(max_size=7),
    size=st.integers(min_value=-1, max_value=2**41),
    content_hash=st.text(alphabet="0123456789abcdef", min_size=63, max_size=65),
)
@EXAMPLES
def test_upload_url_near_valid_fields(harness, epoch, zipcode, size, content_hash):
    current = int(time.time() // 3600)
    body = {
        "epoch_id": epoch if epoch % 3 else current,
        "source": "ZILLOW_SOLD",
        "zipcode": zipcode,
        "content_hash": content_hash,
        "size_bytes": size,
    }
    harness.send("miner", "POST", "/v1/s3/upload-url", json.dumps(body).encode())


@given(body=bodies(ReadUrlsRequest))
@EXAMPLES
def test_read_urls_bodies(harness, body):
    harness.send("validator", "POST", "/v1/s3/read-urls", body)


@given(token=st.text(max_size=300), max_keys=st.integers(min_value=-1, max_value=2000))
@EXAMPLES
def test_read_urls_tokens(harness, token, max_keys):
    body = {
        "miner_hotkey": harness.subnet.people["miner"].hotkey,
        "continuation_token": token,
        "max_keys": max_keys,
    }
    harness.send("validator", "POST", "/v1/s3/read-urls", json.dumps(body).encode())


@given(body=bodies(HoneypotReference), query=queries)
@EXAMPLES
def test_owner_references(harness, body, query):
    harness.send("owner", "POST", "/v1/owner/references", body)
    harness.send("owner", "GET", f"/v1/owner/references{query}")


@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=st.text(max_size=30).map(lambda t: "/" + quote(t, safe="/")),
    body=st.binary(max_size=64),
    who=st.sampled_from([None, "validator", "miner", "stranger"]),
)
@EXAMPLES
def test_any_route_any_method(harness, method, path, body, who):
    harness.send(who, method, path, body)
