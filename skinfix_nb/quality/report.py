"""``report(df, path)``: one self-contained HTML file a reviewer can mail to a colleague.

Everything is inside the file: thumbnails as ``data:`` URIs, plots as inline SVG, styles
inline. No script, no font, no image is loaded from anywhere, so the page looks the same in
a mail attachment, offline, and years later when the presigned image URLs have expired.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from PIL import Image

from skinfix_nb import labels as labels_module
from skinfix_nb.images import thumbnail, to_data_uri
from skinfix_nb.quality.flags import FLAGS, QAThresholds, resolve_thresholds
from skinfix_nb.quality.frame import DEFAULT_COLUMNS, qa_frame, reflag
from skinfix_nb.quality.metrics import DEFAULT_MAX_PIXELS
from skinfix_nb.quality.plots import distribution_svg, worst_rows

__all__ = ["WorstPairs", "report", "worst_pairs"]

_FIGURES = (
    ("qa_ssim", "SSIM", "{:.3f}"),
    ("qa_psnr", "PSNR dB", "{:.1f}"),
    ("qa_skin_change", "skin Δ", "{:.2f}"),
    ("qa_background_change", "background Δ", "{:.2f}"),
    ("qa_background_altered_pct", "background altered %", "{:.1f}"),
    ("qa_feature_sharpness_ratio", "eyes/lips sharpness", "{:.2f}"),
    ("qa_sharpness_ratio", "sharpness", "{:.2f}"),
    ("qa_delta_e", "ΔE76", "{:.2f}"),
)
_VERDICT_COLOUR = {"accepted": "#1a7f37", "rejected": "#cf222e", "flagged": "#9a6700"}
_HEAT = np.stack(
    [
        np.interp(np.arange(256), [0, 85, 170, 255], channel)
        for channel in ([0, 200, 255, 255], [0, 30, 200, 255], [0, 30, 0, 220])
    ],
    axis=1,
).astype(np.uint8)
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;font-size:14px;
color:#24292f;margin:24px auto;max-width:1180px;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:32px;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #d0d7de;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f6f8fa}.num{text-align:right}
.muted{color:#57606a}.chip{background:#fff1e5;color:#bc4c00;border-radius:9px;padding:1px 7px;
margin:0 4px 2px 0;display:inline-block;white-space:nowrap}
.pair{display:flex;gap:8px;flex-wrap:wrap;margin:8px 0 20px}.pair figure{margin:0}
.pair figcaption{font-size:12px;color:#57606a}img{display:block;max-width:100%}
.missing{background:#f0f0f0;color:#57606a;display:flex;align-items:center;justify-content:center;
text-align:center;font-size:12px;padding:6px;box-sizing:border-box}
"""

_SCOPED_CSS = " ".join(
    f".skinfix-worst {rule}"
    for rule in (
        ".muted{color:#57606a}",
        ".chip{background:#fff1e5;color:#bc4c00;border-radius:9px;padding:1px 7px;margin-right:4px}",
        ".pair{display:flex;gap:8px;flex-wrap:wrap;margin:8px 0 20px}",
        ".pair figure{margin:0}",
        ".pair figcaption{font-size:12px;color:#57606a}",
        ".missing{background:#f0f0f0;color:#57606a;padding:6px;font-size:12px}",
    )
)


