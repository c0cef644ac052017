"""Run callbacks: check their signature, read them, and receive them on a small local server.

Runflow POSTs a JSON event to a run's ``callback_url`` once the run is terminal, signed in
the ``Runflow-Signature`` header with the lowercase hex HMAC-SHA256 of the *raw* body
under the organisation's callback secret. There is no timestamp in the signature, and the
same event can arrive more than once, so receivers verify the exact bytes and de-duplicate
on ``run_id``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import queue
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from skinfix_nb.errors import ConfigurationError, InvalidCallback, InvalidSignature
from skinfix_nb.models import Run, _datetime, normalize_status

__all__ = [
    "SIGNATURE_HEADER",
    "CallbackEvent",
    "CallbackReceiver",
    "parse_callback",
    "verify_signature",
]

logger = logging.getLogger("skinfix_nb.callbacks")

SIGNATURE_HEADER = "Runflow-Signature"
REQUEST_ID_HEADER = "Runflow-Request-Id"
_HEX_SIGNATURE = re.compile(r"[0-9a-f]{64}")


def verify_signature(body: bytes, signature: str | None, secret: str | Iterable[str]) -> bool:
    """True when ``signature`` is the HMAC-SHA256 of ``body`` under ``secret`` (or any of several).

    Parameters
    ----------
    body : bytes
        The request body exactly as received. Never re-serialised JSON: one changed byte
        (spacing, key order) breaks the signature.
    signature : str or None
        The ``Runflow-Signature`` header value (64 hex digits); None or malformed is False.
    secret : str or iterable of str
        The callback secret (``whsec_...``), or several while rotating secrets.

    The comparison takes constant time.
    """
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError(
            f"body must be the raw request bytes, got {type(body).__name__}: "
            "re-encoded text or JSON would not match the signature"
        )
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets or not all(isinstance(s, str) and s for s in secrets):
        raise ConfigurationError("secret must be a non-empty string (or a list of them)")
    if not isinstance(signature, str):
        return False
    candidate = signature.strip().lower()
    if not _HEX_SIGNATURE.fullmatch(candidate):
        return False
    matched = False
    for key in secrets:
        expected = hmac.new(key.encode("utf-8"), bytes(body), hashlib.sha256).hexdigest()
        matched |= hmac.compare_digest(expected, candidate)
    return matched


@dataclass(frozen=True, repr=False)
class CallbackEvent:
    """One run event as delivered to a ``callback_url``.

    ``event`` is e.g. ``run.completed`` / ``run.failed`` / ``run.cancelled``; ``status`` is
    normalised like :attr:`Run.status`; ``run`` gives the same data as a :class:`Run`
    (with ``output_url``); ``raw`` is the decoded JSON as received.
    """

    event: str | None
    run_id: str
    status: str
    output: dict[str, Any] | None
    duration_ms: int | None
    created_at: datetime | None
    completed_at: datetime | None
    metadata: dict[str, Any]
    request_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, payload: object, *, request_id: str | None = None) -> CallbackEvent:
        """Read a decoded callback body; raises ``InvalidCallback`` if it is not a run event."""
        if not isinstance(payload, Mapping):
            raise InvalidCallback(f"a callback body is a JSON object, got {type(payload).__name__}")
        run = Run.from_json(
            {
                "id": payload.get("run_id"),
                "status_code": payload.get("status"),
                "output": payload.get("output"),
                "duration_ms": payload.get("duration_ms"),
                "metadata": payload.get("metadata"),
            }
        )
        if run.id is None:
            raise InvalidCallback("the callback body has no run_id: not a Runflow run event")
        event = payload.get("event")
        return cls(
            event=event if isinstance(event, str) else None,
            run_id=run.id,
            status=normalize_status(payload.get("status")),
            output=run.output,
            duration_ms=run.duration_ms,
            created_at=_datetime(payload.get("created_at")),
            completed_at=_datetime(payload.get("completed_at")),
            metadata=run.metadata,
            request_id=request_id,
            raw=dict(payload),
        )

    @property
    def run(self) -> Run:
        """The event as a :class:`Run` (id, status, output and ``output_url``, cost unknown)."""
        return Run.from_json(
            {
                "id": self.run_id,
                "status_code": self.status,
                "output": self.output,
                "duration_ms": self.duration_ms,
                "metadata": self.metadata,
                "created_at": self.raw.get("created_at"),
                "completed_at": self.raw.get("completed_at"),
            }
        )

    def __repr__(self) -> str:
        return f"CallbackEvent({self.event!r}, run_id={self.run_id!r}, status={self.status!r})"


def parse_callback(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | Iterable[str] | None = None,
) -> CallbackEvent:
    """Verify (when ``secret`` is given) and read a callback request.

    Parameters
    ----------
    body : bytes
        The raw request body.
    headers : mapping
        The request headers (any capitalisation).
    secret : str or iterable of str, optional
        The callback secret(s). Without one the signature is not checked: only do that
        on a receiver nobody else can reach.

    Raises
    ------
    InvalidSignature
        The signature is missing or does not match.
    InvalidCallback
        The body is not a JSON run event.
    """
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    if secret is not None:
        signature = lowered.get(SIGNATURE_HEADER.lower())
        if signature is None:
            raise InvalidSignature(
                f"no {SIGNATURE_HEADER} header: Runflow signs callbacks only once a callback "
                "secret exists (POST /v1/callback-secrets)"
            )
        if not verify_signature(body, signature, secret):
            raise InvalidSignature(
                f"{SIGNATURE_HEADER} does not match the body for any configured secret"
            )
    try:
        payload = json.loads(bytes(body))
    except (ValueError, UnicodeDecodeError):
        raise InvalidCallback("the callback body is not JSON") from None
    return CallbackEvent.from_json(payload, request_id=lowered.get(REQUEST_ID_HEADER.lower()))


class CallbackReceiver:
    """A small HTTP server on 127.0.0.1 that receives run callbacks.

    Each POST is verified against ``secret`` (401 if it fails), de-duplicated on
    ``run_id`` (a repeat is acknowledged and dropped), then handed to ``handler`` or, with
    no handler, put on :attr:`events`. A handler that raises gets the delivery answered
    500, so Runflow tries it again. Pass :attr:`url` as a run's ``callback_url``.

    >>> with CallbackReceiver(secret=secret) as receiver:
    ...     run = client.submit(url, callback_url=receiver.url)
    ...     event = receiver.events.get(timeout=60)

    Parameters
    ----------
    secret : str, iterable of str, or None
        Callback secret(s) to accept (several during rotation). None accepts unsigned
        callbacks; do that only on loopback.
    handler : callable, optional
        Called with each new :class:`CallbackEvent`, in a worker thread.
    host, port : str, int
        Where to listen; port 0 picks a free one.
    path : str
        The URL path callbacks are posted to.
    """

    def __init__(
        self,
        *,
        secret: str | Iterable[str] | None,
        handler: Callable[[CallbackEvent], object] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/runflow/callback",
    ) -> None:
        self._secrets = (
            None if secret is None else ([secret] if isinstance(secret, str) else list(secret))
        )
        if self._secrets is not None:
            verify_signature(b"", None, self._secrets)  # checks the secrets' shape early
        self._handler = handler
        self._host = host
        self._port = port
        self._path = path if path.startswith("/") else "/" + path
        self.events: queue.Queue[CallbackEvent] = queue.Queue()
        self._seen: set[str] = set()
        self._seen_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._bound_port: int | None = None

    @property
    def url(self) -> str:
        """The callback URL to give Runflow (the receiver must be started)."""
        if self._bound_port is None:
            raise ConfigurationError("the receiver is not running: call start() or use 'with'")
        return f"http://{self._host}:{self._bound_port}{self._path}"

    def start(self) -> Self:
        """Start listening in a daemon thread; returns self."""
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failures: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:  # reported to start() in the calling thread
                failures.append(exc)
                return
            finally:
                started.set()
            loop.run_forever()

        thread = threading.Thread(target=serve, name="skinfix-nb-callbacks", daemon=True)
        thread.start()
        started.wait()
        if failures:
            thread.join()
            loop.close()
            raise ConfigurationError(
                f"the callback receiver cannot listen on {self._host}:{self._port}: {failures[0]}"
            ) from failures[0]
        self._loop, self._thread = loop, thread
        return self

    async def _listen(self) -> None:
        app = web.Application()
        app.router.add_post(self._path, self._receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._bound_port = int(runner.addresses[0][1])

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            event = parse_callback(body, request.headers, self._secrets)
        except InvalidSignature as exc:
            return _answer(401, "INVALID_SIGNATURE", str(exc))
        except InvalidCallback as exc:
            return _answer(400, "INVALID_CALLBACK", str(exc))
        with self._seen_lock:
            if event.run_id in self._seen:
                return _answer(200, "DUPLICATE", f"run {event.run_id} was already received")
            self._seen.add(event.run_id)
        try:
            if self._handler is None:
                self.events.put(event)
            else:
                await asyncio.get_running_loop().run_in_executor(None, self._handler, event)
        except Exception:
            with self._seen_lock:
                self._seen.discard(event.run_id)
            logger.exception("callback handler failed for run %s", event.run_id)
            return _answer(500, "HANDLER_FAILED", "the handler raised; deliver again")
        return _answer(200, "OK", "received")

    def stop(self) -> None:
        """Stop listening and end the thread (idempotent)."""
        loop, thread, runner = self._loop, self._thread, self._runner
        if loop is None or thread is None:
            return
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = self._runner = None
        self._bound_port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._bound_port is not None else "stopped"
        return f"CallbackReceiver({where}, received={len(self._seen)})"


def _answer(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message, "errors": None}, status=status)
