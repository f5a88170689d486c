"""An HTTP transport that keeps a server's connections in several small pools ("lanes") and sends each request on
the least busy one. The connection pool under the `openai` client does work on every request and response for each
idle connection it holds (it probes the socket), so one pool of 256 connections costs far more a request than 16
pools of 16: at hundreds of requests in flight that work, not the server, bounds a client."""

from __future__ import annotations

import math
import urllib.request
from collections.abc import AsyncIterator, Callable

import httpx2

LANE_CONNECTIONS = 16  # connections a lane holds at most


def pooled(connections: int) -> dict:
    """The HTTP client's keyword arguments for `connections` connections to a server: in lanes, or, where the
    environment names a proxy (which the HTTP client honours only on a transport of its own making), in one pool."""
    if urllib.request.getproxies():
        return {"limits": httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)}
    return {"transport": LanedTransport(connections)}


class LanedTransport(httpx2.AsyncBaseTransport):
    def __init__(self, connections: int, lane_connections: int = LANE_CONNECTIONS):
        lanes = max(1, math.ceil(connections / lane_connections))
        size = math.ceil(connections / lanes)
        limits = httpx2.Limits(max_connections=size, max_keepalive_connections=size)
        tls = httpx2.create_ssl_context()  # one for every lane: building one reads the CA bundle (~0.1 s)
        self.lanes = [httpx2.AsyncHTTPTransport(limits=limits, verify=tls) for _ in range(lanes)]
        self.busy = [0] * lanes  # requests each lane carries, until their responses are closed

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        k = min(range(len(self.lanes)), key=self.busy.__getitem__)
        self.busy[k] += 1
        try:
            response = await self.lanes[k].handle_async_request(request)
        except BaseException:
            self.busy[k] -= 1
            raise
        response.stream = _Released(response.stream, lambda: self._release(k))
        return response

    def _release(self, k: int) -> None:
        self.busy[k] -= 1

    async def aclose(self) -> None:
        for lane in self.lanes:
            await lane.aclose()


class _Released(httpx2.AsyncByteStream):
    """A response's body that frees its lane's place when it is closed (read to the end, or dropped)."""

    def __init__(self, stream: httpx2.AsyncByteStream, release: Callable[[], None]):
        self._stream, self._release = stream, release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        release, self._release = self._release, None
        try:
            await self._stream.aclose()
        finally:
            if release is not None:
                release()
