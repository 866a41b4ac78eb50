"""A fake zillow-com1 API (RapidAPI) on loopback, for the source's tests and its benchmark.

It serves ``/propertyExtendedSearch`` and ``/property`` from data a test sets,
checks the RapidAPI key (403 for any other), and records when each request
arrived so a test can measure the rate the client really held. Scripted
replies (429, 5xx, slow or truncated answers) are served first, in order.

    fake = FakeRapidApi(latency_s=0.05)
    fake.set_listings("77494", "ForSale", props, per_page=41)   # paginated for you
    fake.set_page("77021", "RecentlySold", 1, payload)           # or a raw answer
    fake.set_property("27837052", payload)
    fake.script(Reply(429, headers={"Retry-After": "1"}), Reply(500))
    base_url = await fake.start()
    ...
    fake.arrivals("/propertyExtendedSearch")                       # monotonic times
    await fake.stop()
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

VALID_KEY = "test-key"
SEARCH_PATH = "/propertyExtendedSearch"
PROPERTY_PATH = "/property"
EMPTY_PAGE = {"props": [], "resultsPerPage": 41, "totalPages": 0, "totalResultCount": 0}


@dataclass(frozen=True)
class Reply:
    """A scripted answer. With status 200 and neither ``body`` nor ``text`` it only
    delays: the normal data is served after ``delay_s``."""

    status: int = 200
    body: Any = None  # sent as JSON
    text: str | None = None  # sent as is (e.g. truncated JSON), as application/json
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Arrival:
    at: float  # time.monotonic() when the request reached the handler
    path: str
    query: dict[str, str]
    key: str | None  # X-RapidAPI-Key
    host: str | None  # X-RapidAPI-Host


class FakeRapidApi:
    def __init__(self, latency_s: float = 0.0, valid_key: str = VALID_KEY) -> None:
        self.latency_s = latency_s
        self.valid_key = valid_key
        self.requests: list[Arrival] = []
        self._pages: dict[tuple[str, str, int], Any] = {}
        self._properties: dict[str, Any] = {}
        self._script: deque[Reply] = deque()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -- data ---------------------------------------------------------------
    def set_page(self, location: str, status_type: str, page: int, payload: Any) -> None:
        self._pages[(location, status_type, page)] = payload

    def set_listings(
        self, location: str, status_type: str, props: list[dict], per_page: int = 41
    ) -> None:
        """Serve ``props`` as pages of ``per_page``, with totalPages as the API gives it."""
        total_pages = max(1, -(-len(props) // per_page))
        for page in range(1, total_pages + 1):
            chunk = props[(page - 1) * per_page : page * per_page]
            self.set_page(
                location,
                status_type,
                page,
                {
                    "props": chunk,
                    "resultsPerPage": per_page,
                    "totalPages": total_pages if props else 0,
                    "totalResultCount": len(props),
                    "currentPage": page,
                },
            )

    def set_property(self, zpid: str, payload: Any) -> None:
        self._properties[str(zpid)] = payload

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, then with the data again."""
        self._script.extend(replies)

    def arrivals(self, path: str | None = None) -> list[float]:
        return [r.at for r in self.requests if path is None or r.path == path]

    # -- server -------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application()
        app.router.add_get(SEARCH_PATH, self._search)
        app.router.add_get(PROPERTY_PATH, self._property)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # the real port of port 0
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeRapidApi:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _search(self, request: web.Request) -> web.StreamResponse:
        async def data() -> web.StreamResponse:
            query = request.query
            try:
                page = int(query.get("page", "1"))
            except ValueError:
                return web.json_response({"message": "page must be a number"}, status=400)
            key = (query.get("location", ""), query.get("status_type", ""), page)
            return web.json_response(self._pages.get(key, EMPTY_PAGE))

        return await self._answer(request, data)

    async def _property(self, request: web.Request) -> web.StreamResponse:
        async def data() -> web.StreamResponse:
            payload = self._properties.get(request.query.get("zpid", ""))
            if payload is None:
                return web.json_response({"message": "property not found"}, status=404)
            return web.json_response(payload)

        return await self._answer(request, data)

    async def _answer(self, request: web.Request, data) -> web.StreamResponse:
        key = request.headers.get("X-RapidAPI-Key")
        self.requests.append(
            Arrival(
                time.monotonic(),
                request.path,
                dict(request.query),
                key,
                request.headers.get("X-RapidAPI-Host"),
            )
        )
        if key != self.valid_key:
            return web.json_response({"message": "You are not subscribed to this API."}, status=403)
        reply = self._script.popleft() if self._script else None
        delay = self.latency_s + (reply.delay_s if reply else 0.0)
        if delay:
            await asyncio.sleep(delay)
        if reply is None or (reply.status == 200 and reply.body is None and reply.text is None):
            return await data()
        if reply.text is not None:
            return web.Response(
                status=reply.status,
                text=reply.text,
                content_type="application/json",
                headers=reply.headers,
            )
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)
