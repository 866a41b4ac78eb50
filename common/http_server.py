"""Serving aiohttp to untrusted peers: connection cap, header and body deadlines, body slots.

    limits = ServerLimits.from_settings(settings)
    gate, bodies = ConnectionGate(limits), BodyGate(limits)
    app = web.Application(middlewares=[gate.middleware])
    app.router.add_post(ROUTE, signed_route(AccessPolicy(..., body_gate=bodies), serve))
    server = await serve_app(app, gate, host, port)
    server.port; await server.close()

What each limit does (docs/limits.md has the operator's view):

- Headers: aiohttp's keep-alive timer starts when a connection opens and closes
  it while it is still waiting for a complete request, so ``header_timeout_s``
  is both the header deadline and the idle keep-alive timeout.
- Connections: at most ``max_connections``, and never within ``HTTP_FD_RESERVE``
  of the open-file limit, so accept() keeps working. At the cap, the oldest
  connection that never completed a request (a slow-header attacker's) makes
  room, then the oldest idle one; a connection with a request in flight is
  never dropped. With nothing to drop, the new connection is closed.
- Bodies: ``BodyGate.read`` reads under ``body_timeout_s`` (waiting for a slot
  included); bodies above ``SMALL_BODY_BYTES`` need one of ``max_body_reads``
  slots. A body is only read once everything that does not need it has been
  checked (``signed_route``).

Closed and refused connections are counted and logged as one summary line at
most every ``SUMMARY_EVERY_S``; a dropped body is one line per request.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from common.bounded_read import OverCap, read_capped
from config.settings import (
    HTTP_BODY_TIMEOUT_S,
    HTTP_FD_RESERVE,
    HTTP_HEADER_TIMEOUT_S,
    HTTP_MAX_BODY_READS,
    HTTP_MAX_CONNECTIONS,
)

logger = logging.getLogger(__name__)

# Up to this, a body is in aiohttp's receive buffer already (it reads 64 KiB ahead
# of the handler whether asked or not), so reading it costs no slot.
SMALL_BODY_BYTES = 64 * 1024
# A refused body left unread is discarded for at most this long before the
# connection closes (aiohttp's default is 10 s).
LINGERING_S = 1.0
# Our requests carry ~10 headers of < 200 bytes; aiohttp allows 128 of 8 KiB,
# a megabyte a slow-header connection could make it hold.
MAX_HEADERS = 32
MAX_FIELD_BYTES = 4096
LISTEN_BACKLOG = 512
SUMMARY_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What a server allows its peers; defaults and reasons in ``config/settings.py``."""

    header_timeout_s: float = HTTP_HEADER_TIMEOUT_S
    body_timeout_s: float = HTTP_BODY_TIMEOUT_S
    max_connections: int = HTTP_MAX_CONNECTIONS
    max_body_reads: int = HTTP_MAX_BODY_READS

    @classmethod
    def from_settings(cls, settings) -> ServerLimits:
        return cls(
            header_timeout_s=settings.http_header_timeout_s,
            body_timeout_s=settings.http_body_timeout_s,
            max_connections=settings.http_max_connections,
            max_body_reads=settings.http_max_body_reads,
        )

    def connection_cap(self) -> int:
        """``max_connections``, lowered to stay ``HTTP_FD_RESERVE`` under the open-file limit."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(1, min(self.max_connections, soft - HTTP_FD_RESERVE))


class BodyRefused(Exception):
    """A body was not read: too large (413), too slow (408), no slot in time (503), dropped."""

    def __init__(self, status: int, code: str, message: str, dropped: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.dropped = dropped  # the peer went away: nobody will read the answer


class BodyGate:
    """Reads request bodies under a deadline, with a bounded number of large ones at once."""

    def __init__(self, limits: ServerLimits | None = None) -> None:
        limits = limits or ServerLimits()
        self.timeout_s = limits.body_timeout_s
        self._slots = asyncio.Semaphore(limits.max_body_reads)

    async def read(self, request: web.BaseRequest, limit: int) -> bytes:
        """The body, at most ``limit`` bytes; raises BodyRefused."""
        declared = request.content_length
        small = declared is not None and declared <= SMALL_BODY_BYTES
        holding = False
        try:
            async with asyncio.timeout(self.timeout_s):
                if small:  # within the cap, known length: one read, no slot
                    return await request.read() if declared <= limit else _too_large(limit)
                await self._slots.acquire()
                holding = True
                return await _read_capped(request, limit)
        except TimeoutError:
            if holding or small:
                raise BodyRefused(
                    408, "body_timeout", f"body not received within {self.timeout_s:g}s"
                ) from None
            raise BodyRefused(
                503, "busy", "too many bodies being read; try again shortly"
            ) from None
        except (ConnectionError, web.RequestPayloadError) as exc:
            raise BodyRefused(400, "dropped", f"connection lost: {exc}", dropped=True) from None
        finally:
            if holding:
                self._slots.release()


def _too_large(limit: int) -> bytes:
    raise BodyRefused(413, "body_too_large", f"body over {limit} bytes")


async def _read_capped(request: web.BaseRequest, limit: int) -> bytes:
    try:
        return bytes(await read_capped(request.content, request.content_length, limit))
    except OverCap:
        return _too_large(limit)


class _Connection(asyncio.Protocol):
    """aiohttp's protocol for one connection, seen by the gate on its way in and out."""

    __slots__ = ("evicted", "gate", "handler", "in_flight", "opened", "requests")

    def __init__(self, gate: ConnectionGate, handler: RequestHandler) -> None:
        self.gate = gate
        self.handler = handler
        self.opened = 0.0
        self.requests = 0
        self.in_flight = 0
        self.evicted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.opened = self.gate.clock()
        self.gate._live[self.handler] = self
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received()

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gate._lost(self)
        self.handler.connection_lost(exc)


