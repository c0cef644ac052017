"""``sf.compare``: before and after side by side, as light self-contained HTML.

The default view is an object with ``_repr_html_``: both images embedded as small WebP (or
JPEG) thumbnails, with labels, pixel sizes, status and cost. It needs no kernel and no
JavaScript, so a saved notebook shows it on GitHub or nbviewer long after the presigned
URLs expired, and the whole output stays under ``max_bytes`` (60 KB by default).
``interactive=True`` returns the widget view of :mod:`skinfix_nb.display.interactive`.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from PIL import Image

from skinfix_nb.display.fetch import Source, Thumbnail, default_fetcher
from skinfix_nb.display.markup import (
    FONT,
    format_cost,
    format_duration,
    placeholder,
    status_badge,
)
from skinfix_nb.display.pair import DEFAULT_COLUMNS, Pair, make_pair
from skinfix_nb.errors import redact_url
from skinfix_nb.images import encode_image

if TYPE_CHECKING:
    from skinfix_nb.display.interactive import InteractiveComparison

__all__ = ["MAX_OUTPUT_BYTES", "Comparison", "compare"]

MAX_OUTPUT_BYTES = 60_000
"""Default ceiling for one comparison's saved output (HTML plus plain-text fallback)."""

_QUALITIES = (80, 70, 60, 50, 40)
# what a saved notebook adds around an output: JSON escaping of the markup, keys, metadata
_NOTEBOOK_OVERHEAD = 1024
_MIN_SIDE = 96


@overload
def compare(
    before: Any,
    after: Any = ...,
    *,
    interactive: Literal[False] = ...,
    max_side: int = ...,
    labels: tuple[str, str] = ...,
    client: Any = ...,
    columns: tuple[str, str] = ...,
    max_bytes: int = ...,
) -> Comparison: ...


@overload
def compare(
    before: Any,
    after: Any = ...,
    *,
    interactive: Literal[True],
    max_side: int = ...,
    labels: tuple[str, str] = ...,
    client: Any = ...,
    columns: tuple[str, str] = ...,
    max_bytes: int = ...,
) -> InteractiveComparison: ...


def compare(
    before: Any,
    after: Any = None,
    *,
    interactive: bool = False,
    max_side: int = 512,
    labels: tuple[str, str] = ("Before", "After"),
    client: Any = None,
    columns: tuple[str, str] = DEFAULT_COLUMNS,
    max_bytes: int = MAX_OUTPUT_BYTES,
) -> Comparison | InteractiveComparison:
    """Show two images side by side: the original and the retouched one.

    Parameters
    ----------
    before : URL, path, bytes, PIL.Image, Run or DataFrame row
        The original image; or a ``Run`` / a results row, which carry both images, the
        status and the cost (``after`` must then be omitted).
    after : URL, path, bytes or PIL.Image, optional
        The retouched image.
    interactive : bool
        False (default): light, static HTML that renders anywhere. True: an ipywidgets
        view with wipe/blend slider, difference heatmap, 1:1 zoom and a full-size save.
    max_side : int
        Longest side of the embedded thumbnails (static view) or of the working view
        (interactive), in pixels.
    labels : (str, str)
        Captions of the two images.
    client : SkinFix, optional
        Reused for downloads (its connection pool), and to read a run again when a
        presigned URL has expired.
    columns : (str, str)
        Before and after column names when ``before`` is a DataFrame row.
    max_bytes : int
        Size ceiling of the static output; thumbnails are re-encoded smaller to fit.

    Returns
    -------
    Comparison or InteractiveComparison
    """
    pair = make_pair(before, after, client=client, columns=columns)
    if interactive:
        from skinfix_nb.display.interactive import InteractiveComparison

        return InteractiveComparison(pair, client=client, view_side=max_side, labels=labels)
    return Comparison(pair, client=client, max_side=max_side, labels=labels, max_bytes=max_bytes)


