"""The client side of signed HTTP: sign, send, and read a bounded answer.

    client = SignedClient(wallet.hotkey, session)
    status, answer = await client.post(endpoint, hotkey, ROUTE, request, DataAssignmentRequest,
                                       max_bytes=answer_cap(zipcodes=20, records_per_zipcode=50))
    status, answer = await client.get("http://api:8092", api_hotkey, "/v1/epochs/current", Block)

A peer's answer is never trusted to be small: it is read in chunks up to
``max_bytes`` (``Content-Length`` is checked first), compressed encodings are
neither asked for nor inflated, answers above ``PARSE_OFF_LOOP_BYTES`` are
parsed on a thread, and the timeout covers connecting, reading and parsing.
A refused answer comes back with its HTTP status and an ``ErrorBody`` whose
code says why (``answer_too_large``, ``compressed_answer``), as a 200 that
does not parse does (``bad_answer``); no answer at all is status 0
(``timeout``, ``unreachable``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import yarl
from bittensor import http_auth
from pydantic import BaseModel, ValidationError

from common.bounded_read import OverCap, read_capped
from common.protocol import ErrorBody
from config.settings import DEFAULT_MAX_ANSWER_BYTES

logger = logging.getLogger(__name__)

Model = TypeVar("Model", bound=BaseModel)

# pydantic parses JSON at roughly 100 MB/s: above this an answer would hold the
# event loop (every other request in flight) for more than ~2 ms.
PARSE_OFF_LOOP_BYTES = 256 * 1024
# answer_cap: a manifest entry is ("zpid", "hash") at about 60 bytes; an answer
# may list twice the records expected (dense zipcodes) times a safety margin,
# plus room for the envelope (status, progress, files, errors).
BYTES_PER_RECORD = 64
ANSWER_MARGIN = 10
ANSWER_ENVELOPE_BYTES = 64 * 1024


def answer_cap(
    zipcodes: int, records_per_zipcode: int, sources: int = 2, margin: float = ANSWER_MARGIN
) -> int:
    """Largest answer worth reading for an assignment of ``zipcodes`` x ``sources``.

    ``margin`` multiplies the records' bytes: the default suits an expected
    count; a caller passing a hard bound per zipcode (the validator's reveal,
    ``vali_utils/assignments.py``) needs only room for formatting.
    """
    records = max(1, zipcodes) * max(1, sources) * max(1, records_per_zipcode)
    return ANSWER_ENVELOPE_BYTES + math.ceil(records * BYTES_PER_RECORD * margin)


@dataclass(frozen=True, slots=True)
class SignedAnswer:
    """What came back: HTTP status (0 when nothing did), the parsed answer, ``Retry-After``."""

    status: int
    answer: Any  # the answer model, or ErrorBody
    retry_after_s: float | None = None


class AnswerRefused(Exception):
    """An answer was not read: its size or encoding is not what was asked for."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _base_url(endpoint: str) -> str:
    """``ip:port`` (a neuron on chain) or a full ``http(s)://host[:port]`` base URL."""
    return endpoint.rstrip("/") if "://" in endpoint else f"http://{endpoint}"


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare, and a bounded backoff covers it


async def read_bounded(response: aiohttp.ClientResponse, max_bytes: int) -> bytes | bytearray:
    """The raw answer body, at most ``max_bytes``; raises AnswerRefused.

    The session must not inflate it (``auto_decompress=False``): an encoding
    other than identity is refused before a byte is read.
    """
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise AnswerRefused("compressed_answer", f"answer encoded {encoding!r}, asked identity")
    try:
        return await read_capped(response.content, response.content_length, max_bytes)
    except OverCap as exc:
        if exc.declared is not None:
            message = f"answer of {exc.declared} bytes, cap {max_bytes}"
        else:
            message = f"answer over the cap of {max_bytes} bytes"
        raise AnswerRefused("answer_too_large", message) from None


async def _parse(data: bytes | bytearray, model: type[Model]) -> Model:
    if len(data) > PARSE_OFF_LOOP_BYTES:
        return await asyncio.to_thread(model.model_validate_json, data)
    return model.model_validate_json(data)