class _Refused(asyncio.Protocol):
    """Closes a connection the gate has no room for, without reading a byte."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class ConnectionGate:
    """Counts, caps and evicts a server's connections; its middleware marks requests."""

    def __init__(
        self, limits: ServerLimits | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits or ServerLimits()
        self.cap = self.limits.connection_cap()
        self.clock = clock
        self._server: web.Server | None = None
        self._live: dict[RequestHandler, _Connection] = {}  # oldest first
        self._evicting = 0
        self._counts = {"evicted": 0, "refused": 0, "no_request": 0}
        self._summary: asyncio.TimerHandle | None = None

    @property
    def open_connections(self) -> int:
        return len(self._live)

    def bind(self, server: web.Server) -> None:
        self._server = server

    def __call__(self) -> asyncio.Protocol:
        """The protocol factory for ``loop.create_server``: one call per accepted socket."""
        assert self._server is not None, "bind() the runner's server first"
        if len(self._live) - self._evicting >= self.cap and not self._make_room():
            self._count("refused")
            return _Refused()
        return _Connection(self, self._server())

    def _make_room(self) -> bool:
        victim = next(
            (c for c in self._live.values() if not c.evicted and c.requests == 0), None
        ) or next((c for c in self._live.values() if not c.evicted and c.in_flight == 0), None)
        if victim is None:
            return False
        victim.evicted = True
        self._evicting += 1
        victim.handler.force_close()
        self._count("evicted")
        return True

    def _lost(self, connection: _Connection) -> None:
        self._live.pop(connection.handler, None)
        if connection.evicted:
            self._evicting -= 1
        elif (
            connection.requests == 0
            and self.clock() - connection.opened >= self.limits.header_timeout_s * 0.99
        ):
            self._count("no_request")

    def _count(self, what: str) -> None:
        self._counts[what] += 1
        if self._summary is None:
            loop = asyncio.get_running_loop()
            self._summary = loop.call_later(SUMMARY_EVERY_S, self._log_summary)

    def _log_summary(self) -> None:
        self._summary = None
        counts, self._counts = self._counts, dict.fromkeys(self._counts, 0)
        logger.warning(
            "connections in the last %gs: %d closed for sending no request within %gs, "
            "%d evicted and %d refused at the cap of %d (%d open)",
            SUMMARY_EVERY_S,
            counts["no_request"],
            self.limits.header_timeout_s,
            counts["evicted"],
            counts["refused"],
            self.cap,
            len(self._live),
        )

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        connection = self._live.get(request.protocol)
        if connection is None:  # a test client or a request built by hand
            return await handler(request)
        connection.requests += 1
        connection.in_flight += 1
        try:
            return await handler(request)
        finally:
            connection.in_flight -= 1

    def close(self) -> None:
        if self._summary is not None:
            self._summary.cancel()
            self._log_summary()


@dataclass
class RunningServer:
    """A listening socket feeding an aiohttp runner through a ``ConnectionGate``."""

    port: int
    gate: ConnectionGate
    _runner: web.AppRunner
    _listener: asyncio.Server

    async def close(self) -> None:
        self._listener.close()
        await self._runner.cleanup()  # closes every open connection
        self.gate.close()


async def serve_app(
    app: web.Application,
    gate: ConnectionGate,
    host: str,
    port: int,
    reuse_port: bool = False,
) -> RunningServer:
    """Serve ``app`` on ``host:port`` (0: a free port) with ``gate``'s limits.

    Raises OSError when the port is taken.
    """
    runner = web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=gate.limits.header_timeout_s,
        lingering_time=LINGERING_S,
        max_headers=MAX_HEADERS,
        max_field_size=MAX_FIELD_BYTES,
    )
    await runner.setup()
    gate.bind(runner.server)
    loop = asyncio.get_running_loop()
    try:
        listener = await loop.create_server(
            gate, host, port, reuse_port=reuse_port or None, backlog=LISTEN_BACKLOG
        )
    except OSError:
        await runner.cleanup()
        raise
    bound = listener.sockets[0].getsockname()[1]
    logger.info(
        "serving %s:%d: at most %d connections, headers within %gs, bodies within %gs",
        host,
        bound,
        gate.cap,
        gate.limits.header_timeout_s,
        gate.limits.body_timeout_s,
    )
    return RunningServer(bound, gate, runner, listener)
