"""``qa_frame``: the metrics and flags of every succeeded row of a results frame."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import pandas as pd

from skinfix_nb import labels as labels_module
from skinfix_nb.errors import RunflowError
from skinfix_nb.quality.flags import QAThresholds, flag_names, resolve_thresholds
from skinfix_nb.quality.metrics import DEFAULT_MAX_PIXELS, PairMetrics, pair_metrics

__all__ = [
    "DEFAULT_COLUMNS",
    "MEASURED_STATUSES",
    "METRIC_COLUMNS",
    "QA_COLUMNS",
    "qa_frame",
    "reflag",
]

DEFAULT_COLUMNS = ("image_url", "output_url")
"""The before and after columns of a results frame (what ``df.skinfix.submit`` returns)."""

MEASURED_STATUSES = frozenset({"succeeded", "partial_succeeded"})
"""Rows in these states have an output to measure; every other row gets NaN metrics."""

METRIC_COLUMNS = tuple(
    f"qa_{f.name}" for f in fields(PairMetrics) if f.name not in {"width", "height"}
)
"""One column per :class:`~skinfix_nb.quality.metrics.PairMetrics` figure."""

QA_COLUMNS = (*METRIC_COLUMNS, "qa_nsfw", "qa_flag", "qa_error")
"""Every column :func:`qa_frame` adds (besides the review labels)."""

_BOOLEAN_METRICS = {"qa_size_differs", "qa_face_found"}
_OBJECT_COLUMNS = {*_BOOLEAN_METRICS, "qa_nsfw", "qa_flag", "qa_error"}


@dataclass(frozen=True)
class _RowJob:
    position: int
    run_id: str | None
    before: Any
    after: Any
    nsfw: bool | None


def qa_frame(
    df: pd.DataFrame,
    *,
    client: Any = None,
    thresholds: QAThresholds | Mapping[str, float] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
    columns: tuple[str, str] = DEFAULT_COLUMNS,
    labels: labels_module.LabelsLike | Literal[False] = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """A copy of ``df`` with QA metrics, a ``qa_flag`` and the review labels of every row.

    Parameters
    ----------
    df : DataFrame
        A results frame with ``status`` and the before/after columns (``columns``). Rows not
        ``succeeded`` keep NaN metrics and no flag.
    client : SkinFix, optional
        Used to download images on its connection pool, to refresh an expired presigned
        output URL, to read ``nsfw_detected`` when the frame has no such column, and to find
        the input image of a run when the frame has no before column.
    thresholds : QAThresholds or dict, optional
        Overrides of the flag limits (see :class:`QAThresholds`).
    max_pixels : int
        Pixel budget of the downscaled copy the metrics use (default 1 MP).
    progress : bool
        Show a progress bar.
    columns : (str, str)
        Names of the before and after columns.
    labels : LabelStore, path, None or False
        Where review labels are read from (default ``labels.sqlite3`` in the toolkit's home);
        ``False`` leaves ``qa_label`` / ``qa_note`` out.
    workers : int, optional
        Pairs measured at once (downloads overlap, OpenCV releases the GIL); default
        ``min(4, cpu count)``.

    Returns
    -------
    DataFrame
        The same rows and index, plus :data:`QA_COLUMNS` (``qa_flag`` is a comma-separated
        list of :data:`~skinfix_nb.quality.flags.FLAGS` names, ``""`` for a clean pair,
        ``None`` for a row that was not measured) and ``qa_label`` / ``qa_note``.
    """
    limits = resolve_thresholds(thresholds)
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive pixel count, got {max_pixels!r}")
    jobs = _jobs(df, client=client, columns=columns)
    results: list[dict[str, Any]] = [_unmeasured() for _ in range(len(df))]
    fetcher = _fetcher(client)

    def measure(job: _RowJob) -> tuple[int, dict[str, Any]]:
        return job.position, _measure_row(job, fetcher, client, max_pixels, limits)

    count = workers if workers is not None else min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, count)) as pool:
        done: Iterable[tuple[int, dict[str, Any]]] = pool.map(measure, jobs)
        if progress and jobs:
            from tqdm.auto import tqdm

            done = tqdm(done, total=len(jobs), desc="QA", unit="pair")
        for position, row in done:
            results[position] = row
    out = df.copy()
    for column in QA_COLUMNS:
        values = [row[column] for row in results]
        # flags, errors and yes/no columns stay object so "not measured" is None on pandas 2 and 3
        dtype = object if column in _OBJECT_COLUMNS else float
        out[column] = pd.Series(values, index=out.index, dtype=dtype)
    if labels is not False and "run_id" in out.columns:
        out = labels_module.load(out, labels=labels)
    return out


def _jobs(df: pd.DataFrame, *, client: Any, columns: tuple[str, str]) -> list[_RowJob]:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"qa_frame needs a pandas DataFrame, got {type(df).__name__}")
    before_column, after_column = columns
    missing = [c for c in ("status", after_column) if c not in df.columns]
    if missing:
        raise ValueError(
            f"the frame has no {' or '.join(map(repr, missing))} column: pass the frame "
            "df.skinfix.submit(...) returned, or name the columns with columns=(before, after)"
        )
    has_before = before_column in df.columns
    if not has_before and (client is None or "run_id" not in df.columns):
        raise ValueError(
            f"the frame has no {before_column!r} column with the input images: name it with "
            "columns=(before, after), or pass client= so each run's input can be read"
        )
    nsfw_column = df["nsfw_detected"] if "nsfw_detected" in df.columns else None
    run_ids = df["run_id"] if "run_id" in df.columns else None
    jobs = []
    for position, (status, after) in enumerate(zip(df["status"], df[after_column], strict=True)):
        if status not in MEASURED_STATUSES:
            continue
        run_id = run_ids.iloc[position] if run_ids is not None else None
        jobs.append(
            _RowJob(
                position=position,
                run_id=run_id if isinstance(run_id, str) and run_id else None,
                before=df[before_column].iloc[position] if has_before else None,
                after=after,
                nsfw=_bool_or_none(nsfw_column.iloc[position]) if nsfw_column is not None else None,
            )
        )
    return jobs


def _measure_row(
    job: _RowJob,
    fetcher: Any,
    client: Any,
    max_pixels: int,
    limits: QAThresholds,
) -> dict[str, Any]:
    row = _unmeasured()
    nsfw = job.nsfw
    before = job.before
    try:
        if client is not None and job.run_id is not None and (nsfw is None or before is None):
            run = client.get(job.run_id)
            nsfw = run.nsfw_detected if nsfw is None else nsfw
            before = run.image_url if before is None else before
        metrics = pair_metrics(
            _readable(fetcher, before, "input", _refresher(client, job.run_id, "image_url")),
            _readable(fetcher, job.after, "output", _refresher(client, job.run_id, "output_url")),
            max_pixels=max_pixels,
        )
    except (RunflowError, OSError, ValueError) as exc:
        row["qa_error"] = str(exc)
        row["qa_nsfw"] = nsfw
        row["qa_flag"] = ",".join(flag_names({"fetch_failed": True, "nsfw": nsfw}, limits))
        return row
    values = metrics.as_dict()
    for column in METRIC_COLUMNS:
        row[column] = values[column.removeprefix("qa_")]
    row["qa_nsfw"] = nsfw
    row["qa_flag"] = ",".join(flag_names({**values, "nsfw": nsfw}, limits))
    return row


def _readable(
    fetcher: Any, source: Any, what: str, refresh: Callable[[], str | None] | None
) -> Any:
    if source is None or (isinstance(source, float) and math.isnan(source)) or source == "":
        raise ValueError(f"the row has no {what} image")
    return fetcher.read(source, refresh=refresh)


def _refresher(client: Any, run_id: str | None, field: str) -> Callable[[], str | None] | None:
    """Reads the run again for a fresh presigned URL after a 403 (``field`` of the run)."""
    if client is None or run_id is None:
        return None

    def fresh_url() -> str | None:
        url = getattr(client.get(run_id), field, None)
        return url if isinstance(url, str) else None

    return fresh_url


def _fetcher(client: Any) -> Any:
    from skinfix_nb.display.fetch import default_fetcher

    return default_fetcher(client)


def _unmeasured() -> dict[str, Any]:
    row: dict[str, Any] = {column: math.nan for column in METRIC_COLUMNS}
    for column in _BOOLEAN_METRICS:
        row[column] = None
    row.update(qa_nsfw=None, qa_flag=None, qa_error=None)
    return row


def _bool_or_none(value: object) -> bool | None:
    return bool(value) if isinstance(value, bool | np.bool_) else None


def reflag(
    df: pd.DataFrame, *, thresholds: QAThresholds | Mapping[str, float] | None = None
) -> pd.DataFrame:
    """A copy of a QA frame with ``qa_flag`` worked out again from its metric columns.

    To try other thresholds without fetching or measuring anything again. Rows that were
    not measured keep no flag; rows whose images could not be fetched keep ``fetch_failed``.
    """
    if "qa_flag" not in df.columns:
        raise ValueError("the frame has no qa_flag column: run quality.qa_frame(df) first")
    limits = resolve_thresholds(thresholds)
    present = [c for c in (*METRIC_COLUMNS, "qa_nsfw", "qa_error") if c in df.columns]
    flags: list[str | None] = []
    for position, old in enumerate(df["qa_flag"]):
        if not isinstance(old, str):
            flags.append(None)
            continue
        row = {c.removeprefix("qa_"): df[c].iloc[position] for c in present}
        error = row.pop("error", None)
        row["fetch_failed"] = isinstance(error, str) and bool(error)
        row["nsfw"] = _bool_or_none(row.get("nsfw"))
        for name in ("size_differs", "face_found"):
            row[name] = _bool_or_none(row.get(name))
        flags.append(",".join(flag_names(row, limits)))
    out = df.copy()
    out["qa_flag"] = pd.Series(flags, index=out.index, dtype=object)
    return out
