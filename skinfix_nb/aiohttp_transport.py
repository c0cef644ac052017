"""An httpx transport over aiohttp, for batches: the same client, a fraction of the CPU.

httpx's default async pool (httpcore) spends about 2 ms of CPU per request when a few
dozen requests are in flight at once, which makes a 10,000-image batch CPU-bound on a
small notebook VM. aiohttp (already a dependency: the local backend runs on it) does the
same HTTP/1.1 work for about a fifth of that. This transport keeps every httpx-facing
behaviour (auth, headers, timeouts, errors) and moves only the wire work to aiohttp:

>>> client = AsyncSkinFix(key, transport=AiohttpTransport(max_connections=16))

Errors map to httpx's classes with the distinction retries depend on: a request that
never reached the server raises :class:`httpx.ConnectError` / :class:`httpx.ConnectTimeout`
(safe to resend), one that may have been carried out raises :class:`httpx.ReadError` /
:class:`httpx.ReadTimeout` (look it up first).
"""

from __future__ import annotations

import aiohttp
import httpx

__all__ = ["AiohttpTransport"]

# Hop-by-hop and framing headers aiohttp sets itself for the body it sends.
_SKIPPED = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Send httpx requests through one :class:`aiohttp.ClientSession` (made on first use).

    The session belongs to the event loop of the first request, like httpx's own pool:
    use one client per loop.

    Parameters
    ----------
    max_connections : int
        Connection pool size.
    """

    def __init__(self, *, max_connections: int = 20) -> None:
        if not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError(f"max_connections must be a positive int, got {max_connections!r}")
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections)
            # httpx decodes the body itself, so aiohttp must hand it over untouched
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._open()
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.decode("latin-1").lower() not in _SKIPPED
        ]
        limits = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=limits.get("connect"),
            sock_read=limits.get("read"),
        )
        body = await request.aread()
        try:
            async with session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
            ) as response:
                content = await response.read()
                raw_headers = [(k, v) for k, v in response.raw_headers]
                status = response.status
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc), request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
        except aiohttp.ClientError as exc:  # the request went out; the answer did not come
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        return httpx.Response(status, headers=raw_headers, content=content, request=request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
