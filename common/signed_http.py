"""Signed HTTP between neurons: ``btauth/1`` (bittensor.http_auth) over aiohttp.

Server side, one wrapper turns a typed handler into an aiohttp handler that
enforces, in order, everything that needs no body first: the declared size
(413), the auth headers' shape, receiver and freshness (401), registration,
permit and stake of the hotkey they name (403); then it reads the body under
a deadline and a slot (``common/http_server.BodyGate``: 408, 503), verifies
the signature and replay (401), the caller's rate limit (429 with
``Retry-After``), and the body's schema (400 bad JSON, 422 invalid fields).
An unregistered caller is refused before a byte of its body is read or a
nonce of its is stored. Every error is ``{"error": {"code", "message", "request_id"}}``.

    handler = signed_endpoint(policy, DataAssignmentRequest, serve)
    app.router.add_post(ROUTE, handler)

Handlers that need more than the caller and the body (path parameters, a
typed query, GET with no body, raw bytes back) use ``signed_route``; a handler
refuses with ``raise RequestRefused(404, "not_found", "...")``.

    app.router.add_get("/v1/epochs/{epoch_id}/block", signed_route(policy, serve_block))

Client side, ``SignedClient`` (``common/signed_client.py``, re-exported here)
signs each body and reads a bounded answer; answers come back parsed or as
``ErrorBody``.

    client = SignedClient(wallet.hotkey, session)
    status, answer = await client.post(endpoint, hotkey, ROUTE, request, DataAssignmentRequest)
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aiohttp import web
from bittensor import http_auth
from pydantic import BaseModel, ValidationError

from common.chain import MetagraphSnapshot, NeuronInfo
from common.http_server import SMALL_BODY_BYTES, BodyGate, BodyRefused
from common.protocol import ErrorBody
from common.signed_client import SignedAnswer, SignedClient, answer_cap

__all__ = [  # the client lives in common/signed_client.py; callers import it from here too
    "AccessPolicy",
    "Admission",
    "RateLimiter",
    "RequestRefused",
    "SignedAnswer",
    "SignedCall",
    "SignedClient",
    "answer_cap",
    "error_response",
    "new_request_id",
    "signed_endpoint",
    "signed_route",
]

logger = logging.getLogger(__name__)

NONCE_RETENTION_S = 60.0  # > freshness window (10 s) + skew (2 s)
Model = TypeVar("Model", bound=BaseModel)

# Request ids for logs and error bodies: process prefix + counter (uuid4 costs a
# urandom call per request on the hot path).
_REQUEST_IDS = itertools.count(1)
_ID_PREFIX = f"{os.getpid():x}{int(time.time()) % 0xFFFF:04x}"


# Typed keys for what handlers and middlewares pass along on a request or a
# response (plain strings on aiohttp releases before typed keys existed).
_RequestKey = getattr(web, "RequestKey", None)
_ResponseKey = getattr(web, "ResponseKey", None)
REQUEST_ID = _RequestKey("request_id", str) if _RequestKey else "request_id"
CALLER = _RequestKey("caller", str) if _RequestKey else "caller"
ERROR_CODE = _ResponseKey("error_code", str) if _ResponseKey else "error_code"
AUTH_REASON = _ResponseKey("auth_reason", str) if _ResponseKey else "auth_reason"


def new_request_id() -> str:
    """A request id unique within the process and unlikely to repeat across processes."""
    return f"{_ID_PREFIX}-{next(_REQUEST_IDS)}"


# One nonce store per process: every signed endpoint in it shares replay memory.
PROCESS_NONCE_STORE = http_auth.InMemoryNonceStore(retention=NONCE_RETENTION_S)


class Admission(Protocol):
    """Replay check and rate limit in one awaited step, for guard state kept in a database
    that several servers share (``data_api/stores.py``).

    ``admit`` stores the nonce and counts the request; it returns 0.0 when the
    call may go on, else the seconds until the caller's limit lets it. Raises
    ``http_auth.ReplayedRequest`` for a nonce already accepted, and
    ``RequestRefused`` (a 503) when the state cannot be reached.
    """

    async def admit(self, hotkey: str, nonce_ns: int) -> float: ...


class _AdmittedLater:
    """The nonce store ``verify`` sees when an ``Admission`` does the replay check next."""

    retention = NONCE_RETENTION_S

    def check_and_store(self, hotkey_ss58: str, nonce_ns: int) -> bool:
        return True


_ADMITTED_LATER = _AdmittedLater()


def error_response(status: int, code: str, message: str, request_id: str | None) -> web.Response:
    body = {
        "error": ErrorBody(code=code, message=message[:300], request_id=request_id).model_dump()
    }
    headers = {"X-Request-Id": request_id} if request_id else None
    response = web.json_response(body, status=status, headers=headers)
    response[ERROR_CODE] = code  # for middlewares (metrics); not sent
    return response


class RequestRefused(Exception):
    """Raised by a handler to answer with a JSON error instead of a body."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self, request_id: str | None) -> web.Response:
        response = error_response(self.status, self.code, self.message, request_id)
        response.headers.update(self.headers)
        return response


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
    """Who may call an endpoint and how often.

    By default: registered validators (permit, ``min_stake``). With
    ``require_validator_permit=False`` any registered hotkey (miners). With
    ``only_hotkeys`` exactly those hotkeys, registered or not (an owner's
    endpoint), and the metagraph is not consulted.
    """

    self_hotkey: str
    metagraph: Callable[[], MetagraphSnapshot | None]
    require_validator_permit: bool = True
    min_stake: float = 0.0
    max_body_bytes: int = 4 * 1024 * 1024
    rate_limiter: Any = None  # RateLimiter or anything with take(hotkey) -> seconds to wait
    nonce_store: Any = field(default=PROCESS_NONCE_STORE)
    # When set, replaces nonce_store and rate_limiter: both in one awaited step.
    admission: Admission | None = None
    only_hotkeys: frozenset[str] | None = None
    # Shared by every policy of one server: its deadline and slots hold per process.
    body_gate: BodyGate = field(default_factory=BodyGate)

    def refusal(self, hotkey: str) -> tuple[str, str] | None:
        """(reason code, message) for why ``hotkey`` may not call, or None when it may."""
        if self.only_hotkeys is not None:
            if hotkey in self.only_hotkeys:
                return None
            return "not_allowed", "this endpoint is for the service owner only"
        graph = self.metagraph()
        if graph is None:
            return "metagraph_unavailable", "metagraph not loaded yet"
        neuron = graph.by_hotkey(hotkey)
        if neuron is None:
            return "not_registered", "caller is not registered on the subnet"
        if self.require_validator_permit and not neuron.validator_permit:
            return "no_permit", "caller has no validator permit"
        if neuron.stake < self.min_stake:
            return "low_stake", f"caller stake {neuron.stake:g} is below {self.min_stake:g}"
        return None

    def refuse(self, hotkey: str) -> str | None:
        """Why ``hotkey`` may not call, or None when it may."""
        refusal = self.refusal(hotkey)
        return None if refusal is None else refusal[1]


