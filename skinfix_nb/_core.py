"""The client's logic, written once and free of I/O.

Every operation (submit, get, wait, ...) is a generator that *yields* what it needs done,
a :class:`Call` (send this HTTP request, give me the response) or a :class:`Sleep`, and
receives the result. :class:`~skinfix_nb.client.SkinFix` drives these generators with
``httpx.Client`` and ``time.sleep``, :class:`~skinfix_nb.client.AsyncSkinFix` with
``httpx.AsyncClient`` and ``asyncio.sleep``. Request building, retry timing, the
no-duplicate create, polling and response parsing therefore exist exactly once, and the
two public clients differ only by ``await``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
import uuid
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias, TypeVar, cast
from urllib.parse import quote, urlsplit

import httpx

from skinfix_nb.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RunflowError,
    RunTimeoutError,
    ServerError,
    redact_url,
)
from skinfix_nb.models import Run, RunPage
from skinfix_nb.upload import UploadSource, check_upload_url, read_upload

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MODEL", "Call", "ClientCore", "PollPolicy", "RetryPolicy"]

logger = logging.getLogger("skinfix_nb.client")

DEFAULT_BASE_URL = "https://api.runflow.io"
DEFAULT_MODEL = "runflow/skin-fix"
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=60.0)
UPLOAD_TIMEOUT = 120.0
MAX_CLIENT_REF = 255
RUNS_PATH = "/v1/runs"

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """One HTTP request an operation wants sent; ``url`` is a path under the base URL or absolute."""

    method: str
    url: str
    params: Mapping[str, str | int] | None = None
    json: Any = None
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    authenticated: bool = True
    timeout: float | None = None

    def describe(self) -> str:
        """``METHOD url`` for messages, with any presigned query string removed."""
        return f"{self.method} {redact_url(self.url)}"


@dataclass(frozen=True)
class Sleep:
    """Pause for ``seconds`` before the operation goes on."""

    seconds: float


Action: TypeAlias = Call | Sleep
Op: TypeAlias = Generator[Action, Any, T]
"""An operation: yields actions, is sent ``httpx.Response`` for a Call, returns ``T``."""


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying a request again.

    Retried: HTTP 429, HTTP 5xx and requests that got no answer at all. Never retried:
    402 (no credit) and every other 4xx. The wait is exponential backoff with full jitter,
    ``random() * min(max_delay, base_delay * 2 ** (attempt - 1))``, unless the server sent
    ``Retry-After``, which is honoured up to ``max_retry_after`` seconds.

    Parameters
    ----------
    max_attempts : int
        Tries per request, the first included (1 disables retries).
    base_delay, max_delay : float
        Seconds: the backoff's first ceiling and its cap.
    max_retry_after : float
        Cap on a server's ``Retry-After``, so one bad header cannot stall a notebook.
    max_elapsed : float
        No retry starts after this many seconds spent on one request.
    random : callable
        Source of jitter in [0, 1); tests pass ``lambda: 1.0`` for exact spacing.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    max_elapsed: float = 120.0
    random: Callable[[], float] = field(default=random.random, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if min(self.base_delay, self.max_delay, self.max_retry_after, self.max_elapsed) < 0:
            raise ConfigurationError("retry delays must not be negative")

    def backoff(self, attempt: int) -> float:
        """The jittered wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return self.random() * ceiling

    def delay_after(self, error: RunflowError, *, attempt: int, elapsed: float) -> float | None:
        """Seconds to wait before the next attempt, or None when ``error`` is final."""
        if attempt >= self.max_attempts or not is_retryable(error):
            return None
        retry_after = error.retry_after if isinstance(error, APIError) else None
        if retry_after is not None:
            delay = min(retry_after, self.max_retry_after)
        else:
            delay = self.backoff(attempt)
        return None if elapsed + delay > self.max_elapsed else delay


@dataclass(frozen=True)
class PollPolicy:
    """How ``wait`` polls: ``first`` seconds, growing by ``factor`` up to ``max_interval``.

    Short first intervals catch fast runs early; the cap keeps a long wait from
    hammering the API.
    """

    first: float = 0.25
    factor: float = 1.5
    max_interval: float = 3.0

    def __post_init__(self) -> None:
        if self.first <= 0 or self.factor < 1 or self.max_interval < self.first:
            raise ConfigurationError(
                f"poll intervals must satisfy 0 < first <= max_interval and factor >= 1; got {self}"
            )


