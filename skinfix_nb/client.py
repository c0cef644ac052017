"""Runflow's Skin Fix over HTTP: :class:`SkinFix` (blocking) and :class:`AsyncSkinFix` (await).

>>> import skinfix_nb as sf
>>> client = sf.connect()                       # RUNFLOW_API_KEY, a Colab secret, or local
>>> run = client.run("https://example.com/face.jpg")
>>> run.output_url, run.cost

Both clients run the same operations from :mod:`skinfix_nb._core` (request building,
retries, the no-duplicate create, polling, parsing); each only supplies the I/O.

Why the blocking client drives ``httpx.Client`` rather than the async client through
:func:`~skinfix_nb.loops.run_sync`: a blocking HTTP call needs no event loop at all, so it
works unchanged inside Jupyter's and Colab's running loop (no nesting, no patching, no
second loop or thread), keeps one connection pool for the client's whole life, and stops
at once on a kernel interrupt.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import httpx

from skinfix_nb._core import (
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    RUNS_PATH,
    Call,
    ClientCore,
    Op,
    PollPolicy,
    RetryPolicy,
    Sleep,
)
from skinfix_nb.errors import ConfigurationError, RunFailedError
from skinfix_nb.models import FAILED_STATUSES, Run, RunPage
from skinfix_nb.upload import UploadSource

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "AsyncSkinFix",
    "PollPolicy",
    "RetryPolicy",
    "SkinFix",
    "connect",
    "connect_async",
    "resolve_api_key",
]

ENV_API_KEY = "RUNFLOW_API_KEY"
DEFAULT_MAX_CONNECTIONS = 20

T = TypeVar("T")

LOCAL_NOTICE = (
    "skinfix_nb: using the embedded local backend at {url}. Results are computed on this "
    "machine by skinfix_nb's own retouch engine, NOT by Runflow's Skin Fix model, and "
    "nothing is billed. To use Runflow, set RUNFLOW_API_KEY (or a Colab secret of that "
    "name) or pass api_key=."
)


def _user_agent() -> str:
    from skinfix_nb import __version__

    return f"skinfix-nb/{__version__}"


class _BearerAuth(httpx.Auth):
    """Adds the API key to requests; its repr never shows the key."""

    def __init__(self, api_key: str) -> None:
        self._header = f"Bearer {api_key}"

    @property
    def api_key(self) -> str:
        return self._header.removeprefix("Bearer ")

    @property
    def header(self) -> str:
        """The ``Authorization`` header value."""
        return self._header

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:
        return "_BearerAuth(***)"


def resolve_api_key(
    api_key: str | None = None, *, environ: Mapping[str, str] | None = None
) -> str | None:
    """The API key to use: ``api_key``, else ``$RUNFLOW_API_KEY``, else the Colab secret.

    The Colab secret ``RUNFLOW_API_KEY`` is read only here, when a client is made (never at
    import). A missing secret, a notebook without secret access and a timed-out prompt all
    mean "no key". Returns None when no key is found anywhere.
    """
    if api_key is not None:
        return _check_key(api_key)
    from_env = (os.environ if environ is None else environ).get(ENV_API_KEY, "").strip()
    if from_env:
        return _check_key(from_env)
    return _colab_secret()


def _colab_secret() -> str | None:
    try:
        from google.colab import userdata
    except ImportError:
        return None
    no_key = tuple(
        exc
        for name in ("SecretNotFoundError", "NotebookAccessError", "TimeoutException")
        if isinstance(exc := getattr(userdata, name, None), type) and issubclass(exc, Exception)
    )
    try:
        value = userdata.get(ENV_API_KEY)
    except no_key:
        return None
    return _check_key(value.strip()) if isinstance(value, str) and value.strip() else None


def _check_key(api_key: object) -> str:
    if not isinstance(api_key, str) or not api_key:
        raise ConfigurationError(
            f"api_key must be a non-empty string; got {type(api_key).__name__}"
        )
    if any(ch.isspace() or not ch.isprintable() for ch in api_key):
        raise ConfigurationError(
            "the API key contains spaces or control characters; copy it again from the "
            "Runflow dashboard (Settings → API Keys)"
        )
    return api_key


def _missing_key(base_url: str) -> ConfigurationError:
    return ConfigurationError(
        f"no API key for {base_url}: pass api_key=, set RUNFLOW_API_KEY, or add a Colab "
        "secret named RUNFLOW_API_KEY. To try things offline use sf.connect(local=True)"
    )


class _ClientBase(ClientCore):
    """Constructor logic of both twins: key, limits, timeouts, headers."""

    def __init__(
        self,
        api_key: str | None,
        *,
        base_url: str,
        model: str,
        timeout: float | httpx.Timeout,
        retry: RetryPolicy | None,
        poll: PollPolicy | None,
        max_connections: int,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(
            base_url=base_url,
            model=model,
            retry=retry or RetryPolicy(),
            poll=poll or PollPolicy(),
            clock=clock,
        )
        key = resolve_api_key(api_key)
        if key is None:
            raise _missing_key(self.base_url)
        if not isinstance(max_connections, int) or max_connections < 1:
            raise ConfigurationError(
                f"max_connections must be a positive int; got {max_connections!r}"
            )
        self._auth = _BearerAuth(key)
        self._max_connections = max_connections
        self._http_options: dict[str, Any] = {
            "base_url": self.base_url,
            "auth": self._auth,
            "headers": {"User-Agent": _user_agent(), "Accept": "application/json"},
            "timeout": timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            "limits": httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        }

    @staticmethod
    def _auth_for(call: Call) -> httpx.Auth | httpx._client.UseClientDefault | None:
        # None means "no Authorization header": presigned upload URLs carry their own
        return httpx.USE_CLIENT_DEFAULT if call.authenticated else None


class _DirectSender:
    """Sends a :class:`Call` straight to an explicitly given async transport.

    With its own ``transport=`` an ``httpx.AsyncClient`` mounts no proxies, follows no
    redirects here and has no hooks, so its per-request machinery (URL merging, the auth
    flow, the cookie jar) only costs CPU: about 0.1 ms a request, most of a batch's client
    time. The request sent is the one ``build_request`` would make: the client's default
    headers, the key unless the call is unauthenticated, the call's own headers, the
    client's timeouts.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        transport: httpx.AsyncBaseTransport,
        *,
        base_url: str,
        fixed_paths: tuple[str, ...],
    ) -> None:
        self._transport = transport
        self._base_url = base_url
        self._headers = list(http.headers.multi_items())
        self._timeout = http.timeout.as_dict()
        # URLs of the paths every batch request uses (create, list), parsed once
        self._urls = {path: httpx.URL(base_url + path) for path in fixed_paths}

    def _url(self, url: str) -> httpx.URL:
        if "://" in url:
            return httpx.URL(url)
        return self._urls.get(url) or httpx.URL(self._base_url + url)

    async def send(self, call: Call, authorization: str) -> httpx.Response:
        headers = list(self._headers)
        if call.authenticated:
            headers.append(("Authorization", authorization))
        headers.extend(call.headers.items())
        timeout = self._timeout if call.timeout is None else httpx.Timeout(call.timeout).as_dict()
        request = httpx.Request(
            call.method,
            self._url(call.url),
            params=call.params,
            headers=headers,
            content=call.content,
            json=call.json if call.content is None else None,
            extensions={"timeout": timeout},
        )
        response = await self._transport.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        except BaseException:
            await response.aclose()
            raise
        return response


