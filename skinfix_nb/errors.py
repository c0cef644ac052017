"""One exception tree for everything skinfix_nb raises.

::

    RunflowError
    ├── APIError                      an HTTP answer from Runflow (or the local backend)
    │   ├── BadRequestError             400
    │   ├── AuthenticationError         401
    │   ├── InsufficientCreditError     402  (never retried; stops a batch)
    │   ├── PermissionDeniedError       403
    │   ├── NotFoundError               404
    │   ├── ConflictError               409
    │   ├── ValidationError             422  (.errors holds the field errors)
    │   ├── RateLimitError              429  (.retry_after when the server sent one)
    │   └── ServerError                 5xx
    ├── APIConnectionError            no HTTP answer: connect failure, dropped connection
    │   └── APITimeoutError             the request timed out
    ├── RunFailedError                a run ended failed or canceled (.run)
    ├── RunTimeoutError               wait() hit its deadline (.run_id; the run goes on)
    ├── InvalidImageError             not a usable image (also a ValueError)
    │   └── ImageTooLargeError          decompression bomb or over the upload limit
    ├── InvalidSignature              a callback failed its signature check (also a ValueError)
    ├── InvalidCallback               a callback body that is not a run event (also a ValueError)
    └── ConfigurationError            bad arguments or set-up, e.g. no API key (also a ValueError)

API errors are built by :meth:`APIError.from_response`, which reads the
``{code, message, errors}`` envelope and FastAPI-style ``{detail}`` bodies alike.
Messages never carry an API key or a presigned query string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import httpx

    from skinfix_nb.models import Run

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "ImageTooLargeError",
    "InsufficientCreditError",
    "InvalidCallback",
    "InvalidImageError",
    "InvalidSignature",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RunFailedError",
    "RunTimeoutError",
    "RunflowError",
    "ServerError",
    "ValidationError",
    "redact_url",
]

_MAX_MESSAGE = 300
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")


def redact_url(url: str) -> str:
    """Drop the query string and fragment of a URL (presigned credentials live there)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if not parts.query and not parts.fragment:
        return url
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) + "?…"


def _scrub(text: str) -> str:
    """Remove bearer tokens from text that came from elsewhere, and keep it short."""
    text = _BEARER.sub(r"\1***", text)
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


class RunflowError(Exception):
    """Base class of every error skinfix_nb raises on purpose."""


class APIError(RunflowError):
    """The API answered with an error status.

    Attributes
    ----------
    status_code : int
        The HTTP status.
    code : str or None
        Runflow's stable error code, e.g. ``"INSUFFICIENT_CREDIT"``.
    message : str
        The server's message, shortened to 300 characters.
    errors : list
        Field errors of a validation failure (``[{"loc": ..., "msg": ...}, ...]``).
    request_id : str or None
        ``Runflow-Request-Id`` / ``X-Request-Id`` of the response, for support.
    run_id : str or None
        The run the request was about, when known.
    """

    hint = ""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        errors: list[Any] | None = None,
        request_id: str | None = None,
        run_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = _scrub(message)
        self.status_code = status_code
        self.code = code
        self.errors = errors or []
        self.request_id = request_id
        self.run_id = run_id
        self.retry_after = retry_after
        super().__init__(self._format())

    def _format(self) -> str:
        head = f"HTTP {self.status_code}"
        if self.code:
            head += f" {self.code}"
        text = f"{head}: {self.message}"
        if self.errors:
            text += " (" + "; ".join(_describe_field_error(e) for e in self.errors[:5]) + ")"
        if self.run_id:
            text += f" [run {self.run_id}]"
        if self.request_id:
            text += f" [request {self.request_id}]"
        if self.hint:
            text += f". {self.hint}"
        return text

    @classmethod
    def from_response(cls, response: httpx.Response, *, run_id: str | None = None) -> APIError:
        """Build the right subclass from an error response."""
        code, message, errors = _parse_error_body(response)
        status = response.status_code
        error_cls = _class_for(status, code)
        request_id = response.headers.get("runflow-request-id") or response.headers.get(
            "x-request-id"
        )
        return error_cls(
            message or response.reason_phrase or "request failed",
            status_code=status,
            code=code,
            errors=errors,
            request_id=request_id,
            run_id=run_id,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )


class BadRequestError(APIError):
    """400: the request was malformed."""


class AuthenticationError(APIError):
    """401: the API key is missing, wrong or revoked."""

    hint = "Check RUNFLOW_API_KEY (Runflow dashboard → Settings → API Keys)"