class SignedClient:
    """Signs and sends requests to other neurons and services; one per process, session reused."""

    def __init__(
        self,
        signer: Any,
        session: aiohttp.ClientSession,
        timeout_s: float = 5.0,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        self.signer = signer
        self.session = session
        self.timeout_s = timeout_s
        self.max_answer_bytes = max_answer_bytes

    async def post(
        self,
        endpoint: str,
        receiver_hotkey: str,
        path: str,
        body: BaseModel,
        answer_model: type[Model],
        timeout_s: float | None = None,
        max_bytes: int | None = None,
    ) -> tuple[int, Model | ErrorBody]:
        """POST ``body`` signed for ``receiver_hotkey``; returns (status, parsed answer).

        Network failures and timeouts come back as status 0 with an ErrorBody,
        never as exceptions, so a dead miner is just an answer. ``max_bytes``
        caps the answer (default: the client's ``max_answer_bytes``).
        """
        raw = body.model_dump_json(exclude_none=True).encode()
        answer = await self.send(
            "POST", endpoint, receiver_hotkey, path, raw, answer_model, timeout_s, max_bytes
        )
        return answer.status, answer.answer

    async def get(
        self,
        endpoint: str,
        receiver_hotkey: str,
        path: str,
        answer_model: type[Model],
        timeout_s: float | None = None,
        max_bytes: int | None = None,
    ) -> tuple[int, Model | ErrorBody]:
        """Signed GET of ``path`` (query string included, already URL-encoded)."""
        answer = await self.send(
            "GET", endpoint, receiver_hotkey, path, b"", answer_model, timeout_s, max_bytes
        )
        return answer.status, answer.answer

    async def send(
        self,
        method: str,
        endpoint: str,
        receiver_hotkey: str,
        path: str,
        raw: bytes,
        answer_model: type[Model],
        timeout_s: float | None = None,
        max_bytes: int | None = None,
    ) -> SignedAnswer:
        """Sign and send ``raw`` to ``endpoint`` + ``path``; never raises for network failures.

        ``endpoint`` is ``ip:port`` or a base URL (``https://api.example.org``).
        ``path`` is signed and sent byte for byte, so it must already be encoded.
        The timeout (``timeout_s`` or the client's) covers reading and parsing.
        """
        headers = http_auth.sign(
            self.signer, method=method, path=path, body=raw, receiver_ss58=receiver_hotkey
        )
        headers["Accept-Encoding"] = "identity"
        if raw:
            headers["Content-Type"] = "application/json"
        total = timeout_s or self.timeout_s
        cap = max_bytes or self.max_answer_bytes
        url = yarl.URL(_base_url(endpoint) + path, encoded=True)
        try:
            async with asyncio.timeout(total):
                async with self.session.request(
                    method,
                    url,
                    data=raw or None,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=total),
                    auto_decompress=False,
                ) as response:
                    status = response.status
                    retry_after = _retry_after(response.headers.get("Retry-After"))
                    try:
                        data = await read_bounded(response, cap)
                    except AnswerRefused as refused:
                        response.close()  # the rest is never read: the connection goes
                        logger.warning(
                            "answer from %s (%s) to %s %s refused: %s",
                            endpoint,
                            receiver_hotkey,
                            method,
                            path,
                            refused.message,
                        )
                        return SignedAnswer(
                            status, ErrorBody(code=refused.code, message=refused.message)
                        )
                return await self._answer(status, data, answer_model, retry_after)
        except TimeoutError:
            return SignedAnswer(0, ErrorBody(code="timeout", message=f"no answer from {endpoint}"))
        except aiohttp.ClientError as exc:
            return SignedAnswer(0, ErrorBody(code="unreachable", message=f"{endpoint}: {exc}"))

    async def _answer(
        self,
        status: int,
        data: bytes | bytearray,
        answer_model: type[Model],
        retry_after: float | None,
    ) -> SignedAnswer:
        if status == 200:
            try:
                return SignedAnswer(status, await _parse(data, answer_model))
            except ValidationError as exc:
                return SignedAnswer(status, ErrorBody(code="bad_answer", message=str(exc)[:300]))
        try:
            error = ErrorBody.model_validate(json.loads(data)["error"])
        except (ValueError, KeyError, TypeError, ValidationError):
            message = bytes(data[:200]).decode(errors="replace")
            error = ErrorBody(code=f"http_{status}", message=message)
        return SignedAnswer(status, error, retry_after)
