"""The Run model: Runflow's run JSON, read leniently into one typed, immutable object.

Runflow documents most run fields as optional and has spelled some of them two ways
(``canceled`` / ``cancelled``, ``outputs[].url`` / ``image_urls[]``). :meth:`Run.from_json`
accepts every variant seen in the wild, never raises on a missing or null field, and keeps
the untouched payload in :attr:`Run.raw` so nothing the service sends is lost.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeGuard

from skinfix_nb.errors import redact_url

__all__ = [
    "FAILED_STATUSES",
    "MAX_DURATION_MS",
    "TERMINAL_STATUSES",
    "Run",
    "RunPage",
    "normalize_status",
]

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "partial_succeeded"})
"""Statuses after which a run never changes again."""

FAILED_STATUSES = frozenset({"failed", "canceled"})
"""Terminal statuses that produced no output (and, for ``failed``, no bill)."""

MAX_DURATION_MS = 30 * 24 * 3600 * 1000
"""The longest ``duration_ms`` taken at face value (a month); longer is a junk figure."""

_SPELLINGS = {"cancelled": "canceled", "errored": "failed", "error": "failed"}


def normalize_status(status: object) -> str:
    """Runflow's status in one spelling: ``cancelled -> canceled``, ``errored -> failed``.

    Unknown values are kept (lower-cased), so a status added later still shows up as itself;
    a missing one becomes ``"unknown"``.
    """
    if not isinstance(status, str) or not status.strip():
        return "unknown"
    text = status.strip().lower()
    return _SPELLINGS.get(text, text)


@dataclass(frozen=True, repr=False)
class Run:
    """One Skin Fix run as Runflow (or the local backend) reports it.

    Every field may be ``None``: Runflow marks nearly all of them optional. ``status`` is
    normalised (see :func:`normalize_status`); ``cost`` is a :class:`~decimal.Decimal` in USD
    (``None`` until the run is billed); ``output_url`` is the retouched image, read from
    ``output.outputs[0].url`` with ``output.image_urls[0]`` as fallback; ``raw`` is the JSON
    object exactly as received.

    Build one with :meth:`Run.from_json`. In a notebook a run shows itself as a small card
    with status, cost, duration and before/after thumbnails.
    """

    id: str | None
    status: str
    model: str | None = None
    input: dict[str, Any] = field(default_factory=dict)
    image_url: str | None = None
    output: dict[str, Any] | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    output_url: str | None = None
    cost: Decimal | None = None
    duration_ms: int | None = None
    seed: int | None = None
    timing: dict[str, Any] | None = None
    nsfw_detected: bool | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    client_ref: str | None = None
    callback_url: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Run:
        """Read a run object; absent, null or oddly typed fields become ``None`` or empty.

        Raises
        ------
        TypeError
            If ``data`` is not a mapping at all (a list or a string is not a run).
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"a run is a JSON object; got {type(data).__name__}")
        status = normalize_status(data.get("status_code", data.get("status")))
        input_ = _dict(data.get("input"))
        output = data.get("output")
        output_dict = dict(output) if _is_mapping(output) else None
        outputs = [dict(o) for o in _list(_get(output_dict, "outputs")) if _is_mapping(o)]
        failure_code, failure_message = _failure(data, output_dict, status)
        return cls(
            id=_str(data.get("id", data.get("run_id"))),
            status=status,
            model=_str(data.get("model", data.get("model_id"))),
            input=input_,
            image_url=_str(input_.get("image_url")),
            output=output_dict,
            outputs=outputs,
            output_url=_output_url(outputs, output_dict),
            cost=_decimal(data.get("cost")),
            duration_ms=_duration_ms(data.get("duration_ms")),
            seed=_int(_get(output_dict, "seed")),
            timing=_dict(_get(output_dict, "timing")) or None,
            nsfw_detected=_bool(_get(output_dict, "nsfw_detected")),
            metadata=_dict(data.get("metadata")),
            client_ref=_str(data.get("client_ref")),
            callback_url=_str(data.get("callback_url")),
            created_at=_datetime(data.get("created_at")),
            started_at=_datetime(data.get("started_at")),
            completed_at=_datetime(data.get("completed_at", data.get("finished_at"))),
            failure_code=failure_code,
            failure_message=failure_message,
            raw=dict(data),
        )

    @property
    def is_terminal(self) -> bool:
        """True once the run can no longer change (succeeded, failed, canceled, partial)."""
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        """True for ``succeeded`` and ``partial_succeeded`` (which still carries outputs)."""
        return self.status in {"succeeded", "partial_succeeded"}

    def __hash__(self) -> int:
        # the dict fields cannot be hashed; equal runs always share these three
        return hash((self.id, self.status, self.completed_at))

    def __repr__(self) -> str:
        parts = [f"id={self.id!r}", f"status={self.status!r}"]
        if self.cost is not None:
            parts.append(f"cost={self.cost}")
        if self.output_url:
            parts.append(f"output_url={redact_url(self.output_url)!r}")
        if self.failure_code or self.failure_message:
            parts.append(f"failure={self.failure_code or self.failure_message!r}")
        return f"Run({', '.join(parts)})"

    def _repr_html_(self) -> str:
        """A small card for Jupyter: status, cost, duration, before/after thumbnails."""
        from skinfix_nb._run_html import run_card

        return run_card(self)