class Comparison:
    """A static before/after view; Jupyter shows it through ``_repr_html_``.

    The thumbnails are fetched and encoded when the object is built, so a download or
    decoding problem raises right there with a clear message.
    """

    def __init__(
        self,
        pair: Pair,
        *,
        client: Any = None,
        max_side: int = 512,
        labels: tuple[str, str] = ("Before", "After"),
        max_bytes: int = MAX_OUTPUT_BYTES,
    ) -> None:
        if max_side < _MIN_SIDE:
            raise ValueError(f"max_side must be at least {_MIN_SIDE} pixels, got {max_side}")
        self.pair = pair
        self.labels = labels
        self.max_side = max_side
        fetcher = default_fetcher(client)
        self.before = _thumb(fetcher, pair.before, max_side, pair.refresh_before)
        self.after = _thumb(fetcher, pair.after, max_side, pair.refresh_after)
        self._html = self._fit(max_bytes)

    def _repr_html_(self) -> str:
        return self._html

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        return {"text/html": self._html, "text/plain": repr(self)}

    def __repr__(self) -> str:
        facts = [f"{label}: {_describe(source, thumb)}" for label, source, thumb in self._sides()]
        if self.pair.status:
            facts.append(f"status: {self.pair.status}")
        if self.pair.cost is not None:
            facts.append(f"cost: {format_cost(self.pair.cost)}")
        return f"Comparison({'; '.join(facts)})"

    def _sides(self) -> list[tuple[str, Source | None, Thumbnail | None]]:
        return [
            (self.labels[0], self.pair.before, self.before),
            (self.labels[1], self.pair.after, self.after),
        ]

    def _fit(self, max_bytes: int) -> str:
        """Re-encode the thumbnails smaller until HTML plus plain text fit in ``max_bytes``."""
        shown = [thumb for thumb in (self.before, self.after) if thumb is not None]
        frame = len(self._render([None] * len(shown)).encode()) + len(repr(self).encode())
        room = max_bytes - frame - _NOTEBOOK_OVERHEAD
        if shown and room <= 0:
            raise ValueError(f"max_bytes={max_bytes} leaves no room for the images")
        # base64 grows bytes by 4/3; each image gets an equal share of what is left
        per_image = (room * 3 // 4) // max(len(shown), 1)
        uris = [_fit_data_uri(thumb, per_image) for thumb in shown]
        return self._render(uris)

    def _render(self, uris: Sequence[str | None]) -> str:
        remaining = iter(uris)
        cells = []
        for label, source, thumb in self._sides():
            if thumb is None:
                body = placeholder(self._missing_text(source), side=min(self.max_side, 320))
                size = ""
            else:
                uri = next(remaining) or ""
                body = (
                    f'<img src="{uri}" alt="{html.escape(label)}" '
                    f'style="max-width:100%;height:auto;display:block;margin:auto">'
                )
                size = f" · {thumb.width}×{thumb.height} px"
            cells.append(
                '<td style="vertical-align:top;text-align:center;padding:4px">'
                f"{body}<div><b>{html.escape(label)}</b>{size}</div></td>"
            )
        return (
            f'<div class="skinfix-compare" style="{FONT}">'
            f"{self._header()}"
            f'<table style="border-collapse:collapse;max-width:100%"><tr>{"".join(cells)}'
            "</tr></table></div>"
        )

    def _header(self) -> str:
        pair = self.pair
        facts = [
            status_badge(pair.status),
            html.escape(format_cost(pair.cost)),
            html.escape(format_duration(pair.duration_ms)),
            f"run <code>{html.escape(pair.run_id)}</code>" if pair.run_id else "",
        ]
        line = " · ".join(fact for fact in facts if fact)
        if pair.error:
            line += f' <span style="color:#cf222e">{html.escape(pair.error)}</span>'
        return f'<div style="margin-bottom:4px">{line}</div>' if line else ""

    def _missing_text(self, source: Source | None) -> str:
        if source is not None:
            return "no image"
        if self.pair.status and self.pair.status not in ("succeeded", "partial_succeeded"):
            return f"no output ({self.pair.status})"
        return "no image"


def _thumb(fetcher: Any, source: Source | None, max_side: int, refresh: Any) -> Thumbnail | None:
    if source is None:
        return None
    thumb: Thumbnail = fetcher.thumbnail(source, max_side=max_side, refresh=refresh)
    return thumb


def _fit_data_uri(thumb: Thumbnail, budget: int) -> str:
    """The thumbnail as a data URI of at most ``budget`` raw bytes (lower quality, then size)."""
    if len(thumb.data) <= budget:
        return thumb.data_uri
    image: Image.Image = Image.open(io.BytesIO(thumb.data))
    image.load()
    fmt = "WEBP" if thumb.mime == "image/webp" else "JPEG"
    while True:
        for quality in _QUALITIES:
            data = encode_image(image, fmt, quality=quality)
            if len(data) <= budget:
                return f"data:{thumb.mime};base64,{base64.b64encode(data).decode('ascii')}"
        if max(image.size) * 4 // 5 < _MIN_SIDE:
            raise ValueError(
                f"cannot fit the thumbnails in the size limit even at {max(image.size)} px: "
                "raise max_bytes"
            )
        image = image.resize(
            (max(1, image.width * 4 // 5), max(1, image.height * 4 // 5)),
            Image.Resampling.LANCZOS,
        )


def _describe(source: Source | None, thumb: Thumbnail | None) -> str:
    if source is None:
        return "none"
    size = f" ({thumb.width}x{thumb.height})" if thumb is not None else ""
    if isinstance(source, str):
        name = "data URI" if source.startswith("data:") else redact_url(source)
    elif isinstance(source, bytes | bytearray):
        name = f"{len(source)} bytes"
    elif isinstance(source, Image.Image):
        name = "PIL image"
    else:
        name = str(source)
    return name + size