def report(
    df: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    title: str = "Skin Fix QA report",
    client: Any = None,
    thresholds: QAThresholds | Mapping[str, float] | None = None,
    labels: labels_module.LabelsLike | Literal[False] = None,
    columns: tuple[str, str] = DEFAULT_COLUMNS,
    worst: int = 8,
    thumb_side: int = 160,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = False,
) -> Path:
    """Write a self-contained HTML QA report of ``df`` to ``path`` and return the path.

    Parameters
    ----------
    df : DataFrame
        A results frame; measured first with :func:`qa_frame` when it has no ``qa_flag``
        column. A frame that was measured already is re-flagged when ``thresholds`` is given.
    path : str or path
        The HTML file to write (its folder is created).
    title : str
        Heading and page title.
    client, columns, max_pixels, progress
        As for :func:`qa_frame`; ``client`` also fetches the thumbnails.
    thresholds : QAThresholds or dict, optional
        Flag limits (shown in the report).
    labels : LabelStore, path, None or False
        Review labels to include (default the toolkit's ``labels.sqlite3``); ``False`` for none.
    worst : int
        How many of the worst pairs to show as large before / after / difference images.
    thumb_side : int
        Longest side of the thumbnails in the flagged-rows table.
    """
    limits = resolve_thresholds(thresholds)
    if "qa_flag" not in df.columns:
        df = qa_frame(
            df,
            client=client,
            thresholds=limits,
            max_pixels=max_pixels,
            progress=progress,
            columns=columns,
            labels=labels,
        )
    else:
        if thresholds is not None:
            df = reflag(df, thresholds=limits)
        if labels is not False and "run_id" in df.columns:
            df = labels_module.load(df, labels=labels)
    from skinfix_nb.display.fetch import default_fetcher
    from skinfix_nb.display.pair import make_pair

    fetcher = default_fetcher(client)

    def pair_of(row: pd.Series) -> Any:
        return make_pair(row, client=client, columns=columns)

    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="muted">{len(df)} rows · written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC '
        "by skinfix_nb</p>",
        _summary(df),
        "<h2>Distributions</h2>",
        '<p class="muted">Grey: pairs without a flag; red: flagged pairs; dashed line: the '
        "flag limit. Hover a dot for its run id.</p>",
        distribution_svg(df, thresholds=limits),
        _worst(df, worst, fetcher, pair_of),
        _flagged_table(df, fetcher, pair_of, thumb_side),
        _labels_table(df),
        _thresholds_table(limits),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target


class WorstPairs:
    """The worst pairs of a QA frame as before / after / difference images, for a notebook.

    The same view as the report's "worst pairs" section, embedded (``data:`` URIs), so it
    stays visible in a saved notebook after presigned URLs expire.
    """

    def __init__(
        self,
        df: pd.DataFrame,
        *,
        n: int = 6,
        client: Any = None,
        columns: tuple[str, str] = DEFAULT_COLUMNS,
    ) -> None:
        worst_rows(df, n)  # fails early, with its message, on a frame without qa_flag
        self._df, self._n, self._client, self._columns = df, n, client, columns

    def __repr__(self) -> str:
        return f"<WorstPairs: {self._n} of {len(self._df)} rows>"

    def _repr_html_(self) -> str:
        from skinfix_nb.display.fetch import default_fetcher
        from skinfix_nb.display.pair import make_pair

        def pair_of(row: pd.Series) -> Any:
            return make_pair(row, client=self._client, columns=self._columns)

        body = _worst(self._df, self._n, default_fetcher(self._client), pair_of)
        return f'<div class="skinfix-worst"><style>{_SCOPED_CSS}</style>{body or "No measured pairs."}</div>'


def worst_pairs(
    df: pd.DataFrame,
    n: int = 6,
    *,
    client: Any = None,
    columns: tuple[str, str] = DEFAULT_COLUMNS,
) -> WorstPairs:
    """Show the ``n`` worst pairs of a QA frame (most flags, then lowest SSIM) in a notebook."""
    return WorstPairs(df, n=n, client=client, columns=columns)