def claimed_sender(headers: Any, self_hotkey: str, now_ns: int | None = None) -> str:
    """The hotkey the auth headers name, once all ``http_auth.verify`` checks without the body hold.

    Header shape (MalformedAuth), receiver (WrongReceiver) and freshness of the
    nanosecond nonce (StaleRequest), as ``verify`` checks them; the signature
    covers sha256(body), so it and the replay check wait for the body. The
    name is a claim until then: only ever used to refuse early.
    """
    headers = {key.lower(): value for key, value in headers.items()}
    version = headers.get(http_auth.HEADER_VERSION.lower())
    if version != http_auth.VERSION:
        raise http_auth.MalformedAuth(
            f"missing or unsupported {http_auth.HEADER_VERSION} (expected {http_auth.VERSION!r})"
        )
    sender = headers.get(http_auth.HEADER_HOTKEY.lower())
    if not sender:
        raise http_auth.MalformedAuth(f"missing {http_auth.HEADER_HOTKEY}")
    raw_nonce = headers.get(http_auth.HEADER_NONCE.lower())
    if raw_nonce is None:
        raise http_auth.MalformedAuth(f"missing {http_auth.HEADER_NONCE}")
    try:
        nonce = int(raw_nonce)
    except ValueError:
        raise http_auth.MalformedAuth(
            f"{http_auth.HEADER_NONCE} is not a decimal integer"
        ) from None
    if headers.get(http_auth.HEADER_SIGNATURE.lower()) is None:
        raise http_auth.MalformedAuth(f"missing {http_auth.HEADER_SIGNATURE}")
    receiver = headers.get(http_auth.HEADER_RECEIVER.lower())
    if receiver is None:
        raise http_auth.WrongReceiver(
            f"missing {http_auth.HEADER_RECEIVER}: this server requires receiver-bound requests"
        )
    if receiver != self_hotkey:
        raise http_auth.WrongReceiver("request was signed for a different receiving hotkey")
    now = time.time_ns() if now_ns is None else now_ns
    if now - nonce > http_auth.DEFAULT_MAX_AGE * 1e9:
        raise http_auth.StaleRequest(
            f"nonce is older than the {http_auth.DEFAULT_MAX_AGE:g}s freshness window"
        )
    if nonce - now > http_auth.DEFAULT_ALLOWED_SKEW * 1e9:
        raise http_auth.StaleRequest(
            f"nonce is more than {http_auth.DEFAULT_ALLOWED_SKEW:g}s in the future"
        )
    return sender


