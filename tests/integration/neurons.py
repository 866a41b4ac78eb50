"""Signed requests for tests that talk to real neuron processes on loopback.

The processes themselves: ``sim/processes.py``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import aiohttp
from bittensor import http_auth

from common.protocol import ROUTE, DataAssignmentRequest

ROOT = Path(__file__).resolve().parents[2]
ZIPCODES = ("10001", "10002", "10003", "10004")


def assign_body(
    request_id: str,
    zipcodes=ZIPCODES,
    *,
    epoch: str = "epoch-1",
    expires_at: datetime | None = None,
) -> bytes:
    """An assignment of ``zipcodes`` (ZILLOW_SOLD, batch 0, group 0) as the bytes sent."""
    request = DataAssignmentRequest(
        request_id=request_id,
        phase="assign",
        zipcode_assignments={"ZILLOW_SOLD": list(zipcodes)},
        batch_id=0,
        overlap_group=0,
        epoch_id=epoch,
        expires_at=expires_at,
    )
    return request.model_dump_json(exclude_none=True).encode()


def collect_body(request_id: str) -> bytes:
    request = DataAssignmentRequest(request_id=request_id, phase="collect")
    return request.model_dump_json(exclude_none=True).encode()


def reveal_body(request_id: str, commitment: str) -> bytes:
    request = DataAssignmentRequest(request_id=request_id, phase="reveal", commitment=commitment)
    return request.model_dump_json(exclude_none=True).encode()


def sign_body(signer, receiver: str, body: bytes, path: str = ROUTE, **kwargs) -> dict[str, str]:
    """The ``btauth/1`` headers of a POST of ``body`` from ``signer`` to ``receiver``."""
    return http_auth.sign(
        signer, method="POST", path=path, body=body, receiver_ss58=receiver, **kwargs
    )


async def post_signed(
    session: aiohttp.ClientSession,
    endpoint: str,
    signer,
    receiver: str,
    body: bytes,
    *,
    path: str = ROUTE,
    nonce_ns: int | None = None,
    headers: dict | None = None,
) -> tuple[int, dict, dict]:
    """POST raw bytes signed by ``signer``; returns (status, json body, response headers)."""
    if headers is None:
        kwargs = {"nonce_ns": nonce_ns} if nonce_ns is not None else {}
        headers = sign_body(signer, receiver, body, path, **kwargs)
    async with session.post(
        f"http://{endpoint}{path}",
        data=body,
        headers={**headers, "Content-Type": "application/json"},
    ) as response:
        return response.status, await response.json(content_type=None), dict(response.headers)
