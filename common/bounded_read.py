"""Reading a peer's HTTP body without ever holding more than a cap of it.

The one loop the servers (``common/http_server.py``) and the client
(``common/signed_client.py``) both use: the declared length is checked first,
then the body is read in chunks and refused the moment it passes the cap.

    body = await read_capped(request.content, request.content_length, limit)  # OverCap
"""

from __future__ import annotations

from aiohttp import StreamReader

READ_CHUNK_BYTES = 64 * 1024


class OverCap(Exception):
    """The body is longer than the cap; ``declared`` when its header already said so."""

    def __init__(self, limit: int, declared: int | None) -> None:
        super().__init__(f"{declared if declared is not None else 'more than'} bytes, cap {limit}")
        self.limit = limit
        self.declared = declared


async def read_capped(stream: StreamReader, declared: int | None, limit: int) -> bytearray:
    """At most ``limit`` bytes of ``stream``; raises OverCap past it (nothing more is read)."""
    if declared is not None and declared > limit:
        raise OverCap(limit, declared)
    body = bytearray()
    async for chunk in stream.iter_chunked(READ_CHUNK_BYTES):
        if len(body) + len(chunk) > limit:
            raise OverCap(limit, None)
        body += chunk
    return body
