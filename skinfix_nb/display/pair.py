"""What a comparison shows: two images and the facts of the run that joined them.

:func:`make_pair` accepts every input the display helpers do (URLs, paths, bytes, PIL
images, a :class:`~skinfix_nb.models.Run` or a results-DataFrame row) and turns it into one
:class:`Pair`, so the HTML view, the interactive view and the gallery read the same thing.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import pandas as pd
from PIL import Image

from skinfix_nb.display.fetch import Refresh, Source
from skinfix_nb.models import Run

__all__ = ["DEFAULT_COLUMNS", "Pair", "make_pair"]

DEFAULT_COLUMNS = ("image_url", "output_url")
"""The before and after columns of a results frame (``df.skinfix.submit`` output)."""


@dataclass(frozen=True)
class Pair:
    """A before image, an optional after image, and what is known about the run."""

    before: Source | None
    after: Source | None = None
    status: str | None = None
    cost: Decimal | None = None
    duration_ms: int | None = None
    run_id: str | None = None
    error: str | None = None
    refresh_before: Refresh | None = None
    refresh_after: Refresh | None = None


def make_pair(
    before: Any,
    after: Any = None,
    *,
    client: Any = None,
    columns: tuple[str, str] = DEFAULT_COLUMNS,
) -> Pair:
    """Read ``before``/``after`` as given to :func:`skinfix_nb.compare`.

    A ``Run`` or a DataFrame row carries both images, so ``after`` must then be None. With
    a ``client`` and a run id, an expired presigned URL is refreshed by reading the run again.

    Raises
    ------
    TypeError
        For inputs that are neither images nor runs nor rows.
    ValueError
        If ``after`` is given alongside a run or a row.
    """
    if isinstance(before, Run | pd.Series):
        if after is not None:
            raise ValueError(
                "a Run or a DataFrame row already holds both images: call compare(run) "
                "without a second argument"
            )
        return (
            _from_run(before, client)
            if isinstance(before, Run)
            else _from_row(before, client, columns)
        )
    return Pair(before=_check_source(before, "before"), after=_check_source(after, "after"))


def _from_run(run: Run, client: Any) -> Pair:
    error = " ".join(p for p in (run.failure_code, run.failure_message) if p) or None
    return Pair(
        before=run.image_url,
        after=run.output_url,
        status=run.status,
        cost=run.cost,
        duration_ms=run.duration_ms,
        run_id=run.id,
        error=error,
        refresh_before=_refresher(client, run.id, "image_url"),
        refresh_after=_refresher(client, run.id, "output_url"),
    )


def _from_row(row: pd.Series, client: Any, columns: tuple[str, str]) -> Pair:
    before_column, after_column = columns
    if before_column not in row.index:
        raise ValueError(
            f"the row has no {before_column!r} column (it has {list(row.index)}); "
            f"pass columns=(before_column, after_column)"
        )
    run_id = _text(row.get("run_id", row.get("id")))
    status = _text(row.get("status"))
    return Pair(
        before=_text(row.get(before_column)),
        after=_text(row.get(after_column)),
        status=status,
        cost=_decimal(row.get("cost")),
        duration_ms=_int(row.get("duration_ms")),
        run_id=run_id,
        error=_text(row.get("error")),
        refresh_before=_refresher(client, run_id, "image_url"),
        refresh_after=_refresher(client, run_id, "output_url"),
    )


def _refresher(client: Any, run_id: str | None, field: str) -> Refresh | None:
    if client is None or not run_id:
        return None

    def refresh() -> str | None:
        url = getattr(client.get(run_id), field, None)
        return url if isinstance(url, str) else None

    return refresh


def _check_source(value: Any, which: str) -> Source | None:
    if value is None or isinstance(value, str | bytes | bytearray | os.PathLike | Image.Image):
        return value
    raise TypeError(
        f"cannot show {type(value).__name__} as the {which} image: pass a URL, a path, bytes, "
        "a PIL image, a Run or a DataFrame row"
    )


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _text(value: Any) -> str | None:
    if _missing(value) or value is pd.NaT:
        return None
    text = str(value).strip()
    return text or None


def _decimal(value: Any) -> Decimal | None:
    if _missing(value):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _int(value: Any) -> int | None:
    if _missing(value):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
