"""Small HTML pieces shared by the comparison and the gallery.

Everything here is plain, escaped HTML with inline styles and no JavaScript, so a saved
notebook renders the same on GitHub, nbviewer and VS Code as in a live kernel.
"""

from __future__ import annotations

import html
from decimal import Decimal

__all__ = ["FONT", "format_cost", "format_duration", "placeholder", "status_badge"]

FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;font-size:13px"

_BADGE_COLOURS = {
    "succeeded": "#1a7f37",
    "partial_succeeded": "#bc4c00",
    "failed": "#cf222e",
    "error": "#cf222e",
    "invalid": "#cf222e",
    "canceled": "#6e7781",
    "not_submitted": "#6e7781",
}
_PENDING_COLOUR = "#9a6700"  # queued, dispatching, running and anything new


def status_badge(status: str | None) -> str:
    """A coloured pill with the run status (amber for anything still pending)."""
    if not status:
        return ""
    colour = _BADGE_COLOURS.get(status, _PENDING_COLOUR)
    return (
        f'<span class="skinfix-badge" style="background:{colour};color:#fff;'
        f'border-radius:9px;padding:1px 7px;font-weight:600">{html.escape(status)}</span>'
    )


def format_cost(cost: Decimal | None) -> str:
    """``$0.12``; an empty string when the run was not billed (yet)."""
    if cost is None:
        return ""
    exact = cost.normalize()
    exponent = exact.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) else 0
    return f"${exact:f}" if places > 2 else f"${exact:.2f}"


def format_duration(duration_ms: int | None) -> str:
    """``2.3 s``; an empty string when unknown."""
    return "" if duration_ms is None else f"{duration_ms / 1000:.1f} s"


def placeholder(text: str, *, side: int) -> str:
    """A grey box of the thumbnail's size with a short message, where an image is missing."""
    return (
        f'<div style="width:{side}px;max-width:100%;height:{side * 3 // 4}px;background:#f0f0f0;'
        "color:#57606a;display:flex;align-items:center;justify-content:center;"
        f'text-align:center;padding:8px;box-sizing:border-box">{html.escape(text)}</div>'
    )