class InsufficientCreditError(APIError):
    """402: the organisation has no credit left. Never retried."""

    hint = "Top up credit in the Runflow dashboard; rows not yet sent were not billed"


class PermissionDeniedError(APIError):
    """403: the key lacks a scope for this call (e.g. admin-only cancel)."""

    hint = "This API key is not allowed to do that; ask for a key with the needed scope"


class NotFoundError(APIError):
    """404: no such run, asset or route."""


class ConflictError(APIError):
    """409: e.g. an Idempotency-Key reused with a different body."""


class ValidationError(APIError):
    """400/422: the input was rejected; ``.errors`` lists the fields."""


class RateLimitError(APIError):
    """429: too many requests; ``.retry_after`` holds the server's advice, if any."""


class ServerError(APIError):
    """5xx: the service failed; safe calls are retried before this is raised."""


class APIConnectionError(RunflowError):
    """No HTTP answer came back (refused, reset, dropped mid-response)."""


class APITimeoutError(APIConnectionError):
    """The request timed out; whether the server acted on it is unknown."""


class RunFailedError(RunflowError):
    """A run ended ``failed`` or ``canceled``; ``.run`` holds it."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.run_id = run.id
        reason = run.failure_message or run.failure_code or "no reason given"
        super().__init__(f"run {run.id} ended {run.status}: {_scrub(reason)}")


class RunTimeoutError(RunflowError, TimeoutError):
    """``wait()`` reached its deadline. The run itself goes on at Runflow."""

    def __init__(self, run_id: str, *, elapsed: float, run: Run | None = None) -> None:
        self.run_id = run_id
        self.elapsed = elapsed
        self.run = run
        status = f" (last seen {run.status})" if run is not None else ""
        super().__init__(
            f"run {run_id} not finished after {elapsed:.1f} s{status}; it keeps running "
            f"server-side: call client.wait({run_id!r}) again or client.get({run_id!r}) later"
        )


class InvalidImageError(RunflowError, ValueError):
    """The data is not an image this toolkit can read (corrupt, empty, unsupported)."""


class ImageTooLargeError(InvalidImageError):
    """Too many pixels (a possible decompression bomb) or too many bytes to upload."""


class InvalidCallback(RunflowError, ValueError):
    """A callback body that is not a Runflow run event (not a JSON object, or no ``run_id``)."""


class InvalidSignature(RunflowError, ValueError):
    """A callback's ``Runflow-Signature`` does not match its body."""


class ConfigurationError(RunflowError, ValueError):
    """The toolkit was set up or called in a way that cannot work; the message says how to fix it."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    429: RateLimitError,
}

_BY_CODE: dict[str, type[APIError]] = {
    "UNAUTHORIZED": AuthenticationError,
    "INSUFFICIENT_CREDIT": InsufficientCreditError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "RATE_LIMITED": RateLimitError,
    "VALIDATION_ERROR": ValidationError,
}


def _class_for(status: int, code: str | None) -> type[APIError]:
    if code and code.upper() in _BY_CODE:
        return _BY_CODE[code.upper()]
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    return APIError


def _parse_error_body(response: httpx.Response) -> tuple[str | None, str, list[Any]]:
    """Read ``{code, message, errors}``, ``{error: {...}}``, ``{error: "..."}`` or ``{detail}``."""
    try:
        body: Any = json.loads(response.content)
    except (ValueError, RecursionError):  # not JSON, or absurdly deep nesting
        text = response.content[:200].decode("utf-8", "replace").strip()
        if text.lstrip().startswith("<"):
            text = "the server returned an HTML page instead of JSON"
        return None, text, []
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        body = body["error"]
    if not isinstance(body, Mapping):
        return None, str(body), []
    code = body.get("code")
    code = str(code) if code is not None else None
    message = body.get("message")
    errors = body.get("errors")
    detail = body.get("detail")
    if isinstance(body.get("error"), str) and not message:
        message = body["error"]
    if isinstance(detail, list):
        errors = errors or detail
        message = message or "validation failed"
    elif detail is not None and not message:
        message = str(detail)
    return code, str(message or ""), list(errors) if isinstance(errors, list) else []


def _describe_field_error(error: Any) -> str:
    if isinstance(error, Mapping):
        loc = error.get("loc") or error.get("field") or error.get("path")
        msg = error.get("msg") or error.get("message") or ""
        if isinstance(loc, list | tuple):
            loc = ".".join(str(part) for part in loc)
        return _scrub(f"{loc}: {msg}" if loc else str(msg))
    return _scrub(str(error))


def parse_retry_after(value: str | None, *, cap: float = 60.0) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form), capped; None if absent or bad."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return min(seconds, cap)
