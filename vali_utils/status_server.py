"""The validator's read-only status page on its own port (``--status.port``; 0 = off).

Routes (GET only; each HTML page has a JSON twin with the same figures):

- ``/`` (``?q=`` filter, ``?page=``) and ``/api/status``: epoch, phase, time
  left, the last cycles and the miners table;
- ``/miner/{uid}`` (``?page=`` of zipcodes) and ``/api/miners/{uid}``: one
  miner's cycles, zipcode outcomes, flags with their evidence, answers and
  S3 evaluation rounds.

Reads go to a worker thread (``asyncio.to_thread``) on a read-only connection,
so the event loop the validator's cycle runs on never waits on the disk. A
miner page parses the last 12 cycle reports (about 0.6 MB each at 256 miners),
so on a 2-core validator the page reads the store once at a time and keeps
each document ``VIEW_CACHE_S`` seconds (``ViewCache``): a burst of page loads
costs one read, not one per request. The
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
from collections import OrderedDict
from collections.abc import Callable, Hashable

from aiohttp import web

from common.http_server import ConnectionGate, RunningServer, ServerLimits, serve_app
from vali_utils.status_html import SCRIPT, error_page, miner_page, overview_page
from vali_utils.status_view import QUERY_LIMIT, StatusReader, StatusUnavailable

logger = logging.getLogger(__name__)

MAX_PAGE = 10_000  # a page number past the last shows the last page
# How long a document read from the store is shown again: the page's figures
# change once a cycle (hours), its phase countdown may lag this much.
VIEW_CACHE_S = 3.0
VIEW_CACHE_ENTRIES = 64  # documents kept (pages of the overview, miners' pages)
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


class ViewCache:
    """Documents read from the store, kept ``ttl_s`` seconds, read one at a time.

    ``await cache.view(key, read)`` returns the document cached under ``key``
    while fresh, else runs ``read`` in a worker thread once no other read is
    running (a request that waited finds the document its predecessor read).
    At most ``entries`` documents are kept, the least recently read dropped
    first. ``read``'s exceptions are not cached.
    """

    def __init__(
        self,
        ttl_s: float = VIEW_CACHE_S,
        entries: int = VIEW_CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s, self.entries, self.clock = ttl_s, entries, clock
        self._views: OrderedDict[Hashable, tuple[float, object]] = OrderedDict()
        self._reading = asyncio.Semaphore(1)

    def _fresh(self, key: Hashable) -> tuple[bool, object]:
        kept = self._views.get(key)
        if kept is None or self.clock() - kept[0] >= self.ttl_s:
            return False, None
        return True, kept[1]

    async def view(self, key: Hashable, read: Callable[[], object]) -> object:
        found, view = self._fresh(key)
        if found:
            return view
        # Held across the read on purpose: it is what keeps the page to one store
        # read at a time; waiters queue on the event loop, not in worker threads.
        async with self._reading:
            found, view = self._fresh(key)
            if found:
                return view
            view = await asyncio.to_thread(read)
        self._views[key] = (self.clock(), view)
        self._views.move_to_end(key)
        while len(self._views) > self.entries:
            self._views.popitem(last=False)
        return view


def status_app(
    reader: StatusReader,
    clock: Callable[[], float] = time.time,
    gate: ConnectionGate | None = None,
    cache: ViewCache | None = None,
) -> web.Application:
    """The status page's routes over ``reader``; ``clock`` gives the time shown (unix s).

    ``cache`` (default: a new ``ViewCache``) keeps the documents read.
    """
    cache = cache or ViewCache()

    async def answer(request: web.Request, key: tuple, read, render) -> web.Response:
        try:
            view = await cache.view(key, read)
        except StatusUnavailable as exc:
            logger.warning("status page: %s", exc)
            return _error(request, 503, str(exc))
        if view is None:
            return _error(request, 404, "no such miner in the stored cycles")
        if _wants_json(request):
            return web.json_response(view, headers=SECURITY_HEADERS)
        return web.Response(text=render(view), content_type="text/html", headers=SECURITY_HEADERS)

    async def overview(request: web.Request) -> web.Response:
        # Cut as the reader cuts it, so the key is bounded and equal queries share it.
        query, page = request.query.get("q", "").strip()[:QUERY_LIMIT], _page(request)
        return await answer(
            request,
            ("overview", page, query),
            lambda: reader.overview(clock(), page, query),
            overview_page,
        )

    async def miner(request: web.Request) -> web.Response:
        try:
            uid = int(request.match_info["uid"])
        except ValueError:
            return _error(request, 404, "a miner's uid is a number")
        page = _page(request)
        return await answer(
            request, ("miner", uid, page), lambda: reader.miner(uid, clock(), page), miner_page
        )

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
    cache: ViewCache | None = None,
) -> RunningServer:
    """Serve the status page on ``host:port`` (0: a free port). Raises OSError when taken."""
    gate = ConnectionGate(limits or ServerLimits())
    server = await serve_app(status_app(reader, clock, gate, cache), gate, host, port)
    logger.info("status page on http://%s:%d/", host, server.port)
    return server
