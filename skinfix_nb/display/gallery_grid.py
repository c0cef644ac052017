"""``sf.gallery(df)`` / ``out.skinfix.gallery()``: a results frame as pages of before/after tiles.

Each tile shows both thumbnails, a status badge, the cost and the error text of its row.
A status filter and Previous/Next buttons page through the frame; each tile's Compare
button (or :meth:`Gallery.compare` with a row label) opens the interactive comparison below
the grid. Thumbnails come from the on-disk cache after the first view, so paging is cheap.
"""

from __future__ import annotations

import html
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ipywidgets as widgets
import pandas as pd

from skinfix_nb.display.fetch import ImageFetcher, Refresh, Source, default_fetcher
from skinfix_nb.display.interactive import InteractiveComparison
from skinfix_nb.display.markup import FONT, format_cost, placeholder, status_badge
from skinfix_nb.display.pair import DEFAULT_COLUMNS, Pair, make_pair
from skinfix_nb.errors import RunflowError

__all__ = ["Gallery", "gallery"]

_FETCH_THREADS = 8
_ERROR_CHARS = 200
_ALL = ""  # the filter's "all statuses" value (ipywidgets 8 reads None as "nothing selected")


def gallery(
    df: pd.DataFrame,
    *,
    page_size: int = 12,
    status: str | None = None,
    client: Any = None,
    columns: tuple[str, str] = DEFAULT_COLUMNS,
    thumb_side: int = 160,
    per_row: int = 4,
) -> Gallery:
    """Page through a results frame as before/after tiles.

    Parameters
    ----------
    df : DataFrame
        Rows with a before column and an after column (``image_url`` / ``output_url`` by
        default), and optionally ``status``, ``cost``, ``error``, ``run_id``.
    page_size : int
        Tiles per page.
    status : str, optional
        Show only rows with this status at first (the filter can be changed in the view).
    client : SkinFix, optional
        Reused for downloads, and to refresh expired presigned URLs through ``run_id``.
    columns : (str, str)
        The before and after column names.
    thumb_side : int
        Longest side of each tile image, in pixels.
    per_row : int
        Tiles per grid row.
    """
    return Gallery(
        df,
        page_size=page_size,
        status=status,
        client=client,
        columns=columns,
        thumb_side=thumb_side,
        per_row=per_row,
    )


