"""A hostile loopback HTTP server: it answers every route of the Runflow API with junk.

Each request takes the next :class:`Junk` from a queue the test fills (or the default
one), so a test can walk the client through hundreds of malformed, truncated, mistyped
and mislabelled answers and check that only the documented errors come out.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType

from aiohttp import web

__all__ = ["HostileServer", "Junk", "junk_bodies"]


@dataclass(frozen=True)
class Junk:
    """One answer: status, raw body bytes, headers, and how to break the connection.

    ``cut`` > 0 announces ``cut`` more bytes in ``Content-Length`` than are sent, then
    closes the connection (a truncated body).
    """

    name: str
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    cut: int = 0


_HTML_PAGES = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
    b"<html><body><h1>Service Unavailable</h1><p>Please try again later.</p></body></html>",
    b"<html><head><title>Sign in</title></head><body><form action='/login'></form></body></html>",
    b"<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>Request has expired"
    b"</Message></Error>",
)

_RUN = {
    "id": "run_0001",
    "status_code": "succeeded",
    "client_ref": "sfnb-fuzz",
    "output": {"image_url": "https://example.test/o.png"},
    "cost": "0.12",
    "duration_ms": 120,
    "created_at": "2026-01-01T00:00:00Z",
    "completed_at": "2026-01-01T00:00:01Z",
}

_WRONG_VALUES: tuple[object, ...] = (
    None,
    True,
    0,
    -1,
    1e308,
    "",
    "x" * 5000,
    [],
    [1, "a", None],
    {},
    {"nested": {"deeper": [1, 2, {"x": None}]}},
    "NaN",
    "2026-13-45T99:99:99Z",
    "\u0000\ud7ff\ufffd",
)


def _wrong_type_bodies() -> list[tuple[str, bytes]]:
    """Run and list documents where one field at a time holds a value of the wrong type."""
    bodies: list[tuple[str, bytes]] = []
    for key in list(_RUN) + ["outputs", "metadata", "timing", "seed", "nsfw_detected", "status"]:
        for position, value in enumerate(_WRONG_VALUES):
            doc = dict(_RUN)
            doc[key] = value
            bodies.append((f"run.{key}={position}", json.dumps(doc).encode()))
    for position, value in enumerate(_WRONG_VALUES):
        bodies.append((f"list.items={position}", json.dumps({"items": value}).encode()))
        bodies.append(
            (f"list.item={position}", json.dumps({"items": [value, _RUN], "next": value}).encode())
        )
        bodies.append((f"top={position}", json.dumps(value).encode()))
        bodies.append(
            (
                f"error.envelope={position}",
                json.dumps({"code": value, "message": value, "errors": value}).encode(),
            )
        )
        bodies.append(
            (
                f"upload={position}",
                json.dumps({"asset_id": value, "upload_url": value, "url": value}).encode(),
            )
        )
    return bodies


def _malformed_json() -> list[tuple[str, bytes]]:
    text = json.dumps(_RUN).encode()
    cuts = [text[:n] for n in (1, 2, 5, 17, 40, len(text) // 2, len(text) - 1)]
    odd = [
        ("empty-commas", b"{,}"),
        ("single-quotes", b"{'id': 'single quotes'}"),
        ("trailing-comma", b'{"id": "run_1",}'),
        ("nan-infinity", b'{"id": NaN, "cost": Infinity}'),
        ("utf16-bom", b"\xff\xfe\x00{"),
        ("bad-utf8", b'{"id": "\xc3\x28"}'),
        ("null-garbage", b"null garbage"),
        ("deep-array", b"[" * 100_000 + b"]" * 100_000),
        ("deep-object", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
        ("space", b" "),
        ("empty", b""),
        ("nul-bytes", b"\x00" * 64),
        ("two-documents", b'{"id": "run_1"}{"id": "run_2"}'),
        ("bare-string", b'"just a string"'),
        ("huge-exponent", b"1e999999"),
    ]
    return [(f"cut{n}", body) for n, body in enumerate(cuts)] + odd


def junk_bodies() -> list[Junk]:
    """Every junk answer, each at several statuses and content types (>= 500 of them)."""
    answers: list[Junk] = []
    json_type = {"Content-Type": "application/json"}
    statuses = (200, 201, 400, 402, 404, 409, 422, 429, 500, 502, 503)
    for name, body in _malformed_json():
        for status in (200, 201, 422, 429, 500):
            answers.append(Junk(f"malformed:{name}@{status}", status, body, json_type))
    for position, page in enumerate(_HTML_PAGES):
        for status in statuses:
            answers.append(
                Junk(f"html{position}@{status}", status, page, {"Content-Type": "text/html"})
            )
    for name, body in _wrong_type_bodies():
        status = 200 if not name.startswith("error") else 400
        answers.append(Junk(f"wrong:{name}", status, body, json_type))
        if not name.startswith("error"):
            answers.append(Junk(f"wrong:{name}@201", 201, body, json_type))
        if name.startswith("error"):
            answers.append(Junk(f"wrong:{name}@402", 402, body, json_type))
            answers.append(Junk(f"wrong:{name}@503", 503, body, json_type))
    full = json.dumps(_RUN).encode()
    for cut in (1, 10, 100, 10_000):
        for status in (200, 500):
            answers.append(Junk(f"truncated:{cut}@{status}", status, full, json_type, cut=cut))
    answers.append(
        Junk(
            "gzip-lie",
            200,
            b"this is not gzip data",
            {"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
    )
    answers.append(
        Junk(
            "gzip-truncated",
            200,
            gzip.compress(full)[:20],
            {"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
    )
    answers.append(
        Junk("charset-lie", 200, full, {"Content-Type": "application/json; charset=klingon"})
    )
    for value in ("-5", "NaN", "inf", "1e400", "Wed, 21 Oct 2015 07:28:00 GMT", "99999999"):
        answers.append(
            Junk(
                f"retry-after:{value}",
                429,
                b'{"code": "RATE_LIMITED", "message": "slow down"}',
                {"Content-Type": "application/json", "Retry-After": value},
            )
        )
    return answers


class HostileServer:
    """An aiohttp server on 127.0.0.1 in a daemon thread that answers with queued junk.

    ``feed(junk)`` sets what the next requests get: each request pops one; when the queue
    is empty the last one is repeated.
    """

    def __init__(self) -> None:
        self._queue: deque[Junk] = deque()
        self._last = Junk("empty", 200, b"")
        self._lock = threading.Lock()
        self.hits = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        self.url = f"http://127.0.0.1:{port}"

    async def _start(self) -> int:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._answer)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        return int(runner.addresses[0][1])

    def feed(self, *junk: Junk) -> None:
        with self._lock:
            self._queue.clear()
            self._queue.extend(junk)

    def _next(self) -> Junk:
        with self._lock:
            self.hits += 1
            if self._queue:
                self._last = self._queue.popleft()
            return self._last

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        junk = self._next()
        if junk.cut:
            response = web.StreamResponse(status=junk.status, headers=junk.headers)
            response.content_length = len(junk.body) + junk.cut
            await response.prepare(request)
            await response.write(junk.body)
            if request.transport is not None:
                request.transport.close()
            return response
        return web.Response(status=junk.status, body=junk.body, headers=junk.headers)

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
