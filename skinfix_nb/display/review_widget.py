"""``sf.review(df)``: look at each retouched pair and say accept, reject or flag.

One pair at a time (or a page of tiles with ``grid=True``), with its QA flags and figures
when ``qa()`` ran, a free-text note and the progress of the review ("37 of 120 reviewed"). Each verdict and note is written to the
label store (``labels.sqlite3`` in the toolkit's home unless another is given) the moment it
is made, keyed by run id, so a kernel restart loses nothing: re-opening ``review(df)`` shows
every label again and ``df.skinfix.qa()`` or :func:`skinfix_nb.labels.load` merges them.

Keyboard use. ipywidgets cannot listen to arbitrary keys without a front-end extension, and
its buttons cannot carry an ``accesskey``, so the widget offers what works everywhere
(JupyterLab, Notebook, VS Code, Colab) without custom JavaScript:

* every control is a real, focusable button or text box in a sensible tab order
  (Accept, Reject, Flag, Previous, Next, note, shortcut box); Space or Enter presses the
  focused button, and the review moves to the next pair while focus stays on the button, so
  a run of good pairs is accepted by pressing Space repeatedly;
* the *shortcut box*: while it has focus, typing ``a`` accepts, ``r`` rejects, ``f`` flags,
  ``n`` or ``j`` moves on, ``p`` or ``k`` moves back (each key acts once and the box empties);
* every button names its key in its tooltip.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import pandas as pd

from skinfix_nb import labels as labels_module
from skinfix_nb.display.fetch import ImageFetcher, default_fetcher
from skinfix_nb.display.markup import FONT, status_badge
from skinfix_nb.display.pair import Pair, make_pair
from skinfix_nb.quality.flags import FLAGS
from skinfix_nb.quality.frame import DEFAULT_COLUMNS, MEASURED_STATUSES

__all__ = ["ReviewGrid", "ReviewSession", "ReviewWidget", "review"]

SHORTCUTS: dict[str, str] = {
    "a": "accepted",
    "r": "rejected",
    "f": "flagged",
    "n": "next",
    "j": "next",
    "p": "previous",
    "k": "previous",
}
"""Keys understood by the shortcut box, and what each does."""

_VERDICT_STYLE = {"accepted": "success", "rejected": "danger", "flagged": "warning"}
_VERDICT_COLOUR = {"accepted": "#1a7f37", "rejected": "#cf222e", "flagged": "#9a6700"}
_FIGURES = (
    ("qa_ssim", "SSIM", "{:.3f}"),
    ("qa_skin_change", "skin Δ", "{:.2f}"),
    ("qa_background_altered_pct", "background altered %", "{:.1f}"),
    ("qa_feature_sharpness_ratio", "feature sharpness", "{:.2f}"),
    ("qa_delta_e", "ΔE", "{:.2f}"),
)


class ReviewSession:
    """The pairs under review, their labels, and the store every change goes to at once.

    Shared by the one-pair view (:class:`ReviewWidget`) and the grid (:class:`ReviewGrid`);
    positions are 0-based among the reviewable rows (run id and status ``succeeded``).
    """

    def __init__(
        self,
        df: pd.DataFrame,
        *,
        labels: labels_module.LabelsLike,
        columns: tuple[str, str],
    ) -> None:
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"review needs a pandas DataFrame, got {type(df).__name__}")
        missing = [c for c in ("run_id", "status", *columns) if c not in df.columns]
        if missing:
            raise ValueError(
                f"the frame has no {', '.join(map(repr, missing))} column: review the frame "
                "df.skinfix.submit(...) returned, or name the image columns with columns="
            )
        self.store = labels_module.open_store(labels)
        self.columns = columns
        self._frame = labels_module.load(df, labels=self.store)
        self._positions = _reviewable(self._frame)
        if not self._positions:
            raise ValueError(
                "nothing to review: no row has a run id and status 'succeeded' "
                f"(statuses here: {sorted(set(map(str, df['status'])))})"
            )

    @property
    def frame(self) -> pd.DataFrame:
        """Every row of the reviewed frame with ``qa_label`` and ``qa_note`` as they are now."""
        return self._frame.copy()

    @property
    def total(self) -> int:
        """How many pairs are under review."""
        return len(self._positions)

    @property
    def reviewed(self) -> int:
        """How many of them carry a verdict."""
        return int(self._frame["qa_label"].iloc[self._positions].notna().sum())

    def labels(self) -> pd.DataFrame:
        """``run_id``, ``qa_label`` and ``qa_note`` of the pairs under review."""
        return self._frame.iloc[self._positions][["run_id", "qa_label", "qa_note"]].copy()

    def run_id(self, position: int) -> str:
        """The run id of the pair at ``position``."""
        return str(self._frame["run_id"].iloc[self._positions[position]])

    def cell(self, position: int, column: str) -> Any:
        """A value of the pair's row, None when missing or when the column does not exist."""
        if column not in self._frame.columns:
            return None
        value = self._frame[column].iloc[self._positions[position]]
        return None if _missing(value) else value

    def pair(self, position: int, client: Any) -> Pair:
        """The pair's images and run facts, as the display helpers read them."""
        row = self._frame.iloc[self._positions[position]]
        return make_pair(row, client=client, columns=self.columns)

    def first_unreviewed(self) -> int:
        """Position of the first pair without a verdict (0 when all have one)."""
        for offset, value in enumerate(self._frame["qa_label"].iloc[self._positions]):
            if _missing(value):
                return offset
        return 0

    def set_label(self, position: int, verdict: str | None, *, note: str | None = None) -> None:
        """Store a verdict (and the note, when given) and show it in the frame."""
        saved = self.store.set(self.run_id(position), verdict, note=note)
        self._set(position, "qa_label", saved.label)
        self._set(position, "qa_note", saved.note)

    def set_note(self, position: int, note: str) -> None:
        """Store a note, keeping the verdict."""
        saved = self.store.set_note(self.run_id(position), note)
        self._set(position, "qa_note", saved.note)

    def _set(self, position: int, column: str, value: str | None) -> None:
        location = self._frame.columns.get_loc(column)
        if not isinstance(location, int):
            raise ValueError(f"the frame has more than one {column!r} column")
        self._frame.iat[self._positions[position], location] = value