@dataclass(frozen=True)
class RunPage:
    """One page of ``GET /v1/runs``: ``items`` and the cursor of the ``next`` page (or None)."""

    items: list[Run]
    next: str | None = None

    @classmethod
    def from_json(cls, data: object) -> RunPage:
        """Read ``{items, next}`` (or ``next_pq``); a bare list is taken as the items."""
        if isinstance(data, list):
            return cls([Run.from_json(item) for item in data if _is_mapping(item)])
        body = _dict(data)
        items = [Run.from_json(item) for item in _list(body.get("items")) if _is_mapping(item)]
        return cls(items, _str(body.get("next", body.get("next_pq"))))

    def __iter__(self) -> Iterator[Run]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def _get(mapping: Mapping[str, Any] | None, key: str) -> Any:
    return mapping.get(key) if mapping is not None else None


def _is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    # a JSON object is a dict: the exact type check spares the slower ABC check
    return type(value) is dict or (value is not None and isinstance(value, Mapping))


def _dict(value: object) -> dict[str, Any]:
    return dict(value) if _is_mapping(value) else {}


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _str(value: object) -> str | None:
    if type(value) is str:
        return value or None
    if value is None or isinstance(value, bool | Mapping | list):
        return None
    text = str(value)
    return text or None


def _int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, float | str):
        return None
    try:
        return int(float(value))
    except (ValueError, OverflowError):
        return None


def _duration_ms(value: object) -> int | None:
    """A plausible duration in ms; junk (negative, non-finite, over a month) is unknown."""
    duration = _int(value)
    return duration if duration is not None and 0 <= duration <= MAX_DURATION_MS else None


def _bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _decimal(value: object) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _datetime(value: object) -> datetime | None:
    """ISO 8601 with ``Z`` or an offset and any number of fractional digits, or epoch seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _output_url(outputs: list[dict[str, Any]], output: dict[str, Any] | None) -> str | None:
    if outputs:
        url = _str(outputs[0].get("url"))
        if url:
            return url
    image_urls = _list(_get(output, "image_urls"))
    return _str(image_urls[0]) if image_urls else None


def _failure(
    data: Mapping[str, Any], output: dict[str, Any] | None, status: str
) -> tuple[str | None, str | None]:
    """``failure_code``/``failure_message``, else an ``error`` object, else a failed output."""
    code, message = _str(data.get("failure_code")), _str(data.get("failure_message"))
    if code or message:
        return code, message
    for candidate in (data.get("error"), output if status in FAILED_STATUSES else None):
        if _is_mapping(candidate):
            code, message = _str(candidate.get("code")), _str(candidate.get("message"))
            if code or message:
                return code, message
        elif isinstance(candidate, str) and candidate:
            return None, candidate
    return None, None