class SkinFix(_ClientBase):
    """Blocking client for Runflow's ``runflow/skin-fix`` (or any compatible server).

    Parameters
    ----------
    api_key : str, optional
        Runflow API key; else ``$RUNFLOW_API_KEY``, else the Colab secret of that name.
        Never shown in a repr, a log line or an error. :func:`connect` also falls back to
        the embedded local backend; this constructor does not.
    base_url : str
        ``https://api.runflow.io`` or a compatible server, e.g. ``sf.local.serve().url``.
    model : str
        Model id, ``owner/slug``.
    timeout : float or httpx.Timeout
        Per-request limits; the default splits connect (10 s) from read/write (60 s).
    retry : RetryPolicy, optional
        Retries of 5xx, 429 and network errors (default: 5 attempts, backoff with jitter).
    poll : PollPolicy, optional
        How :meth:`wait` polls (default: 0.25 s growing 1.5x to 3 s).
    max_connections : int
        Connection pool size: set it to the concurrency you use.
    transport : httpx.BaseTransport, optional
        For tests and proxies (``df.skinfix.submit`` then sends through it too, from
        worker threads; without one it uses the faster :meth:`to_async` twin).
    sleep, clock : callable
        Injected ``time.sleep`` and ``time.monotonic``.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        model: str = DEFAULT_MODEL,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            api_key,
            base_url=base_url,
            model=model,
            timeout=timeout,
            retry=retry,
            poll=poll,
            max_connections=max_connections,
            clock=clock,
        )
        self._sleep = sleep
        self._http = httpx.Client(transport=transport, **self._http_options)
        self._custom_transport = transport is not None

    def _drive(self, op: Op[T]) -> T:
        reply: httpx.Response | None = None
        failure: httpx.RequestError | None = None
        try:
            while True:
                try:
                    action = op.throw(failure) if failure is not None else op.send(reply)
                except StopIteration as done:
                    return cast(T, done.value)
                reply, failure = None, None
                if isinstance(action, Sleep):
                    self._sleep(action.seconds)
                    continue
                request = self._http.build_request(**self._request_options(action))
                try:
                    reply = self._http.send(request, auth=self._auth_for(action))
                except httpx.RequestError as exc:  # no usable answer
                    failure = exc
        finally:
            op.close()

    def submit(
        self,
        image_url: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        client_ref: str | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        """Start a Skin Fix run on ``image_url`` (an http(s) URL) and return it, queued.

        Safe to retry: the same ``client_ref`` (generated when not given) and a
        deterministic ``Idempotency-Key`` ride on every attempt, and after a failure that
        may have reached the server the run is looked up by ``client_ref`` before posting
        again, so an image is never billed twice for one call.
        """
        return self._drive(
            self._submit(
                image_url,
                metadata=metadata,
                callback_url=callback_url,
                client_ref=client_ref,
                idempotency_key=idempotency_key,
            )
        )

    def get(self, run: Run | str) -> Run:
        """The run's current state (``NotFoundError`` if there is no such run)."""
        return self._drive(self._get(run))

    def wait(
        self, run: Run | str, *, timeout: float | None = 300.0, poll: PollPolicy | None = None
    ) -> Run:
        """Poll until the run is terminal and return it, whatever its final status.

        Polls quickly at first and more slowly later. Transient API errors only delay
        polling. After ``timeout`` seconds (None: no limit) raises ``RunTimeoutError``
        carrying the run id; the run itself goes on at Runflow.
        """
        return self._drive(self._wait(run, timeout=timeout, poll=poll))

    def run(
        self,
        image_url: str,
        *,
        timeout: float | None = 300.0,
        metadata: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        client_ref: str | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        """Submit and wait; raises ``RunFailedError`` if the run ends failed or canceled."""
        run = self.submit(
            image_url,
            metadata=metadata,
            callback_url=callback_url,
            client_ref=client_ref,
            idempotency_key=idempotency_key,
        )
        return _succeeded(self.wait(run, timeout=timeout))

    def upload(self, source: UploadSource, *, filename: str | None = None) -> str:
        """Upload a path, bytes, binary file or PIL image; return its HTTPS asset URL.

        Three steps (session, PUT to a presigned URL without our Authorization header,
        confirmation). At most 50 MiB; the media type is sniffed from the bytes.
        """
        return self._drive(self._upload(source, filename=filename))

    def list_runs(
        self,
        *,
        limit: int = 50,
        client_ref: str | None = None,
        status: str | None = None,
        created_after: datetime | str | None = None,
        fields: list[str] | None = None,
        q: str | None = None,
        cursor: str | None = None,
        sort_by: str | None = None,
    ) -> RunPage:
        """One page of runs matching every filter given; ``page.next`` is the next cursor."""
        return self._drive(
            self._list_runs(
                limit=limit,
                client_ref=client_ref,
                status=status,
                created_after=created_after,
                fields=fields,
                q=q,
                cursor=cursor,
                sort_by=sort_by,
            )
        )

    def iter_runs(
        self,
        *,
        page_size: int = 100,
        client_ref: str | None = None,
        status: str | None = None,
        created_after: datetime | str | None = None,
        q: str | None = None,
    ) -> Iterator[Run]:
        """Every matching run, fetching page after page as the iteration goes."""
        cursor: str | None = None
        while True:
            page = self.list_runs(
                limit=page_size,
                client_ref=client_ref,
                status=status,
                created_after=created_after,
                q=q,
                cursor=cursor,
            )
            yield from page.items
            if not page.next or not page.items:
                return
            cursor = page.next

    def find_by_client_ref(self, client_ref: str) -> Run | None:
        """The newest run submitted with ``client_ref``, or None."""
        return self._drive(self._find_by_client_ref(client_ref))

    def cancel(self, run: Run | str, *, reason: str | None = None) -> Run:
        """Cancel a run through Runflow's admin endpoint (needs an admin key).

        Raises ``PermissionDeniedError`` with an explanation when the key may not cancel;
        an already finished run comes back unchanged.
        """
        return self._drive(self._cancel(run, reason=reason))

    def health(self) -> dict[str, Any]:
        """``GET /v1/health``: ``{"status": "ok", ...}`` when the service is up."""
        return self._drive(self._health())

    def close(self) -> None:
        """Close the connection pool (the shared local backend, if used, keeps running)."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def to_async(
        self,
        *,
        max_connections: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> AsyncSkinFix:
        """An :class:`AsyncSkinFix` configured like this client, for ``await`` and batches.

        Same API key, base URL, model, timeouts, retry and poll policies and clock; the key
        passes from one client to the other without showing up anywhere. The new client
        has its own connection pool (an async pool belongs to the event loop that uses it),
        so close it separately. A blocking ``transport`` cannot serve it: pass an async one.

        Parameters
        ----------
        max_connections : int, optional
            Pool size of the new client (default: this client's).
        transport : httpx.AsyncBaseTransport, optional
            E.g. :class:`~skinfix_nb.aiohttp_transport.AiohttpTransport` for batches.
        """
        return AsyncSkinFix(
            self._auth.api_key,
            base_url=self.base_url,
            model=self.model,
            timeout=self._http_options["timeout"],
            retry=self._retry,
            poll=self._poll,
            max_connections=max_connections or self._max_connections,
            transport=transport,
            clock=self._clock,
        )


class AsyncSkinFix(_ClientBase):
    """The :class:`SkinFix` client for ``await``: same arguments, same methods.

    ``sleep`` is an injected ``asyncio.sleep``. Use ``async with`` or ``await
    client.close()``.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        model: str = DEFAULT_MODEL,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            api_key,
            base_url=base_url,
            model=model,
            timeout=timeout,
            retry=retry,
            poll=poll,
            max_connections=max_connections,
            clock=clock,
        )
        self._sleep = sleep
        self._http = httpx.AsyncClient(transport=transport, **self._http_options)
        self._direct = (
            _DirectSender(
                self._http,
                transport,
                base_url=self.base_url,
                fixed_paths=(self._runs_path, RUNS_PATH),
            )
            if transport is not None
            else None
        )

    async def _drive(self, op: Op[T]) -> T:
        reply: httpx.Response | None = None
        failure: httpx.RequestError | None = None
        try:
            while True:
                try:
                    action = op.throw(failure) if failure is not None else op.send(reply)
                except StopIteration as done:
                    return cast(T, done.value)
                reply, failure = None, None
                if isinstance(action, Sleep):
                    await self._sleep(action.seconds)
                    continue
                try:
                    reply = await self._send_call(action)
                except httpx.RequestError as exc:  # no usable answer
                    failure = exc
        finally:
            op.close()

    async def _send_call(self, call: Call) -> httpx.Response:
        if self._direct is not None:
            return await self._direct.send(call, self._auth.header)
        request = self._http.build_request(**self._request_options(call))
        return await self._http.send(request, auth=self._auth_for(call))

    async def submit(
        self,
        image_url: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        client_ref: str | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        """Start a Skin Fix run; safe to retry (see :meth:`SkinFix.submit`)."""
        return await self._drive(
            self._submit(
                image_url,
                metadata=metadata,
                callback_url=callback_url,
                client_ref=client_ref,
                idempotency_key=idempotency_key,
            )
        )

    async def get(self, run: Run | str) -> Run:
        """The run's current state (``NotFoundError`` if there is no such run)."""
        return await self._drive(self._get(run))

    async def wait(
        self, run: Run | str, *, timeout: float | None = 300.0, poll: PollPolicy | None = None
    ) -> Run:
        """Poll until terminal; ``RunTimeoutError`` after ``timeout`` (see :meth:`SkinFix.wait`)."""
        return await self._drive(self._wait(run, timeout=timeout, poll=poll))

    async def run(
        self,
        image_url: str,
        *,
        timeout: float | None = 300.0,
        metadata: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        client_ref: str | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        """Submit and wait; raises ``RunFailedError`` if the run ends failed or canceled."""
        run = await self.submit(
            image_url,
            metadata=metadata,
            callback_url=callback_url,
            client_ref=client_ref,
            idempotency_key=idempotency_key,
        )
        return _succeeded(await self.wait(run, timeout=timeout))

    async def upload(self, source: UploadSource, *, filename: str | None = None) -> str:
        """Upload a path, bytes, binary file or PIL image; return its HTTPS asset URL."""
        return await self._drive(self._upload(source, filename=filename))

    async def list_runs(
        self,
        *,
        limit: int = 50,
        client_ref: str | None = None,
        status: str | None = None,
        created_after: datetime | str | None = None,
        fields: list[str] | None = None,
        q: str | None = None,
        cursor: str | None = None,
        sort_by: str | None = None,
    ) -> RunPage:
        """One page of runs matching every filter given; ``page.next`` is the next cursor."""
        return await self._drive(
            self._list_runs(
                limit=limit,
                client_ref=client_ref,
                status=status,
                created_after=created_after,
                fields=fields,
                q=q,
                cursor=cursor,
                sort_by=sort_by,
            )
        )

    async def iter_runs(
        self,
        *,
        page_size: int = 100,
        client_ref: str | None = None,
        status: str | None = None,
        created_after: datetime | str | None = None,
        q: str | None = None,
    ) -> AsyncIterator[Run]:
        """Every matching run, fetching page after page as the iteration goes."""
        cursor: str | None = None
        while True:
            page = await self.list_runs(
                limit=page_size,
                client_ref=client_ref,
                status=status,
                created_after=created_after,
                q=q,
                cursor=cursor,
            )
            for run in page.items:
                yield run
            if not page.next or not page.items:
                return
            cursor = page.next

    async def find_by_client_ref(self, client_ref: str) -> Run | None:
        """The newest run submitted with ``client_ref``, or None."""
        return await self._drive(self._find_by_client_ref(client_ref))

    async def cancel(self, run: Run | str, *, reason: str | None = None) -> Run:
        """Cancel a run through Runflow's admin endpoint (see :meth:`SkinFix.cancel`)."""
        return await self._drive(self._cancel(run, reason=reason))

    async def health(self) -> dict[str, Any]:
        """``GET /v1/health``: ``{"status": "ok", ...}`` when the service is up."""
        return await self._drive(self._health())

    async def close(self) -> None:
        """Close the connection pool (the shared local backend, if used, keeps running)."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _succeeded(run: Run) -> Run:
    if run.status in FAILED_STATUSES:
        raise RunFailedError(run)
    return run


ClientT = TypeVar("ClientT", SkinFix, AsyncSkinFix)


def connect(
    api_key: str | None = None,
    *,
    base_url: str | None = None,
    local: bool = False,
    _environ: Mapping[str, str] | None = None,
    **options: Any,
) -> SkinFix:
    """A ready :class:`SkinFix` client, finding the key the way notebooks need.

    The key is ``api_key``, else ``$RUNFLOW_API_KEY``, else the Colab secret
    ``RUNFLOW_API_KEY``. With none of them (and no ``base_url``), or with ``local=True``,
    the embedded local backend is used and a notice says so (once): its results come from
    skinfix_nb's own engine, not from Runflow. That backend is one server per process
    (:func:`skinfix_nb.local.shared_server`), started on first need and stopped at exit,
    so every such client sees the same runs; closing a client leaves it running.
    ``options`` go to :class:`SkinFix` (``timeout``, ``retry``,
    ``max_connections``, ...).
    """
    return _connect(
        SkinFix, api_key, base_url=base_url, local=local, environ=_environ, options=options
    )


def connect_async(
    api_key: str | None = None,
    *,
    base_url: str | None = None,
    local: bool = False,
    _environ: Mapping[str, str] | None = None,
    **options: Any,
) -> AsyncSkinFix:
    """The :class:`AsyncSkinFix` twin of :func:`connect`; same arguments."""
    return _connect(
        AsyncSkinFix, api_key, base_url=base_url, local=local, environ=_environ, options=options
    )


def _connect(
    cls: type[ClientT],
    api_key: str | None,
    *,
    base_url: str | None,
    local: bool,
    environ: Mapping[str, str] | None,
    options: dict[str, Any],
) -> ClientT:
    if local:
        if api_key is not None or base_url is not None:
            raise ConfigurationError(
                "local=True starts the embedded backend; drop api_key= and base_url=, or "
                "drop local=True to reach that server"
            )
        return _connect_local(cls, options)
    key = resolve_api_key(api_key, environ=environ)
    if key is not None:
        return cls(key, base_url=base_url or DEFAULT_BASE_URL, **options)
    if base_url is not None:
        raise _missing_key(base_url)
    return _connect_local(cls, options)


def _connect_local(cls: type[ClientT], options: dict[str, Any]) -> ClientT:
    from skinfix_nb.local import shared_server

    server = shared_server(announce=_print_local_notice)
    return cls(server.api_key, base_url=server.url, **options)


def _print_local_notice(url: str) -> None:
    print(LOCAL_NOTICE.format(url=url), file=sys.stderr)
