"""Start and stop the embedded server: an aiohttp app on its own event loop and thread.

The server is reached only over HTTP on its ``url``, exactly as a client reaches
Runflow; :class:`LocalServer` adds thread-safe read access to its state for tests.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from aiohttp import web

from skinfix_nb.errors import ConfigurationError
from skinfix_nb.local.api import build_app
from skinfix_nb.local.backend import Backend
from skinfix_nb.local.faults import Faults, Latency
from skinfix_nb.local.store import RequestRecord

__all__ = ["LocalServer", "serve", "shared_server", "shared_server_url"]

_LOCAL_KEY = "local"
_START_TIMEOUT = 30.0

_shared_lock = threading.Lock()
_shared: LocalServer | None = None


def serve(
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    api_key: str | None = None,
    engine: Literal["default"] | None = "default",
    latency: Latency = 0.0,
    failure_rate: float = 0.0,
    error_rate: float = 0.0,
    rate_limit_rate: float = 0.0,
    retry_after: float | None = None,
    retry_after_fraction: float = 1.0,
    drop_after_post_rate: float = 0.0,
    credit: Decimal | float | str | None = None,
    credit_runs: int | None = None,
    strict_https: bool = False,
    faults_on_files: bool = False,
    workers: int | None = None,
    seed: int | None = None,
    callback_delays: tuple[float, ...] = (1.0, 2.0),
) -> LocalServer:
    """Start an embedded Runflow-compatible server for ``runflow/skin-fix`` in this process.

    Parameters
    ----------
    port : int
        TCP port; 0 picks a free one (read it from ``.url``).
    host : str
        Address to listen on; keep the default loopback unless you know why.
    api_key : str or None
        The one bearer token accepted; None accepts any non-empty token (``.api_key`` is
        then ``"local"``).
    engine : "default" or None
        ``"default"`` retouches with the local engine. None is benchmark mode: the image is
        not fetched, the output URL is the input URL and processing takes exactly
        ``latency``, so client overhead can be measured alone.
    latency, failure_rate, error_rate, rate_limit_rate, retry_after, retry_after_fraction,
    drop_after_post_rate, credit, credit_runs, strict_https, faults_on_files
        Fault and load settings, all off by default; see
        :class:`~skinfix_nb.local.faults.Faults`. Change them later with ``set_faults``.
    workers : int or None
        Retouch worker threads (default: the CPU count, at most 4).
    seed : int or None
        Seed for the fault dice, for repeatable tests.
    callback_delays : tuple of float
        Waits before callback retries; Runflow's schedule ``(1.0, 2.0)`` gives 3 attempts.

    Returns
    -------
    LocalServer
        Already listening. Stop it with ``.stop()`` or use it as a context manager.
    """
    if engine not in ("default", None):
        raise ConfigurationError(
            f"engine must be 'default' (the local retouch engine) or None (benchmark mode), "
            f"got {engine!r}"
        )
    if workers is None:
        workers = max(1, min(4, os.cpu_count() or 1))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigurationError(f"workers must be a positive integer, got {workers!r}")
    if api_key is not None and (not isinstance(api_key, str) or not api_key.strip()):
        raise ConfigurationError("api_key must be a non-empty string, or None to accept any")
    if any(
        not isinstance(delay, int | float) or isinstance(delay, bool) or delay < 0
        for delay in callback_delays
    ):
        raise ConfigurationError(f"callback_delays must be seconds >= 0, got {callback_delays!r}")
    faults = Faults(
        latency=latency,
        failure_rate=failure_rate,
        error_rate=error_rate,
        rate_limit_rate=rate_limit_rate,
        retry_after=retry_after,
        retry_after_fraction=retry_after_fraction,
        drop_after_post_rate=drop_after_post_rate,
        credit=credit,  # type: ignore[arg-type]  # Faults converts to Decimal and checks it
        credit_runs=credit_runs,
        strict_https=strict_https,
        faults_on_files=faults_on_files,
    )

    def make_backend() -> Backend:
        return Backend(
            api_key=api_key,
            engine=engine,
            faults=faults,
            seed=seed,
            workers=workers,
            callback_delays=tuple(float(delay) for delay in callback_delays),
        )

    return LocalServer(make_backend, host=host, port=port)


def shared_server(*, announce: Callable[[str], None] | None = None) -> LocalServer:
    """The process-wide embedded server that every implicit local connection uses.

    Started on the first call (thread-safe) and stopped when the interpreter exits, so
    ``sf.connect()`` twice, or ``df.skinfix.submit`` then ``df.skinfix.refresh``, reach the
    same runs. Its URL stays the same for the whole process (the ledger keys rows by it):
    if someone stops it, the next call starts it again on the same port.

    Parameters
    ----------
    announce : callable, optional
        Called with the server's URL when this call started it (the first time only).
    """
    global _shared
    with _shared_lock:
        if _shared is not None and not _shared.stopped:
            return _shared
        first_start = _shared is None
        server = serve(port=0 if _shared is None else _shared.port)
        _shared = server
        if first_start:
            atexit.register(_stop_shared_server)
    if first_start and announce is not None:
        announce(server.url)
    return server


def shared_server_url() -> str | None:
    """The shared server's URL if :func:`shared_server` has started it, else None."""
    with _shared_lock:
        return None if _shared is None else _shared.url