def is_retryable(error: RunflowError) -> bool:
    """True for no answer at all, 429 and 5xx; False for 402 and every other 4xx."""
    if isinstance(error, APIConnectionError):
        return True
    return isinstance(error, RateLimitError | ServerError) or (
        isinstance(error, APIError) and error.status_code >= 500
    )


def may_have_landed(error: RunflowError) -> bool:
    """True when a failed POST may still have been carried out by the server.

    A request that never connected did not land; one that timed out or lost its
    connection after being sent may have, and so may one answered by a 5xx (a gateway can
    fail after the service behind it acted).
    """
    if isinstance(error, APIConnectionError):
        return not isinstance(error.__cause__, httpx.ConnectError | httpx.ConnectTimeout)
    return isinstance(error, APIError) and error.status_code >= 500


def new_client_ref() -> str:
    """A fresh correlation id for a submit that was given none."""
    return f"sfnb-{uuid.uuid4().hex}"


def idempotency_key_for(model: str, body: Mapping[str, Any]) -> str:
    """A key that is the same for the same model and request body, and differs otherwise."""
    canonical = json.dumps({"model": model, "body": body}, sort_keys=True, separators=(",", ":"))
    return "sfnb-" + hashlib.sha256(canonical.encode()).hexdigest()[:48]


def check_client_ref(ref: object) -> str:
    """``ref`` if Runflow will take it and it can be looked up with ``client_ref.EQ:'…'``."""
    if not isinstance(ref, str) or not ref or len(ref) > MAX_CLIENT_REF:
        raise ConfigurationError(
            f"client_ref must be a non-empty string of at most {MAX_CLIENT_REF} characters; "
            f"got {_short(ref)}"
        )
    if re.search(r"['\\\x00-\x1f]", ref):
        raise ConfigurationError(
            f"client_ref {_short(ref)} contains a quote, backslash or control character, "
            "which the runs search cannot match: use letters, digits and -_.:/"
        )
    return ref


def model_path(model: str) -> str:
    """``/v1/models/<owner>/<slug>/runs`` with every segment URL-encoded on its own."""
    segments = model.split("/") if isinstance(model, str) else []
    if len(segments) < 2 or any(s in {"", ".", ".."} for s in segments):
        raise ConfigurationError(
            f"model must look like 'owner/slug' (e.g. {DEFAULT_MODEL!r}); got {_short(model)}"
        )
    return "/v1/models/" + "/".join(quote(s, safe="") for s in segments) + "/runs"


def create_body(
    image_url: str,
    *,
    metadata: Mapping[str, Any] | None,
    callback_url: str | None,
    client_ref: str,
) -> dict[str, Any]:
    """The JSON body of a Skin Fix create call, after checking each part."""
    if not isinstance(image_url, str) or not image_url.strip():
        raise ConfigurationError(f"image_url must be a URL string; got {_short(image_url)}")
    scheme = urlsplit(image_url).scheme.lower()
    if scheme not in {"http", "https"}:
        raise ConfigurationError(
            f"image_url must be an http(s) URL; got {_short(redact_url(image_url))}. "
            "For a local file or image call client.upload(...) first and pass the URL it returns"
        )
    body: dict[str, Any] = {"input": {"image_url": image_url}, "client_ref": client_ref}
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise ConfigurationError(f"metadata must be a dict; got {type(metadata).__name__}")
        body["metadata"] = dict(metadata)
    if callback_url is not None:
        if urlsplit(str(callback_url)).scheme not in {"http", "https"}:
            raise ConfigurationError(
                f"callback_url must be an http(s) URL; got {_short(callback_url)}"
            )
        body["callback_url"] = callback_url
    try:
        json.dumps(body)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"metadata must be JSON-serialisable: {exc}") from None
    return body


def runs_query(
    *,
    client_ref: str | None,
    status: str | None,
    created_after: datetime | str | None,
    q: str | None,
) -> str | None:
    """The ``q`` filter of ``GET /v1/runs``: each condition joined with ``AND``."""
    parts: list[str] = []
    if client_ref is not None:
        parts.append(f"client_ref.EQ:'{check_client_ref(client_ref)}'")
    if status is not None:
        parts.append(f"status_code:{status}")
    if created_after is not None:
        stamp = created_after.isoformat() if isinstance(created_after, datetime) else created_after
        parts.append(f"created_at>{stamp}")
    if q:
        parts.append(q)
    return " AND ".join(parts) or None