def _refuse_unread(request: web.Request, response: web.Response) -> web.Response:
    """Close the connection after a refusal when a large body is still on its way.

    aiohttp would otherwise read and discard it; a small one is in its buffer already.
    """
    if request.body_exists:
        declared = request.content_length
        if declared is None or declared > SMALL_BODY_BYTES:
            response.force_close()
    return response


@dataclass(frozen=True, slots=True)
class SignedCall:
    """An authenticated, authorised, parsed request, as a ``signed_route`` handler sees it."""

    request: web.Request
    request_id: str
    caller: str  # the verified hotkey
    neuron: NeuronInfo | None  # None only on ``only_hotkeys`` endpoints for unregistered owners
    body: Any = None  # the parsed body model, or None when the route takes no body
    query: Any = None  # the parsed query model, or None


Answer = BaseModel | bytes | web.Response


def _validation_error(exc: ValidationError, request_id: str) -> web.Response:
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return error_response(400, "bad_json", "body is not valid JSON", request_id)
    where = ".".join(str(p) for p in first.get("loc", ()))
    message = f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))
    return error_response(422, "invalid_body", message, request_id)


def signed_route(
    policy: AccessPolicy,
    serve: Callable[[SignedCall], Awaitable[Answer]],
    *,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    strict: bool = True,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler: size, auth headers, policy, body, signature, rate limit, then ``serve``.

    ``body=None`` means the route takes no body (a signed GET). With
    ``strict``, a body on such a route, or a query string on a route without
    a ``query`` model, is refused with 400. ``serve`` returns a model (sent as
    JSON), ready JSON bytes, or a ``web.Response``; it may raise
    ``RequestRefused``. A middleware may set ``request[REQUEST_ID]`` first;
    the handler sets ``request[CALLER]``, and on refusals ``response[ERROR_CODE]``
    and ``response[AUTH_REASON]``, for it.
    """

    async def handler(request: web.Request) -> web.Response:
        request_id = request.get(REQUEST_ID) or new_request_id()
        declared = request.content_length
        if declared is not None and declared > policy.max_body_bytes:
            return _refuse_unread(
                request,
                error_response(
                    413, "body_too_large", f"body over {policy.max_body_bytes} bytes", request_id
                ),
            )
        try:
            claimed = claimed_sender(request.headers, policy.self_hotkey)
        except http_auth.AuthError as exc:
            return _refuse_unread(
                request, error_response(401, type(exc).__name__, str(exc), request_id)
            )
        # Who may call is settled before the body is read or a nonce stored, so a
        # caller that may not call costs no memory and leaves no row behind.
        refusal = policy.refusal(claimed)
        if refusal is not None:
            reason, message = refusal
            logger.info("refused %s: %s (request %s)", claimed, message, request_id)
            if reason == "metagraph_unavailable":
                response = error_response(503, "unavailable", message, request_id)
                response.headers["Retry-After"] = "5"
            else:
                response = error_response(403, "forbidden", message, request_id)
            response[AUTH_REASON] = reason
            return _refuse_unread(request, response)
        try:
            raw = (
                await policy.body_gate.read(request, policy.max_body_bytes)
                if request.body_exists
                else b""
            )
        except BodyRefused as refused:
            peer = request.remote or "-"
            if refused.dropped:
                logger.info(
                    "dropped: %s from %s (request %s): %s",
                    claimed,
                    peer,
                    request_id,
                    refused.message,
                )
            elif refused.status != 413:
                logger.info(
                    "refused %s from %s (request %s): %s",
                    claimed,
                    peer,
                    request_id,
                    refused.message,
                )
            response = error_response(refused.status, refused.code, refused.message, request_id)
            if refused.status == 503:
                response.headers["Retry-After"] = "1"
            response.force_close()  # what is left of the body is never read
            return response
        admission = policy.admission
        wait = 0.0
        try:
            caller = http_auth.verify(
                request.headers,
                raw,
                method=request.method,
                path=request.path_qs,
                self_hotkey_ss58=policy.self_hotkey,
                nonce_store=policy.nonce_store if admission is None else _ADMITTED_LATER,
            )
            if admission is not None:
                wait = await admission.admit(caller.hotkey_ss58, caller.nonce_ns)
        except http_auth.AuthError as exc:
            return error_response(401, type(exc).__name__, str(exc), request_id)
        except RequestRefused as refused:  # the shared guard state is out of reach
            return refused.response(request_id)
        except Exception:  # a bug or misconfiguration in the store: a JSON 500, logged
            logger.exception("admission failed for %s (request %s)", claimed, request_id)
            return error_response(500, "internal", "the server failed; see its log", request_id)
        hotkey = caller.hotkey_ss58
        request[CALLER] = hotkey
        graph = policy.metagraph()
        neuron = graph.by_hotkey(hotkey) if graph else None
        if neuron is None and policy.only_hotkeys is None:  # deregistered between the reads
            response = error_response(403, "forbidden", "caller is not registered", request_id)
            response[AUTH_REASON] = "not_registered"
            return response
        if admission is None and policy.rate_limiter is not None:
            wait = policy.rate_limiter.take(hotkey)
        if wait > 0:
            response = error_response(429, "rate_limited", "too many requests", request_id)
            response.headers["Retry-After"] = str(max(1, round(wait + 0.5)))
            return response
        parsed_body = parsed_query = None
        if body is not None:
            try:
                parsed_body = body.model_validate_json(raw)
            except ValidationError as exc:
                return _validation_error(exc, request_id)
        elif strict and raw:
            return error_response(400, "unexpected_body", "this route takes no body", request_id)
        if query is not None:
            pairs = list(request.query.items())
            if len({k for k, _ in pairs}) != len(pairs):
                return error_response(400, "bad_query", "a query parameter is repeated", request_id)
            try:
                parsed_query = query.model_validate(dict(pairs))
            except ValidationError as exc:
                return _validation_error(exc, request_id)
        elif strict and request.query_string:
            return error_response(
                400, "unexpected_query", "this route takes no query parameters", request_id
            )
        call = SignedCall(request, request_id, hotkey, neuron, parsed_body, parsed_query)
        try:
            answer = await serve(call)
        except RequestRefused as refused:
            return refused.response(request_id)
        except Exception:
            logger.exception("handler failed for %s (request %s)", hotkey, request_id)
            return error_response(500, "internal", "the server failed; see its log", request_id)
        if isinstance(answer, web.Response):
            answer.headers["X-Request-Id"] = request_id
            return answer
        payload = answer if isinstance(answer, bytes) else answer.model_dump_json(exclude_none=True)
        return web.Response(
            body=payload, content_type="application/json", headers={"X-Request-Id": request_id}
        )

    return handler


def signed_endpoint(
    policy: AccessPolicy,
    model: type[Model] | None,
    serve: Callable[[NeuronInfo, Model | None], Awaitable[BaseModel]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler: authenticate, authorise, limit, parse, then ``serve(neuron, body)``.

    ``model=None`` for a route without a body (``serve`` gets None).
    """

    async def adapter(call: SignedCall) -> BaseModel:
        return await serve(call.neuron, call.body)

    return signed_route(policy, adapter, body=model, strict=False)
