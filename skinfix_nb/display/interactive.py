"""``sf.compare(..., interactive=True)``: a widget to inspect a retouch closely.

A wipe or blend slider, a difference heatmap and a 1:1 zoom of a region (the face when the
engine finds one). All compositing happens in the kernel with Pillow and numpy and reaches
the page as plain ``ipywidgets.Image`` bytes, so no custom front-end code is needed and the
view works in JupyterLab, Notebook, VS Code and Colab alike.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
from PIL import Image, ImageChops, ImageDraw

from skinfix_nb.display.fetch import default_fetcher
from skinfix_nb.display.markup import FONT, format_cost, status_badge
from skinfix_nb.display.pair import Pair
from skinfix_nb.images import encode_image, mime_type_for, open_image, thumbnail

__all__ = ["InteractiveComparison"]

_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp"}
# colour stops of the difference heatmap: black, purple, orange, pale yellow (inferno-like)
_HEAT_STOPS = np.array(
    [[0, 0, 0], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32
)
_HEAT_LUT = np.stack(
    [np.interp(np.linspace(0, 4, 256), np.arange(5), _HEAT_STOPS[:, c]) for c in range(3)],
    axis=1,
).astype(np.uint8)


class InteractiveComparison(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no types
    """Wipe/blend slider, difference heatmap, 1:1 zoom and a full-resolution save.

    Parameters
    ----------
    pair : Pair
        The two images and the run facts (see :func:`skinfix_nb.display.pair.make_pair`).
    client : SkinFix, optional
        Reused for downloads and to refresh expired presigned URLs.
    view_side : int
        Longest side of the main view, in pixels.
    labels : (str, str)
        Names of the two images.
    zoom_side : int
        Side of the 1:1 zoom region, in full-resolution pixels.
    """

    def __init__(
        self,
        pair: Pair,
        *,
        client: Any = None,
        view_side: int = 512,
        labels: tuple[str, str] = ("Before", "After"),
        zoom_side: int = 256,
    ) -> None:
        if pair.before is None or pair.after is None:
            missing = "before" if pair.before is None else "after"
            status = f" (run status: {pair.status})" if pair.status else ""
            raise ValueError(
                f"an interactive comparison needs both images; no {missing} image{status}"
            )
        fetcher = default_fetcher(client)
        self.pair = pair
        self.labels = labels
        self.zoom_side = zoom_side
        self._after_raw = fetcher.read(pair.after, refresh=pair.refresh_after)
        self._before_full = open_image(
            fetcher.read(pair.before, refresh=pair.refresh_before)
        ).convert("RGB")
        after = open_image(self._after_raw).convert("RGB")
        self._after_size = after.size
        if after.size != self._before_full.size:  # compare like with like
            after = after.resize(self._before_full.size, Image.Resampling.LANCZOS)
        self._after_full = after
        self._before_view = thumbnail(self._before_full, view_side)
        self._after_view = self._after_full.resize(self._before_view.size, Image.Resampling.LANCZOS)
        self._face = _face_box(self._before_view)
        self._centre = self._default_centre()

        self.mode = widgets.ToggleButtons(
            options=[("Wipe", "wipe"), ("Blend", "blend")], value="wipe"
        )
        self.position = widgets.FloatSlider(
            value=0.5, min=0.0, max=1.0, step=0.01, description="After", continuous_update=False
        )
        self.heatmap = widgets.ToggleButton(
            value=False, description="Difference heatmap", icon="fire", layout=_fit_label()
        )
        self.view = widgets.Image(format="jpeg", layout=_natural_size(self._before_view.size))
        zoom_size = _natural_size(self._crop_size())
        self.zoom_before = widgets.Image(format="png", layout=zoom_size)
        self.zoom_after = widgets.Image(format="png", layout=zoom_size)
        self.save_button = widgets.Button(
            description="Save full resolution", icon="download", layout=_fit_label()
        )
        self.message = widgets.HTML()
        for control in (self.mode, self.position, self.heatmap):
            control.observe(self._on_change, names="value")
        self.save_button.on_click(self._on_save)

        zoom_label = "face" if self._face is not None else "centre"
        super().__init__(
            children=[
                widgets.HTML(self._header()),
                widgets.HBox([self.mode, self.heatmap]),
                self.position,
                self.view,
                widgets.HTML(
                    f'<div style="{FONT}"><b>1:1 zoom</b> ({zoom_label}): '
                    f"{html.escape(labels[0])} | {html.escape(labels[1])}</div>"
                ),
                widgets.HBox([self.zoom_before, self.zoom_after]),
                widgets.HBox([self.save_button, self.message]),
            ]
        )
        self._render()
        self._render_zoom()

    def composite(self, *, full_resolution: bool = False) -> Image.Image:
        """The picture the view shows now, at view size or at full resolution."""
        before, after = (
            (self._before_full, self._after_full)
            if full_resolution
            else (self._before_view, self._after_view)
        )
        if self.heatmap.value:
            return _heatmap(before, after)
        if self.mode.value == "blend":
            return Image.blend(before, after, float(self.position.value))
        return _wipe(before, after, float(self.position.value))

    def zoom_to(self, x: int, y: int) -> None:
        """Centre the 1:1 zoom on full-resolution pixel ``(x, y)``."""
        width, height = self._before_full.size
        if not (0 <= x < width and 0 <= y < height):
            raise ValueError(f"({x}, {y}) is outside the {width}x{height} image")
        self._centre = (x, y)
        self._render_zoom()

    def zoom_box(self) -> tuple[int, int, int, int]:
        """The zoom region as ``(left, top, right, bottom)`` in full-resolution pixels."""
        width, height = self._before_full.size
        side_x, side_y = self._crop_size()
        left = min(max(self._centre[0] - side_x // 2, 0), width - side_x)
        top = min(max(self._centre[1] - side_y // 2, 0), height - side_y)
        return left, top, left + side_x, top + side_y

    def _crop_size(self) -> tuple[int, int]:
        width, height = self._before_full.size
        return min(self.zoom_side, width), min(self.zoom_side, height)

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the retouched image at full resolution to ``path`` and return the path.

        The file is the exact bytes that were downloaded when there are any (no re-encoding);
        a PIL image is written as PNG. Default: ``skinfix-<run id>`` in the working folder.
        """
        data = self._after_bytes()
        suffix = _EXTENSIONS.get(mime_type_for(data), ".img")
        target = (
            Path(path)
            if path is not None
            else Path.cwd() / f"skinfix-{self.pair.run_id or 'after'}{suffix}"
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target

    def _after_bytes(self) -> bytes:
        raw = self._after_raw
        if isinstance(raw, bytes):
            return raw
        if isinstance(raw, Image.Image):
            return encode_image(raw, "PNG")
        return Path(raw).read_bytes()

    def _default_centre(self) -> tuple[int, int]:
        scale = self._before_full.width / self._before_view.width
        if self._face is not None:
            x, y, w, h = self._face
            return int((x + w / 2) * scale), int((y + h / 2) * scale)
        return self._before_full.width // 2, self._before_full.height // 2

    def _header(self) -> str:
        (bw, bh), (aw, ah) = self._before_full.size, self._after_size
        sizes = f"{bw}×{bh} px" if (bw, bh) == (aw, ah) else f"{bw}×{bh} px → {aw}×{ah} px"
        facts = [status_badge(self.pair.status), html.escape(format_cost(self.pair.cost)), sizes]
        return f'<div style="{FONT}">{" · ".join(f for f in facts if f)}</div>'

    def _on_change(self, _change: dict[str, Any]) -> None:
        self.position.disabled = bool(self.heatmap.value)
        self._render()

    def _on_save(self, _button: Any) -> None:
        try:
            target = self.save()
        except OSError as exc:
            self.message.value = (
                f'<span style="color:#cf222e">Could not save: {html.escape(str(exc))}</span>'
            )
            return
        self.message.value = f"Saved to <code>{html.escape(str(target))}</code>"

    def _render(self) -> None:
        self.view.value = encode_image(self.composite(), "JPEG", quality=85)

    def _render_zoom(self) -> None:
        box = self.zoom_box()
        self.zoom_before.value = encode_image(self._before_full.crop(box), "PNG")
        self.zoom_after.value = encode_image(self._after_full.crop(box), "PNG")


def _fit_label() -> widgets.Layout:
    """A button as wide as its label (the default width cuts long labels)."""
    return widgets.Layout(width="auto")


def _natural_size(size: tuple[int, int]) -> widgets.Layout:
    """Show an image at its own pixel size (boxes would stretch it), shrinking to fit."""
    return widgets.Layout(width=f"{size[0]}px", max_width="100%", height="auto")


def _wipe(before: Image.Image, after: Image.Image, position: float) -> Image.Image:
    """``before`` left of the split, ``after`` right of it, with a thin white line."""
    split = round(before.width * position)
    out = before.copy()
    out.paste(after.crop((split, 0, after.width, after.height)), (split, 0))
    line = max(1, before.width // 256)
    ImageDraw.Draw(out).rectangle(
        (max(split - line // 2, 0), 0, min(split + line // 2, before.width - 1), before.height),
        fill="white",
    )
    return out


def _heatmap(before: Image.Image, after: Image.Image) -> Image.Image:
    """Where the retouch changed pixels, bright on dark; scaled so small edits show."""
    diff = np.asarray(ImageChops.difference(before, after).convert("L"), dtype=np.float32)
    ceiling = max(float(np.percentile(diff, 99.5)), 8.0)
    levels = np.clip(diff / ceiling * 255.0, 0, 255).astype(np.uint8)
    return Image.fromarray(_HEAT_LUT[levels], mode="RGB")


def _face_box(view: Image.Image) -> tuple[int, int, int, int] | None:
    """The largest face the engine finds in the view image, or None."""
    try:
        from skinfix_nb.local.engine import analyze_face
    except ImportError:  # the engine's OpenCV is missing: zoom on the centre instead
        return None
    faces = analyze_face(view).faces
    if not faces:
        return None
    return max(faces, key=lambda box: box[2] * box[3])
