"""A failing S3 node on loopback: an HTTP proxy in front of a real S3 server that can lie.

It forwards every request to the S3 server behind it (moto) unchanged,
except what a test switches on: 404 ``NoSuchKey`` for object GETs (all, or
only each key's first), and 503 for listings. That is what a failing node,
a stale cache or a load balancer in trouble answers, while the objects
themselves are fine.

    proxy = await FaultProxy.start(s3.endpoint)
    settings = s3.settings(bucket, endpoint_url=proxy.endpoint)
    proxy.missing_gets = True          # every GET of an object: 404
    proxy.failing_lists = True         # every listing: 503
    await proxy.stop()
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

NO_SUCH_KEY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code>'
    b"<Message>The specified key does not exist.</Message></Error>"
)
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_HOP = frozenset({"transfer-encoding", "connection", "keep-alive", "content-length"})


@dataclass
class FaultProxy:
    upstream: str
    missing_gets: bool = False  # 404 for every object GET
    missing_first_get: bool = False  # 404 for the first GET of each key only
    failing_lists: bool = False  # 503 for every listing
    gets: dict[str, int] = field(default_factory=dict)  # path -> GETs seen
    lists: int = 0
    endpoint: str = ""
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    @classmethod
    async def start(cls, upstream: str) -> FaultProxy:
        proxy = cls(upstream.rstrip("/"))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", proxy._handle)
        proxy._session = aiohttp.ClientSession(auto_decompress=False)
        proxy._runner = web.AppRunner(app, access_log=None)
        await proxy._runner.setup()
        site = web.TCPSite(proxy._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        proxy.endpoint = f"http://127.0.0.1:{port}"
        return proxy

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        listing = request.method == "GET" and "list-type" in request.query
        object_get = request.method == "GET" and not listing and request.path.count("/") >= 2
        if listing:
            self.lists += 1
            if self.failing_lists:
                return web.Response(status=503, body=SLOW_DOWN, content_type="application/xml")
        if object_get:
            seen = self.gets.get(request.path, 0)
            self.gets[request.path] = seen + 1
            if self.missing_gets or (self.missing_first_get and seen == 0):
                return web.Response(status=404, body=NO_SUCH_KEY, content_type="application/xml")
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as upstream:
            body = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
            return web.Response(status=upstream.status, body=body, headers=out)