def _stop_shared_server() -> None:
    with _shared_lock:
        if _shared is not None:
            _shared.stop()


class LocalServer:
    """A running embedded server. Create it with :func:`serve`.

    Attributes
    ----------
    url : str
        Base URL, e.g. ``http://127.0.0.1:8123``.
    api_key : str
        A bearer token the server accepts.
    """

    def __init__(self, make_backend: Any, *, host: str, port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="skinfix-local-server", daemon=True
        )
        self._runner: web.AppRunner | None = None
        self._stopped = False
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(make_backend, host, port), self._loop)
        try:
            self._backend: Backend = future.result(timeout=_START_TIMEOUT)
        except BaseException:
            self._halt_loop()
            raise
        self.api_key = self._backend.api_key or _LOCAL_KEY
        self.url = self._backend.base_url
        self.port = int(self.url.rsplit(":", 1)[1])

    async def _start(self, make_backend: Any, host: str, port: int) -> Backend:
        backend: Backend = make_backend()
        runner = web.AppRunner(
            build_app(backend), access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=512)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigurationError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                "pick another port, or port=0 for a free one"
            ) from None
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        await backend.start(f"http://{shown}:{bound_port}")
        return backend

    # lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop serving and release the port; pending runs are abandoned. Safe to repeat."""
        if self._stopped:
            return
        self._stopped = True
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            future.result(timeout=_START_TIMEOUT)
        finally:
            self._halt_loop()

    async def _shutdown(self) -> None:
        await self._backend.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _halt_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=_START_TIMEOUT)
        if not self._thread.is_alive():
            self._loop.close()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` has been called."""
        return self._stopped

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        return f"<LocalServer {self.url} {state}>"

    # state for tests and notebooks ------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request answered so far, oldest first (a snapshot)."""
        return self._backend.store.requests()

    def clear_requests(self) -> None:
        self._backend.store.clear_requests()

    def runs(self) -> list[dict[str, Any]]:
        """Every run as the API shows it, oldest first (deep copies)."""
        return self._backend.store.runs_snapshot()

    def billed_usd(self) -> Decimal:
        """USD billed so far: $0.12 per succeeded run; failed and canceled runs are free."""
        return self._backend.store.billed_usd()

    def set_faults(self, **changes: Any) -> None:
        """Change fault settings while running (same names as :func:`serve`).

        Setting ``credit`` or ``credit_runs`` starts a fresh allowance from now on.
        """
        faults = self._backend.faults.replace(**changes)
        if "credit" in changes:
            self._backend.store.set_credit_balance(faults.credit)
        if "credit_runs" in changes:
            self._backend.store.set_credit_runs(faults.credit_runs)
        self._backend.faults = faults

    def serve_file(self, source: str | os.PathLike[str] | bytes, name: str | None = None) -> str:
        """Host an image on this server and return its loopback URL, usable as ``image_url``."""
        from skinfix_nb.images import mime_type_for

        if isinstance(source, bytes):
            data, default_name = source, "image"
        else:
            path = Path(source)
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot read {path} to serve it ({exc.strerror or exc})"
                ) from None
            default_name = path.name
        mime_type = mime_type_for(data)
        return self._backend.host_blob(data, mime_type, name or default_name)