def _summary(df: pd.DataFrame) -> str:
    measured = df[df["qa_flag"].notna()]
    flagged = measured[measured["qa_flag"].astype(str) != ""]
    counts: list[tuple[str, object]] = [("rows", len(df)), ("measured (succeeded)", len(measured))]
    counts += [("clean", len(measured) - len(flagged)), ("flagged", len(flagged))]
    if "status" in df.columns:
        counts += [(f"status {k}", int(v)) for k, v in df["status"].value_counts().items()]
    if "cost" in df.columns:
        cost = pd.to_numeric(df["cost"], errors="coerce").sum()
        counts.append(("spent (USD)", f"{cost:.2f}"))
    left = _table(["", "count"], [[html.escape(k), _num(v)] for k, v in counts])
    per_flag = _flag_counts(measured["qa_flag"])
    flag_rows = [
        [f'<span class="chip">{name}</span>', _num(per_flag.get(name, 0)), html.escape(meaning)]
        for name, meaning in FLAGS.items()
    ]
    middle = _table(["flag", "pairs", "meaning"], flag_rows)
    medians = []
    for column, label, fmt in _FIGURES:
        if column in measured.columns:
            values = pd.to_numeric(measured[column], errors="coerce")
            values = values[np.isfinite(values)]
            if len(values):
                medians.append([html.escape(label), _num(fmt.format(float(values.median())))])
    right = _table(["metric", "median"], medians) if medians else ""
    return (
        "<h2>Summary</h2>"
        f'<div style="display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start">{left}{middle}{right}</div>'
    )


def _worst(df: pd.DataFrame, n: int, fetcher: Any, pair_of: Any) -> str:
    rows = worst_rows(df, n)
    if rows.empty or n <= 0:
        return ""
    blocks = [
        f"<h2>The {len(rows)} worst pairs</h2>",
        '<p class="muted">Most flags first, then lowest SSIM. The difference image shows '
        "|after − before| amplified eight times: dark is unchanged, bright changed.</p>",
    ]
    for _, row in rows.iterrows():
        pair = pair_of(row)
        pictures = _triple(fetcher, pair)
        blocks.append(
            f"<h3>{_run_label(row)} {_chips(row.get('qa_flag'))}</h3>"
            f'<p class="muted">{html.escape(_figures(row))}{_verdict(row)}</p>'
            f'<div class="pair">{pictures}</div>'
        )
    return "".join(blocks)


def _triple(fetcher: Any, pair: Any) -> str:
    side = 320
    try:
        before = thumbnail(fetcher.load(pair.before, refresh=pair.refresh_before), side)
        after = thumbnail(fetcher.load(pair.after, refresh=pair.refresh_after), side)
    except (OSError, ValueError, TypeError) as exc:
        return _missing(f"images unavailable: {exc}", side)
    if after.size != before.size:
        after = after.resize(before.size, Image.Resampling.LANCZOS)
    diff = np.abs(np.asarray(after, np.int16) - np.asarray(before, np.int16)).mean(axis=2)
    heat = Image.fromarray(_HEAT[np.clip(diff * 8, 0, 255).astype(np.uint8)])
    return "".join(
        f'<figure><img src="{to_data_uri(image, max_side=side)}" alt="{name}" '
        f'width="{image.width}" height="{image.height}"><figcaption>{name}</figcaption></figure>'
        for name, image in (("before", before), ("after", after), ("difference ×8", heat))
    )


def _flagged_table(df: pd.DataFrame, fetcher: Any, pair_of: Any, side: int) -> str:
    flagged = df[df["qa_flag"].notna() & (df["qa_flag"].astype(str) != "")]
    if flagged.empty:
        return "<h2>Flagged pairs</h2><p>No pair was flagged.</p>"
    rows = []
    for _, row in flagged.iterrows():
        pair = pair_of(row)
        thumbs = "".join(
            _thumb(fetcher, source, refresh, side, name)
            for name, source, refresh in (
                ("before", pair.before, pair.refresh_before),
                ("after", pair.after, pair.refresh_after),
            )
        )
        error = row.get("qa_error")
        rows.append(
            [
                f'<div style="display:flex;gap:4px">{thumbs}</div>',
                _run_label(row),
                _chips(row.get("qa_flag"))
                + (f'<div class="muted">{html.escape(str(error))}</div>' if _text(error) else ""),
                html.escape(_figures(row)),
                _verdict(row).removeprefix(" · "),
            ]
        )
    return f"<h2>Flagged pairs ({len(flagged)})</h2>" + _table(
        ["before / after", "run", "flags", "figures", "review"], rows
    )