class Gallery(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no types
    """The widget :func:`gallery` returns; :meth:`compare` shows one row interactively."""

    def __init__(
        self,
        df: pd.DataFrame,
        *,
        page_size: int = 12,
        status: str | None = None,
        client: Any = None,
        columns: tuple[str, str] = DEFAULT_COLUMNS,
        thumb_side: int = 160,
        per_row: int = 4,
    ) -> None:
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"gallery() takes a DataFrame, got {type(df).__name__}")
        if columns[0] not in df.columns:
            raise ValueError(
                f"the frame has no {columns[0]!r} column (it has {list(df.columns)}); "
                "pass columns=(before_column, after_column)"
            )
        if page_size < 1 or per_row < 1:
            raise ValueError(
                f"page_size and per_row must be at least 1, got {page_size}, {per_row}"
            )
        self.frame = df
        self.page_size = page_size
        self.columns = columns
        self.thumb_side = thumb_side
        self.client = client
        self.page = 0
        self._fetcher: ImageFetcher = default_fetcher(client)

        if status is not None and status not in self._statuses():
            raise ValueError(f"no row has status {status!r}; statuses present: {self._statuses()}")
        self.status_filter = widgets.Dropdown(
            options=self._filter_options(), value=status or _ALL, description="Status"
        )
        self.previous_button = widgets.Button(description="Previous", icon="arrow-left")
        self.next_button = widgets.Button(description="Next", icon="arrow-right")
        self.page_label = widgets.HTML()
        self.grid = widgets.GridBox(
            layout=widgets.Layout(
                grid_template_columns=f"repeat({per_row}, minmax(0, 1fr))", grid_gap="8px"
            )
        )
        self.detail = widgets.VBox()
        self._labels: list[Any] = []
        self._slots = [self._new_slot(position) for position in range(page_size)]
        self.status_filter.observe(self._on_filter, names="value")
        self.previous_button.on_click(lambda _button: self.show_page(self.page - 1))
        self.next_button.on_click(lambda _button: self.show_page(self.page + 1))
        super().__init__(
            children=[
                widgets.HBox(
                    [self.status_filter, self.previous_button, self.next_button, self.page_label]
                ),
                self.grid,
                self.detail,
            ]
        )
        self.show_page(0)

    @property
    def rows(self) -> pd.DataFrame:
        """The rows the status filter lets through, in frame order."""
        wanted = self.status_filter.value
        if wanted == _ALL or "status" not in self.frame.columns:
            return self.frame
        selected: pd.DataFrame = self.frame.loc[self.frame["status"] == wanted]
        return selected

    @property
    def page_count(self) -> int:
        """Number of pages under the current filter (at least 1)."""
        return max(1, -(-len(self.rows) // self.page_size))

    def show_page(self, page: int) -> None:
        """Show page ``page`` (0-based, clamped to the pages there are)."""
        self.page = min(max(page, 0), self.page_count - 1)
        chunk = self.rows.iloc[self.page * self.page_size : (self.page + 1) * self.page_size]
        tiles = self.render_tiles(chunk)
        comparable = (
            chunk[self.columns[1]].notna() if self.columns[1] in chunk else [False] * len(chunk)
        )
        self._labels = list(chunk.index)
        for slot, markup, ok in zip(self._slots, tiles, comparable, strict=False):
            slot.children[0].value = markup
            slot.children[1].disabled = not bool(ok)
        self.grid.children = self._slots[: len(tiles)]
        self.page_label.value = (
            f'<span style="{FONT}">page {self.page + 1} of {self.page_count} · '
            f"{len(self.rows)} of {len(self.frame)} rows</span>"
        )
        self.previous_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= self.page_count - 1

    def render_tiles(self, rows: pd.DataFrame) -> list[str]:
        """The HTML of one tile per row; thumbnails are fetched in parallel (or read cached)."""
        pairs = [
            make_pair(row, client=self.client, columns=self.columns) for _, row in rows.iterrows()
        ]
        with ThreadPoolExecutor(max_workers=_FETCH_THREADS) as pool:
            befores = list(pool.map(lambda p: self._image(p.before, p.refresh_before), pairs))
            afters = list(pool.map(lambda p: self._image(p.after, p.refresh_after), pairs))
        return [
            self._tile_html(label, pair, before, after)
            for label, pair, before, after in zip(rows.index, pairs, befores, afters, strict=True)
        ]

    def compare(self, label: Any) -> InteractiveComparison:
        """Open the interactive comparison of the row with index ``label`` below the grid."""
        if label not in self.frame.index:
            raise KeyError(f"no row with index {label!r} in the frame")
        row = self.frame.loc[label]
        if isinstance(row, pd.DataFrame):
            raise KeyError(f"index {label!r} is not unique: reset the frame's index first")
        view = InteractiveComparison(
            make_pair(row, client=self.client, columns=self.columns), client=self.client
        )
        close = widgets.Button(description="Close", icon="times")
        close.on_click(lambda _button: setattr(self.detail, "children", ()))
        title = widgets.HTML(f'<b style="{FONT}">Row {html.escape(str(label))}</b>')
        self.detail.children = [widgets.HBox([title, close]), view]
        return view

    def _new_slot(self, position: int) -> widgets.VBox:
        """A tile reused across pages, so paging creates no new widgets."""
        button = widgets.Button(description="Compare", icon="search-plus")
        button.on_click(lambda _button: self._open_from_tile(self._labels[position]))
        return widgets.VBox([widgets.HTML(), button])

    def _open_from_tile(self, label: Any) -> None:
        try:
            self.compare(label)
        except (RunflowError, ValueError) as exc:
            message = widgets.HTML(
                f'<span style="{FONT};color:#cf222e">{html.escape(str(exc))}</span>'
            )
            self.detail.children = [message]

    def _image(self, source: Source | None, refresh: Refresh | None) -> str:
        if source is None:
            return placeholder("no output", side=self.thumb_side)
        try:
            thumb = self._fetcher.thumbnail(source, max_side=self.thumb_side, refresh=refresh)
        except RunflowError as exc:
            return placeholder(_shorten(str(exc), 90), side=self.thumb_side)
        return f'<img src="{thumb.data_uri}" style="max-width:100%;height:auto" alt="">'

    def _tile_html(self, label: Any, pair: Pair, before: str, after: str) -> str:
        facts = " ".join(
            f for f in (status_badge(pair.status), html.escape(format_cost(pair.cost))) if f
        )
        error = (
            f'<div style="color:#cf222e;overflow-wrap:anywhere">{html.escape(_shorten(pair.error, _ERROR_CHARS))}</div>'
            if pair.error
            else ""
        )
        return (
            f'<div class="skinfix-tile" style="{FONT};border:1px solid #d0d7de;border-radius:6px;padding:4px">'
            f'<div style="display:flex;gap:4px"><div style="flex:1">{before}</div>'
            f'<div style="flex:1">{after}</div></div>'
            f"<div>#{html.escape(str(label))} {facts}</div>{error}</div>"
        )

    def _on_filter(self, _change: dict[str, Any]) -> None:
        self.detail.children = ()
        self.show_page(0)

    def _statuses(self) -> list[str]:
        if "status" not in self.frame.columns:
            return []
        return sorted(str(s) for s in self.frame["status"].dropna().unique())

    def _filter_options(self) -> list[tuple[str, str]]:
        options = [(f"all ({len(self.frame)})", _ALL)]
        if "status" in self.frame.columns:
            counts = self.frame["status"].value_counts()
            options += [(f"{s} ({int(counts[s])})", s) for s in self._statuses()]
        return options


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
