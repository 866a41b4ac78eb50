"""The validator's read-only status page on its own port (``--status.port``; 0 = off).

Routes (GET only; each HTML page has a JSON twin with the same figures):

- ``/`` (``?q=`` filter, ``?page=``) and ``/api/status``: epoch, phase, time
  left, the last cycles and the miners table;
- ``/miner/{uid}`` (``?page=`` of zipcodes) and ``/api/miners/{uid}``: one
  miner's cycles, zipcode outcomes, flags with their evidence, answers and
  S3 evaluation rounds.

Reads go to a worker thread (``asyncio.to_thread``) on a read-only connection,
so the event loop the validator's cycle runs on never waits on the disk. The
server keeps the same connection limits as the validator's other servers
(``common/http_server.py``), and a Content-Security-Policy that lets only the
page's own inline script run: even an unescaped miner string could not.

    server = await serve_status(StatusReader(state_dir, clock), "127.0.0.1", 9180, limits)
    server.port; await server.close()
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import Callable

from aiohttp import web

from common.http_server import ConnectionGate, RunningServer, ServerLimits, serve_app
from vali_utils.status_html import SCRIPT, error_page, miner_page, overview_page
from vali_utils.status_view import StatusReader, StatusUnavailable

logger = logging.getLogger(__name__)

MAX_PAGE = 10_000  # a page number past the last shows the last page
SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; script-src 'sha256-{SCRIPT_HASH}'; style-src 'unsafe-inline';"
        " img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _page(request: web.Request) -> int:
    try:
        return min(MAX_PAGE, max(1, int(request.query.get("page", "1"))))
    except ValueError:
        return 1


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.query.get("format") == "json"


def status_app(
    reader: StatusReader,
    clock: Callable[[], float] = time.time,
    gate: ConnectionGate | None = None,
) -> web.Application:
    """The status page's routes over ``reader``; ``clock`` gives the time shown (unix s)."""

    async def answer(request: web.Request, read, render) -> web.Response:
        try:
            view = await asyncio.to_thread(read)
        except StatusUnavailable as exc:
            logger.warning("status page: %s", exc)
            return _error(request, 503, str(exc))
        if view is None:
            return _error(request, 404, "no such miner in the stored cycles")
        if _wants_json(request):
            return web.json_response(view, headers=SECURITY_HEADERS)
        return web.Response(text=render(view), content_type="text/html", headers=SECURITY_HEADERS)

    async def overview(request: web.Request) -> web.Response:
        query, page = request.query.get("q", ""), _page(request)
        return await answer(request, lambda: reader.overview(clock(), page, query), overview_page)

    async def miner(request: web.Request) -> web.Response:
        try:
            uid = int(request.match_info["uid"])
        except ValueError:
            return _error(request, 404, "a miner's uid is a number")
        page = _page(request)
        return await answer(request, lambda: reader.miner(uid, clock(), page), miner_page)

    app = web.Application(middlewares=[gate.middleware] if gate else [])
    app.router.add_get("/", overview)
    app.router.add_get("/api/status", overview)
    app.router.add_get("/miner/{uid}", miner)
    app.router.add_get("/api/miners/{uid}", miner)
    return app


def _error(request: web.Request, status: int, message: str) -> web.Response:
    if _wants_json(request):
        return web.json_response({"error": message}, status=status, headers=SECURITY_HEADERS)
    return web.Response(
        text=error_page(status, message),
        status=status,
        content_type="text/html",
        headers=SECURITY_HEADERS,
    )


async def serve_status(
    reader: StatusReader,
    host: str,
    port: int,
    limits: ServerLimits | None = None,
    clock: Callable[[], float] = time.time,
) -> RunningServer:
    """Serve the status page on ``host:port`` (0: a free port). Raises OSError when taken."""
    gate = ConnectionGate(limits or ServerLimits())
    server = await serve_app(status_app(reader, clock, gate), gate, host, port)
    logger.info("status page on http://%s:%d/", host, server.port)
    return server