def _labels_table(df: pd.DataFrame) -> str:
    if "qa_label" not in df.columns:
        return ""
    notes = df["qa_note"] if "qa_note" in df.columns else pd.Series("", index=df.index)
    reviewed = df[df["qa_label"].notna() | notes.map(lambda note: bool(_text(note)))]
    counts = df["qa_label"].value_counts()
    summary = ", ".join(f"{int(counts.get(v, 0))} {v}" for v in labels_module.LABELS)
    pending = int(df["qa_label"].isna().sum())
    head = f"<h2>Review labels</h2><p>{html.escape(summary)}, {pending} not reviewed.</p>"
    if reviewed.empty:
        return head
    rows = [
        [_run_label(row), _verdict(row).removeprefix(" · "), _chips(row.get("qa_flag"))]
        for _, row in reviewed.iterrows()
    ]
    return head + _table(["run", "review", "flags"], rows)


def _thresholds_table(limits: QAThresholds) -> str:
    rows = [[f"<code>{f.name}</code>", _num(getattr(limits, f.name))] for f in fields(limits)]
    return (
        "<h2>Flag limits</h2>"
        '<p class="muted">Metrics are computed on a copy of at most 1 MP; changes are in 0-255 '
        "levels. Override with <code>QAThresholds(...)</code>.</p>"
        + _table(["limit", "value"], rows)
    )


def _thumb(fetcher: Any, source: Any, refresh: Any, side: int, name: str) -> str:
    if source is None:
        return _missing(f"no {name} image", side)
    try:
        thumb = fetcher.thumbnail(source, max_side=side, refresh=refresh)
    except (OSError, ValueError, TypeError) as exc:
        return _missing(f"{name} unavailable: {exc}", side)
    scale = side / max(thumb.width, thumb.height, 1)
    width, height = round(thumb.width * min(scale, 1)), round(thumb.height * min(scale, 1))
    return (
        f'<img src="{thumb.data_uri}" alt="{name}" title="{name}" width="{width}" '
        f'height="{height}">'
    )


def _missing(text: str, side: int) -> str:
    return (
        f'<div class="missing" style="width:{side}px;height:{side * 3 // 4}px">'
        f"{html.escape(text[:160])}</div>"
    )


def _table(head: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    header = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _flag_counts(flags: pd.Series) -> dict[str, int]:
    counts: dict[str, int] = {}
    for text in flags:
        for name in str(text).split(","):
            if name:
                counts[name] = counts.get(name, 0) + 1
    return counts


def _chips(text: Any) -> str:
    if not _text(text):
        return ""
    return "".join(
        f'<span class="chip" title="{html.escape(FLAGS.get(n, n))}">{html.escape(n)}</span>'
        for n in str(text).split(",")
    )


def _figures(row: pd.Series) -> str:
    parts = []
    for column, label, fmt in _FIGURES:
        value = row.get(column)
        if isinstance(value, int | float | np.floating) and not math.isnan(float(value)):
            parts.append(f"{label} {fmt.format(float(value))}")
    return " · ".join(parts)


def _verdict(row: pd.Series) -> str:
    verdict = _text(row.get("qa_label"))
    note = _text(row.get("qa_note"))
    out = ""
    if verdict:
        colour = _VERDICT_COLOUR.get(verdict, "#24292f")
        out += f' · <b style="color:{colour}">{html.escape(verdict)}</b>'
    if note:
        out += f" · “{html.escape(note)}”"
    return out


def _run_label(row: pd.Series) -> str:
    run_id = _text(row.get("run_id"))
    return f"<code>{html.escape(run_id)}</code>" if run_id else html.escape(str(row.name))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _num(value: object) -> str:
    return f'<span class="num">{html.escape(str(value))}</span>'
