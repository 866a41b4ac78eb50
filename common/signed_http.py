"""Signed HTTP between neurons: ``btauth/1`` (bittensor.http_auth) over aiohttp.

Server side, one wrapper turns a typed handler into an aiohttp handler that
enforces, in order: body size (413), signature, receiver, freshness and replay
(401), registration, permit and stake of the caller (403), the caller's rate
limit (429 with ``Retry-After``), and the body's schema (400 bad JSON, 422
invalid fields). Every error is ``{"error": {"code", "message", "request_id"}}``.

    handler = signed_endpoint(policy, DataAssignmentRequest, serve)
    app.router.add_post(ROUTE, handler)

Client side, ``SignedClient`` signs each body with a hotkey resolved once and
posts it with a timeout; answers come back parsed or as ``ErrorBody``.

    client = SignedClient(wallet.hotkey, session)
    status, answer = await client.post(endpoint, hotkey, ROUTE, request, DataAssignmentRequest)
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from bittensor import http_auth
from pydantic import BaseModel, ValidationError

from common.chain import MetagraphSnapshot, NeuronInfo
from common.protocol import ErrorBody

logger = logging.getLogger(__name__)

NONCE_RETENTION_S = 60.0  # > freshness window (10 s) + skew (2 s)
Model = TypeVar("Model", bound=BaseModel)

# Request ids for logs and error bodies: process prefix + counter (uuid4 costs a
# urandom call per request on the hot path).
_REQUEST_IDS = itertools.count(1)
_ID_PREFIX = f"{os.getpid():x}{int(time.time()) % 0xFFFF:04x}"

# One nonce store per process: every signed endpoint in it shares replay memory.
PROCESS_NONCE_STORE = http_auth.InMemoryNonceStore(retention=NONCE_RETENTION_S)


def error_response(status: int, code: str, message: str, request_id: str | None) -> web.Response:
    body = {
        "error": ErrorBody(code=code, message=message[:300], request_id=request_id).model_dump()
    }
    headers = {"X-Request-Id": request_id} if request_id else None
    return web.json_response(body, status=status, headers=headers)


class RateLimiter:
    """Token bucket per caller: ``per_minute`` requests, refilled continuously."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """0.0 when allowed (a token is spent), else seconds until the next token."""
        now = self._clock()
        tokens, last = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


@dataclass
class AccessPolicy:
    """Who may call an endpoint and how often."""

    self_hotkey: str
    metagraph: Callable[[], MetagraphSnapshot | None]
    require_validator_permit: bool = True
    min_stake: float = 0.0
    max_body_bytes: int = 4 * 1024 * 1024
    rate_limiter: RateLimiter | None = None
    nonce_store: Any = field(default=PROCESS_NONCE_STORE)

    def refuse(self, hotkey: str) -> str | None:
        """Why ``hotkey`` may not call, or None when it may."""
        graph = self.metagraph()
        if graph is None:
            return "metagraph not loaded yet"
        neuron = graph.by_hotkey(hotkey)
        if neuron is None:
            return "caller is not registered on the subnet"
        if self.require_validator_permit and not neuron.validator_permit:
            return "caller has no validator permit"
        if neuron.stake < self.min_stake:
            return f"caller stake {neuron.stake:g} is below {self.min_stake:g}"
        return None


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    if request.content_length is not None:
        if request.content_length > limit:
            return None
        return await request.read()  # length known and within the cap: one read
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def signed_endpoint(
    policy: AccessPolicy,
    model: type[Model],
    serve: Callable[[NeuronInfo, Model], Awaitable[BaseModel]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler: authenticate, authorise, limit, parse, then ``serve``."""

    async def handler(request: web.Request) -> web.Response:
        request_id = f"{_ID_PREFIX}-{next(_REQUEST_IDS)}"
        body = await _read_limited(request, policy.max_body_bytes)
        if body is None:
            return error_response(
                413, "body_too_large", f"body over {policy.max_body_bytes} bytes", request_id
            )
        try:
            caller = http_auth.verify(
                request.headers,
                body,
                method=request.method,
                path=request.path_qs,
                self_hotkey_ss58=policy.self_hotkey,
                nonce_store=policy.nonce_store,
            )
        except http_auth.AuthError as exc:
            return error_response(401, type(exc).__name__, str(exc), request_id)
        reason = policy.refuse(caller.hotkey_ss58)
        if reason is not None:
            logger.info("refused %s: %s (request %s)", caller.hotkey_ss58, reason, request_id)
            return error_response(403, "forbidden", reason, request_id)
        graph = policy.metagraph()
        neuron = graph.by_hotkey(caller.hotkey_ss58) if graph else None
        if neuron is None:  # deregistered between the two reads
            return error_response(403, "forbidden", "caller is not registered", request_id)
        if policy.rate_limiter is not None:
            wait = policy.rate_limiter.take(caller.hotkey_ss58)
            if wait > 0:
                response = error_response(429, "rate_limited", "too many requests", request_id)
                response.headers["Retry-After"] = str(max(1, round(wait + 0.5)))
                return response
        try:
            parsed = model.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors()[0] if exc.errors() else {}
            if first.get("type") == "json_invalid":
                return error_response(400, "bad_json", "body is not valid JSON", request_id)
            where = ".".join(str(p) for p in first.get("loc", ()))
            message = f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))
            return error_response(422, "invalid_body", message, request_id)
        try:
            answer = await serve(neuron, parsed)
        except Exception:
            logger.exception("handler failed for %s (request %s)", caller.hotkey_ss58, request_id)
            return error_response(500, "internal", "the server failed; see its log", request_id)
        return web.Response(
            body=answer.model_dump_json(exclude_none=True),
            content_type="application/json",
            headers={"X-Request-Id": request_id},
        )

    return handler


class SignedClient:
    """Signs and posts pydantic bodies to other neurons; one per process, session reused."""

    def __init__(self, signer: Any, session: aiohttp.ClientSession, timeout_s: float = 5.0) -> None:
        self.signer = signer
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def post(
        self,
        endpoint: str,
        receiver_hotkey: str,
        path: str,
        body: BaseModel,
        answer_model: type[Model],
        timeout_s: float | None = None,
    ) -> tuple[int, Model | ErrorBody]:
        """POST ``body`` signed for ``receiver_hotkey``; returns (status, parsed answer).

        Network failures and timeouts come back as status 0 with an ErrorBody,
        never as exceptions, so a dead miner is just an answer.
        """
        raw = body.model_dump_json(exclude_none=True).encode()
        headers = http_auth.sign(
            self.signer, method="POST", path=path, body=raw, receiver_ss58=receiver_hotkey
        )
        headers["Content-Type"] = "application/json"
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s else self.timeout
        try:
            async with self.session.post(
                f"http://{endpoint}{path}", data=raw, headers=headers, timeout=timeout
            ) as response:
                data = await response.read()
                status = response.status
        except TimeoutError:
            return 0, ErrorBody(code="timeout", message=f"no answer from {endpoint}")
        except aiohttp.ClientError as exc:
            return 0, ErrorBody(code="unreachable", message=f"{endpoint}: {exc}")
        if status == 200:
            try:
                return status, answer_model.model_validate_json(data)
            except ValidationError as exc:
                return status, ErrorBody(code="bad_answer", message=str(exc)[:300])
        try:
            error = json.loads(data)["error"]
            return status, ErrorBody.model_validate(error)
        except (ValueError, KeyError, TypeError, ValidationError):
            return status, ErrorBody(
                code=f"http_{status}", message=data[:200].decode(errors="replace")
            )