def run_id_of(run: Run | str) -> str:
    """The id of a :class:`Run` or an id string, checked."""
    run_id = run.id if isinstance(run, Run) else run
    if not isinstance(run_id, str) or not run_id.strip():
        raise ConfigurationError(f"expected a Run or a run id string; got {_short(run)}")
    return run_id


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise APIError(
            f"expected JSON from {redact_url(str(response.request.url))}, got "
            f"{response.headers.get('content-type', 'no content type')}",
            status_code=response.status_code,
        ) from None


def _json_object(response: httpx.Response) -> dict[str, Any]:
    body = _json(response)
    if not isinstance(body, Mapping):
        raise APIError(
            f"expected a JSON object, got {type(body).__name__}", status_code=response.status_code
        )
    return dict(body)


def _run_from(response: httpx.Response) -> Run:
    run = Run.from_json(_json_object(response))
    if run.id is None:
        raise APIError(
            "the server answered with a run that has no id", status_code=response.status_code
        )
    return run


def _list_call(
    *,
    limit: int,
    client_ref: str | None,
    status: str | None,
    created_after: datetime | str | None,
    fields: list[str] | None,
    q: str | None,
    cursor: str | None,
    sort_by: str | None,
) -> Call:
    """``GET /v1/runs`` with its filter, projection, cursor (``pq``) and sort."""
    if not isinstance(limit, int) or not 1 <= limit <= 500:
        raise ConfigurationError(f"limit must be an int from 1 to 500; got {_short(limit)}")
    params: dict[str, str | int] = {"limit": limit}
    query = runs_query(client_ref=client_ref, status=status, created_after=created_after, q=q)
    if query:
        params["q"] = query
    if fields:
        params["fields"] = ",".join(fields)
    if cursor:
        params["pq"] = cursor
    if sort_by:
        params["sort_by"] = sort_by
    return Call("GET", RUNS_PATH, params=params)


def _newest_with_ref(page: RunPage, client_ref: str) -> Run | None:
    """The first (newest) run of ``page`` that really carries ``client_ref``.

    Checked here too, so a server that ignored the filter cannot make a create adopt a
    stranger's run.
    """
    matches = [run for run in page.items if run.client_ref == client_ref and run.id]
    return matches[0] if matches else None


def _connection_error(exc: httpx.RequestError, call: Call, base_url: str) -> APIConnectionError:
    """The error for a request that got no usable answer; the httpx error is its cause."""
    kind = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
    detail = re.sub(r"\?\S*", "?…", str(exc))[:200] or "no details"
    if isinstance(exc, httpx.DecodingError):
        what, advice = "got an answer that could not be decoded", "a proxy may have mangled it"
    elif kind is APITimeoutError:
        what, advice = "got no answer", "the server may or may not have acted on it"
    else:
        what, advice = "got no answer", "check the network and base_url"
    target = call.describe() if "://" in call.url else f"{call.method} {base_url}{call.url}"
    error = kind(f"{target} {what} ({type(exc).__name__}: {detail}); {advice}")
    error.__cause__ = exc
    return error