class ReviewWidget(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no types
    """Accept / Reject / Flag each pair of a results frame; labels are saved as they are made.

    Parameters
    ----------
    df : DataFrame
        A results frame (``df.skinfix.submit`` output, optionally after ``qa()``). Rows with a
        run id and an output (status ``succeeded``) are reviewed; the others are left alone.
    labels : LabelStore, path or None
        Where labels are kept; default ``labels.sqlite3`` in the toolkit's home.
    client : SkinFix, optional
        Reused for downloads and to refresh expired presigned URLs.
    columns : (str, str)
        Names of the before and after columns.
    max_side : int
        Longest side of each thumbnail, in pixels.
    start : int, optional
        Position (among reviewed pairs) to open at; default the first pair without a label.
    advance : bool
        Move to the next pair after each verdict.

    Attributes
    ----------
    frame : DataFrame
        ``df`` with ``qa_label`` and ``qa_note`` as they stand now.
    """

    def __init__(
        self,
        df: pd.DataFrame,
        *,
        labels: labels_module.LabelsLike = None,
        client: Any = None,
        columns: tuple[str, str] = DEFAULT_COLUMNS,
        max_side: int = 384,
        start: int | None = None,
        advance: bool = True,
    ) -> None:
        self.session = ReviewSession(df, labels=labels, columns=columns)
        self.store = self.session.store
        self._client = client
        self._max_side = max_side
        self._advance = advance
        self._fetcher: ImageFetcher = default_fetcher(client)
        self._index = 0
        self._loading_note = False

        self.progress_text = widgets.HTML()
        self.progress_bar = widgets.IntProgress(
            min=0, max=self.session.total, layout=widgets.Layout(width="240px")
        )
        self.title = widgets.HTML()
        self.before_image = widgets.Image(format="png")
        self.after_image = widgets.Image(format="png")
        self.image_message = widgets.HTML()
        self.details = widgets.HTML()
        self.accept_button = _button("Accept", "success", "check", "Accept this retouch (key a)")
        self.reject_button = _button("Reject", "danger", "times", "Reject this retouch (key r)")
        self.flag_button = _button("Flag", "warning", "flag", "Flag for a second look (key f)")
        self.previous_button = _button("Previous", "", "arrow-left", "Previous pair (key p or k)")
        self.next_button = _button("Next", "", "arrow-right", "Next pair (key n or j)")
        self.note = widgets.Textarea(
            placeholder="Note for this pair (saved when you leave the box)",
            continuous_update=False,
            layout=widgets.Layout(width="100%", height="3.5em"),
        )
        self.shortcuts = widgets.Text(
            placeholder="Shortcut box: focus here, then a / r / f / n / p",
            continuous_update=True,
            layout=widgets.Layout(width="340px"),
        )

        for button, verdict in (
            (self.accept_button, "accepted"),
            (self.reject_button, "rejected"),
            (self.flag_button, "flagged"),
        ):
            button.on_click(_ignore_button(functools.partial(self.label, verdict)))
        self.previous_button.on_click(_ignore_button(self.previous))
        self.next_button.on_click(_ignore_button(self.next))
        self.note.observe(self._on_note, names="value")
        self.shortcuts.observe(self._on_shortcut, names="value")

        def picture(name: str, image: widgets.Image) -> widgets.VBox:
            caption = widgets.HTML(f'<div style="{FONT};font-weight:600">{name}</div>')
            return widgets.VBox([caption, image])

        super().__init__(
            children=[
                widgets.HBox([self.progress_bar, self.progress_text]),
                self.title,
                widgets.HBox(
                    [picture("Before", self.before_image), picture("After", self.after_image)]
                ),
                self.image_message,
                self.details,
                widgets.HBox(
                    [
                        self.accept_button,
                        self.reject_button,
                        self.flag_button,
                        self.previous_button,
                        self.next_button,
                    ]
                ),
                self.note,
                self.shortcuts,
            ]
        )
        self.add_class("skinfix-review")
        self.go_to(self.session.first_unreviewed() if start is None else start)

    # -- what the widget exposes -------------------------------------------------------------

    @property
    def frame(self) -> pd.DataFrame:
        """The reviewed frame: every row of ``df`` with ``qa_label`` and ``qa_note`` now."""
        return self.session.frame

    @property
    def position(self) -> int:
        """Position of the pair on show, among the pairs under review (0-based)."""
        return self._index

    @property
    def total(self) -> int:
        """How many pairs are under review."""
        return self.session.total

    @property
    def reviewed(self) -> int:
        """How many of them carry a verdict."""
        return self.session.reviewed

    def labels(self) -> pd.DataFrame:
        """``run_id``, ``qa_label`` and ``qa_note`` of the pairs under review."""
        return self.session.labels()

    # -- actions (the buttons call these; so can code) -----------------------------------------

    def label(self, verdict: str | None) -> None:
        """Give the pair on show a verdict (or ``None`` to clear it), save it, maybe move on."""
        self.session.set_label(self._index, verdict, note=str(self.note.value))
        if self._advance and verdict is not None and self._index < self.total - 1:
            self.go_to(self._index + 1)
        else:
            self._render_state()

    def accept(self) -> None:
        """Mark the pair on show ``accepted``."""
        self.label("accepted")

    def reject(self) -> None:
        """Mark the pair on show ``rejected``."""
        self.label("rejected")

    def flag(self) -> None:
        """Mark the pair on show ``flagged`` (for a second look)."""
        self.label("flagged")

    def next(self) -> None:
        """Show the next pair (stays on the last one)."""
        self.go_to(min(self._index + 1, self.total - 1))

    def previous(self) -> None:
        """Show the previous pair (stays on the first one)."""
        self.go_to(max(self._index - 1, 0))

    def go_to(self, position: int) -> None:
        """Show the pair at ``position`` (0-based, among the pairs under review)."""
        if not 0 <= position < self.total:
            raise IndexError(f"position {position} is outside 0..{self.total - 1}")
        self._index = position
        self._loading_note = True
        try:
            self.note.value = self._cell("qa_note") or ""
        finally:
            self._loading_note = False
        self._render_images()
        self._render_state()

    # -- internals ---------------------------------------------------------------------------

    def _run_id(self) -> str:
        return self.session.run_id(self._index)

    def _cell(self, column: str) -> Any:
        return self.session.cell(self._index, column)

    def _render_images(self) -> None:
        pair = self.session.pair(self._index, self._client)
        problems = []
        for which, source, refresh, image in (
            ("before", pair.before, pair.refresh_before, self.before_image),
            ("after", pair.after, pair.refresh_after, self.after_image),
        ):
            if source is None:
                image.value = b""
                problems.append(f"no {which} image")
                continue
            try:
                thumb = self._fetcher.thumbnail(source, max_side=self._max_side, refresh=refresh)
            except (OSError, ValueError) as exc:  # RunflowError subclasses OSError or ValueError
                image.value = b""
                problems.append(f"{which} image unavailable: {exc}")
                continue
            image.format = thumb.mime.split("/", 1)[1]
            image.value = thumb.data
        self.image_message.value = (
            f'<div style="{FONT};color:#cf222e">{html.escape("; ".join(problems))}</div>'
            if problems
            else ""
        )

    def _render_state(self) -> None:
        done = self.reviewed
        self.progress_bar.value = done
        self.progress_text.value = (
            f'<span style="{FONT}" class="skinfix-review-progress">'
            f"<b>{done} of {self.total} reviewed</b> · pair {self._index + 1} of {self.total}</span>"
        )
        verdict = self._cell("qa_label")
        verdict_html = (
            f'<b style="color:{_VERDICT_COLOUR[verdict]}">{html.escape(verdict)}</b>'
            if verdict in _VERDICT_COLOUR
            else "<i>not reviewed</i>"
        )
        self.title.value = (
            f'<div style="{FONT}">run <code>{html.escape(self._run_id())}</code> '
            f"{status_badge(self._cell('status'))} · {verdict_html}</div>"
        )
        self.details.value = self._details_html()
        for button, name in (
            (self.accept_button, "accepted"),
            (self.reject_button, "rejected"),
            (self.flag_button, "flagged"),
        ):
            # the chosen verdict stands out; the others go plain
            button.button_style = _VERDICT_STYLE[name] if verdict in (None, name) else ""
        self.previous_button.disabled = self._index == 0
        self.next_button.disabled = self._index >= self.total - 1

    def _details_html(self) -> str:
        parts = []
        flag_text = self._cell("qa_flag")
        if flag_text:
            parts.append(_flag_chips(str(flag_text)))
        figures = [
            f"{label} {fmt.format(float(value))}"
            for column, label, fmt in _FIGURES
            if (value := self._cell(column)) is not None
        ]
        if figures:
            parts.append(html.escape(" · ".join(figures)))
        return f'<div style="{FONT};color:#57606a">{" ".join(parts)}</div>' if parts else ""

    def _on_note(self, change: dict[str, Any]) -> None:
        if self._loading_note:
            return
        self.session.set_note(self._index, str(change["new"]))

    def _on_shortcut(self, change: dict[str, Any]) -> None:
        typed = str(change["new"])
        if not typed:
            return
        self.shortcuts.value = ""
        action = SHORTCUTS.get(typed[-1].lower())
        if action == "next":
            self.next()
        elif action == "previous":
            self.previous()
        elif action is not None:
            self.label(action)


class ReviewGrid(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no types
    """Many pairs at once: a page of small before/after tiles, each with its own verdict.

    Faster than :class:`ReviewWidget` for a first pass over a large batch; labels go to the
    same store, so the two views can be mixed. Each tile's verdict buttons are one
    ``ToggleButtons`` control: Tab moves between tiles, the arrow keys between verdicts.

    Parameters
    ----------
    df, labels, client, columns
        As for :class:`ReviewWidget`.
    page_size : int
        Tiles per page.
    max_side : int
        Longest side of each thumbnail, in pixels.
    """

    def __init__(
        self,
        df: pd.DataFrame,
        *,
        labels: labels_module.LabelsLike = None,
        client: Any = None,
        columns: tuple[str, str] = DEFAULT_COLUMNS,
        page_size: int = 12,
        max_side: int = 160,
    ) -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}")
        self.session = ReviewSession(df, labels=labels, columns=columns)
        self.store = self.session.store
        self._client = client
        self._fetcher: ImageFetcher = default_fetcher(client)
        self._page_size = page_size
        self._max_side = max_side
        self._page = 0
        self.choices: list[widgets.ToggleButtons] = []

        self.progress_text = widgets.HTML()
        self.previous_page_button = _button("Previous page", "", "arrow-left", "Previous page")
        self.next_page_button = _button("Next page", "", "arrow-right", "Next page")
        self.previous_page_button.on_click(_ignore_button(lambda: self.go_to_page(self._page - 1)))
        self.next_page_button.on_click(_ignore_button(lambda: self.go_to_page(self._page + 1)))
        self.tiles = widgets.GridBox(
            layout=widgets.Layout(
                grid_template_columns=f"repeat(auto-fill, minmax({2 * max_side + 24}px, 1fr))",
                grid_gap="10px",
            )
        )
        super().__init__(
            children=[
                widgets.HBox(
                    [self.previous_page_button, self.next_page_button, self.progress_text]
                ),
                self.tiles,
            ]
        )
        self.add_class("skinfix-review-grid")
        self.go_to_page(self.session.first_unreviewed() // page_size)

    @property
    def frame(self) -> pd.DataFrame:
        """The reviewed frame: every row of ``df`` with ``qa_label`` and ``qa_note`` now."""
        return self.session.frame

    @property
    def total(self) -> int:
        """How many pairs are under review."""
        return self.session.total

    @property
    def reviewed(self) -> int:
        """How many of them carry a verdict."""
        return self.session.reviewed

    @property
    def page(self) -> int:
        """The page on show (0-based)."""
        return self._page

    @property
    def pages(self) -> int:
        """How many pages there are."""
        return -(-self.total // self._page_size)

    def labels(self) -> pd.DataFrame:
        """``run_id``, ``qa_label`` and ``qa_note`` of the pairs under review."""
        return self.session.labels()

    def go_to_page(self, page: int) -> None:
        """Show page ``page`` (0-based); out-of-range pages are clamped."""
        self._page = min(max(page, 0), self.pages - 1)
        first = self._page * self._page_size
        positions = range(first, min(first + self._page_size, self.total))
        self.choices = []
        self.tiles.children = [self._tile(position) for position in positions]
        self.previous_page_button.disabled = self._page == 0
        self.next_page_button.disabled = self._page >= self.pages - 1
        self._render_progress()

    def _tile(self, position: int) -> widgets.VBox:
        pair = self.session.pair(position, self._client)
        images, problems = [], []
        for which, source, refresh in (
            ("before", pair.before, pair.refresh_before),
            ("after", pair.after, pair.refresh_after),
        ):
            image = widgets.Image(format="png")
            try:
                if source is None:
                    raise ValueError(f"no {which} image")
                thumb = self._fetcher.thumbnail(source, max_side=self._max_side, refresh=refresh)
                image.format = thumb.mime.split("/", 1)[1]
                image.value = thumb.data
            except (OSError, ValueError) as exc:
                problems.append(f"{which}: {exc}")
            images.append(image)
        choice = widgets.ToggleButtons(
            options=[
                ("–", ""),
                ("Accept", "accepted"),
                ("Reject", "rejected"),
                ("Flag", "flagged"),
            ],
            value=self.session.cell(position, "qa_label") or "",
            tooltips=["Not reviewed", "Accept this retouch", "Reject it", "Flag it"],
            style={"button_width": "76px"},
        )
        choice.observe(functools.partial(self._on_choice, position), names="value")
        self.choices.append(choice)
        flags = self.session.cell(position, "qa_flag")
        head = (
            f'<div style="{FONT}"><code>{html.escape(self.session.run_id(position))}</code> '
            f"{_flag_chips(str(flags)) if flags else ''}</div>"
        )
        trouble = (
            f'<div style="{FONT};color:#cf222e">{html.escape("; ".join(problems)[:200])}</div>'
            if problems
            else ""
        )
        tile = widgets.VBox(
            [widgets.HTML(head), widgets.HBox(images), widgets.HTML(trouble), choice]
        )
        tile.add_class("skinfix-review-tile")
        return tile

    def _on_choice(self, position: int, change: dict[str, Any]) -> None:
        self.session.set_label(position, str(change["new"]) or None)
        self._render_progress()

    def _render_progress(self) -> None:
        self.progress_text.value = (
            f'<span style="{FONT}" class="skinfix-review-progress">'
            f"<b>{self.reviewed} of {self.total} reviewed</b> · page {self._page + 1} of "
            f"{self.pages}</span>"
        )


def review(
    df: pd.DataFrame,
    *,
    labels: labels_module.LabelsLike = None,
    client: Any = None,
    columns: tuple[str, str] = DEFAULT_COLUMNS,
    max_side: int | None = None,
    start: int | None = None,
    advance: bool = True,
    grid: bool = False,
    page_size: int = 12,
) -> ReviewWidget | ReviewGrid:
    """Review the succeeded pairs of ``df``: one at a time, or a page of tiles with ``grid=True``.

    See :class:`ReviewWidget` and :class:`ReviewGrid`; ``max_side`` (thumbnail size) defaults
    to 384 px for one pair and 160 px in the grid. Both save every label at once to the same
    store.

    >>> w = sf.review(out)                 # buttons, note, "0 of 120 reviewed"
    >>> w.frame                            # out with qa_label / qa_note as they stand now
    >>> sf.review(out, grid=True)          # twelve pairs a page
    """
    if grid:
        return ReviewGrid(
            df,
            labels=labels,
            client=client,
            columns=columns,
            page_size=page_size,
            max_side=max_side or 160,
        )
    return ReviewWidget(
        df,
        labels=labels,
        client=client,
        columns=columns,
        max_side=max_side or 384,
        start=start,
        advance=advance,
    )


def _reviewable(frame: pd.DataFrame) -> list[int]:
    return [
        position
        for position, (run_id, status) in enumerate(
            zip(frame["run_id"], frame["status"], strict=True)
        )
        if isinstance(run_id, str) and run_id and status in MEASURED_STATUSES
    ]


def _flag_chips(flag_text: str) -> str:
    return "".join(
        f'<span title="{html.escape(FLAGS.get(name, name))}" style="background:#fff1e5;'
        f'color:#bc4c00;border-radius:9px;padding:1px 7px;margin-right:4px">'
        f"{html.escape(name)}</span>"
        for name in flag_text.split(",")
        if name
    )


def _button(description: str, style: str, icon: str, tooltip: str) -> widgets.Button:
    return widgets.Button(
        description=description,
        button_style=style,
        icon=icon,
        tooltip=tooltip,
        layout=widgets.Layout(width="auto"),
    )


def _ignore_button(action: Callable[[], None]) -> Callable[[Any], None]:
    """An ``on_click`` handler (which receives the button) that runs ``action``."""

    def handler(_button: Any) -> None:
        action()

    return handler


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value) or value is pd.NA