class ClientCore:
    """State and operations shared by :class:`SkinFix` and :class:`AsyncSkinFix`."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        retry: RetryPolicy,
        poll: PollPolicy,
        clock: Callable[[], float],
    ) -> None:
        parts = urlsplit(base_url) if isinstance(base_url, str) else None
        if parts is None or parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ConfigurationError(
                f"base_url must be an http(s) URL like {DEFAULT_BASE_URL!r}; got {_short(base_url)}"
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._runs_path = model_path(model)
        self._retry = retry
        self._poll = poll
        self._clock = clock

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r})"

    # --- building blocks -------------------------------------------------------------

    def _send(self, call: Call) -> Op[httpx.Response]:
        response = yield call
        return cast(httpx.Response, response)

    def _attempt(
        self, call: Call, *, run_id: str | None = None
    ) -> Op[httpx.Response | RunflowError]:
        """One try: the response when it succeeded, else the error it amounts to."""
        try:
            response = yield from self._send(call)
        except httpx.RequestError as exc:
            return _connection_error(exc, call, self.base_url)
        if response.is_success:
            return response
        return APIError.from_response(response, run_id=run_id)

    def _request(self, call: Call, *, run_id: str | None = None) -> Op[httpx.Response]:
        """Send ``call``, retrying what the retry policy allows; raise the final error."""
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            outcome = yield from self._attempt(call, run_id=run_id)
            if isinstance(outcome, httpx.Response):
                return outcome
            delay = self._retry.delay_after(
                outcome, attempt=attempt, elapsed=self._clock() - started
            )
            if delay is None:
                raise outcome
            self._log_retry(call, outcome, attempt, delay)
            yield Sleep(delay)

    def _log_retry(self, call: Call, error: RunflowError, attempt: int, delay: float) -> None:
        logger.info(
            "%s failed (%s); attempt %d of %d, retrying in %.2f s",
            call.describe(),
            error,
            attempt,
            self._retry.max_attempts,
            delay,
        )

    # --- operations, in the public order ----------------------------------------------

    def _submit(
        self,
        image_url: str,
        *,
        metadata: Mapping[str, Any] | None,
        callback_url: str | None,
        client_ref: str | None,
        idempotency_key: str | None,
    ) -> Op[Run]:
        """Create a run without ever creating it twice.

        The POST carries a ``client_ref`` and an ``Idempotency-Key`` that stay the same
        across retries. After a failure that may have landed (timeout, connection lost
        after sending, 5xx) the ``client_ref`` is looked up before posting again, so a run
        the server did create is returned instead of a second one.
        """
        ref = check_client_ref(client_ref) if client_ref is not None else new_client_ref()
        body = create_body(image_url, metadata=metadata, callback_url=callback_url, client_ref=ref)
        key = idempotency_key or idempotency_key_for(self.model, body)
        call = Call("POST", self._runs_path, json=body, headers={"Idempotency-Key": key})
        started = self._clock()
        ambiguous = False
        attempt = 0
        while True:
            attempt += 1
            found: Run | RunflowError | None = None
            if ambiguous:
                found = yield from self._look_up(ref)
                if isinstance(found, Run):
                    logger.info(
                        "run %s with client_ref %s exists after an unanswered POST; "
                        "not posting again",
                        found.id,
                        ref,
                    )
                    return found
            if isinstance(found, RunflowError):
                failure = found  # the lookup itself failed: that counts as this attempt
            else:
                outcome = yield from self._attempt(call)
                if isinstance(outcome, httpx.Response):
                    return _run_from(outcome)
                failure = outcome
            delay = self._retry.delay_after(
                failure, attempt=attempt, elapsed=self._clock() - started
            )
            if delay is None:
                raise failure
            ambiguous = ambiguous or may_have_landed(failure)
            self._log_retry(call, failure, attempt, delay)
            yield Sleep(delay)

    def _look_up(self, client_ref: str) -> Op[Run | RunflowError | None]:
        """One try at finding ``client_ref``'s run: the run, None if absent, or the error."""
        outcome = yield from self._attempt(self._find_call(client_ref))
        if isinstance(outcome, httpx.Response):
            return _newest_with_ref(RunPage.from_json(_json(outcome)), client_ref)
        return outcome

    def _get(self, run: Run | str) -> Op[Run]:
        run_id = run_id_of(run)
        call = Call("GET", f"/v1/runs/{quote(run_id, safe='')}")
        response = yield from self._request(call, run_id=run_id)
        return _run_from(response)

    def _wait(self, run: Run | str, *, timeout: float | None, poll: PollPolicy | None) -> Op[Run]:
        """Poll until the run is terminal; one try per poll, transient errors only delay it."""
        run_id = run_id_of(run)
        if isinstance(run, Run) and run.is_terminal:
            return run
        if timeout is not None and not timeout > 0:
            raise ConfigurationError(f"timeout must be a positive number of seconds; got {timeout}")
        policy = poll or self._poll
        started = self._clock()
        deadline = started + (math.inf if timeout is None else timeout)
        last = run if isinstance(run, Run) else None
        interval = policy.first
        call = Call("GET", f"/v1/runs/{quote(run_id, safe='')}")
        while True:
            outcome = yield from self._attempt(call, run_id=run_id)
            pause = interval
            if isinstance(outcome, httpx.Response):
                last = _run_from(outcome)
                if last.is_terminal:
                    return last
            elif is_retryable(outcome):
                logger.debug("polling run %s: %s; polling on", run_id, outcome)
                if isinstance(outcome, APIError) and outcome.retry_after is not None:
                    pause = max(pause, min(outcome.retry_after, self._retry.max_retry_after))
            else:
                raise outcome
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise RunTimeoutError(run_id, elapsed=self._clock() - started, run=last)
            yield Sleep(min(pause, remaining))
            interval = min(interval * policy.factor, policy.max_interval)

    def _upload(self, source: UploadSource, *, filename: str | None) -> Op[str]:
        """The three-step asset upload: open a session, PUT the bytes, confirm."""
        payload = read_upload(source, filename=filename)
        session = yield from self._request(
            Call(
                "POST",
                "/v1/asset-uploads",
                json={
                    "filename": payload.filename,
                    "mime_type": payload.mime_type,
                    "size_bytes": len(payload.data),
                },
            )
        )
        opened = _json_object(session)
        asset_id = opened.get("asset_id") or opened.get("id")
        if not isinstance(asset_id, str) or not asset_id:
            raise APIError("the upload session has no asset_id", status_code=session.status_code)
        put = Call(
            "PUT",
            check_upload_url(opened.get("upload_url")),
            content=payload.data,
            headers={"Content-Type": payload.mime_type},
            authenticated=False,
            timeout=UPLOAD_TIMEOUT,
        )
        try:
            yield from self._request(put)
        except PermissionDeniedError as exc:
            raise PermissionDeniedError(
                f"storage refused the upload of {payload.filename!r} ({exc.message}); "
                "presigned upload URLs expire: call upload() again",
                status_code=exc.status_code,
                code=exc.code,
            ) from None
        confirmed = yield from self._request(
            Call("POST", f"/v1/asset-uploads/{quote(asset_id, safe='')}/confirmations", json={})
        )
        url = _json_object(confirmed).get("url")
        if not isinstance(url, str) or not url:
            raise APIError("the confirmed asset has no url", status_code=confirmed.status_code)
        return url

    def _list_runs(
        self,
        *,
        limit: int,
        client_ref: str | None,
        status: str | None,
        created_after: datetime | str | None,
        fields: list[str] | None,
        q: str | None,
        cursor: str | None,
        sort_by: str | None,
    ) -> Op[RunPage]:
        call = _list_call(
            limit=limit,
            client_ref=client_ref,
            status=status,
            created_after=created_after,
            fields=fields,
            q=q,
            cursor=cursor,
            sort_by=sort_by,
        )
        response = yield from self._request(call)
        return RunPage.from_json(_json(response))

    def _find_by_client_ref(self, client_ref: str) -> Op[Run | None]:
        response = yield from self._request(self._find_call(client_ref))
        return _newest_with_ref(RunPage.from_json(_json(response)), client_ref)

    @staticmethod
    def _find_call(client_ref: str) -> Call:
        return _list_call(
            limit=10,
            client_ref=client_ref,
            status=None,
            created_after=None,
            fields=None,
            q=None,
            cursor=None,
            sort_by="created_at:desc",
        )

    def _cancel(self, run: Run | str, *, reason: str | None) -> Op[Run]:
        run_id = run_id_of(run)
        if reason is not None and not 3 <= len(reason) <= 500:
            raise ConfigurationError("reason must be 3 to 500 characters long")
        call = Call(
            "POST",
            f"/v1/admin/runs/{quote(run_id, safe='')}/cancellation",
            json={"reason": reason} if reason else {},
        )
        try:
            response = yield from self._request(call, run_id=run_id)
        except (PermissionDeniedError, NotFoundError) as exc:
            if isinstance(exc, NotFoundError) and exc.code == "RUN_NOT_FOUND":
                raise
            raise PermissionDeniedError(
                "cancel needs Runflow's admin endpoint, which this API key may not call "
                f"({exc.message}). Runflow has no public cancel; the run goes on and most "
                "finish within a minute",
                status_code=exc.status_code,
                code=exc.code,
                request_id=exc.request_id,
                run_id=run_id,
            ) from None
        return _run_from(response)

    def _health(self) -> Op[dict[str, Any]]:
        response = yield from self._request(Call("GET", "/v1/health"))
        return _json_object(response)

    # --- for the drivers -------------------------------------------------------------

    @staticmethod
    def _request_options(call: Call) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client.build_request`` (and the async twin's)."""
        options: dict[str, Any] = {
            "method": call.method,
            "url": call.url,
            "params": call.params,
            "headers": call.headers,
        }
        if call.content is not None:
            options["content"] = call.content
        elif call.json is not None:
            options["json"] = call.json
        if call.timeout is not None:
            options["timeout"] = call.timeout
        return options
