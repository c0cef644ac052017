"""The HTML card a :class:`~skinfix_nb.models.Run` shows in Jupyter.

A repr must be cheap and must never raise: images go through the display helpers'
fetcher (no credentials sent, safe decoding, thumbnails cached on disk) with a short
timeout and a byte cap, are embedded as small thumbnails (so the notebook survives the
expiry of presigned URLs), and are replaced by a plain link whenever anything goes wrong.
"""

from __future__ import annotations

import html
from functools import lru_cache
from typing import TYPE_CHECKING

import httpx

from skinfix_nb.errors import redact_url

if TYPE_CHECKING:
    from skinfix_nb.models import Run

THUMB_SIDE = 160
FETCH_TIMEOUT = httpx.Timeout(2.0, connect=1.0)
MAX_FETCH_BYTES = 20 * 1024 * 1024

_STATUS_COLOURS = {
    "succeeded": "#1a7f37",
    "partial_succeeded": "#1a7f37",
    "failed": "#cf222e",
    "canceled": "#6e7781",
}


def run_card(run: Run) -> str:
    """Status, cost, duration and before/after thumbnails of ``run``, as escaped HTML."""
    colour = _STATUS_COLOURS.get(run.status, "#9a6700")
    facts = [f'<b style="color:{colour}">{html.escape(run.status)}</b>']
    if run.cost is not None:
        facts.append(f"${html.escape(str(run.cost))}")
    if run.duration_ms is not None:
        facts.append(f"{run.duration_ms / 1000:.1f} s")
    if run.failure_code or run.failure_message:
        reason = " ".join(p for p in (run.failure_code, run.failure_message) if p)
        facts.append(html.escape(reason))
    images = "".join(
        _figure(label, url)
        for label, url in (("before", run.image_url), ("after", run.output_url))
        if url
    )
    return (
        '<div class="skinfix-run" style="font-family:sans-serif;font-size:13px">'
        f"<div>Run <code>{html.escape(run.id or '?')}</code> · {' · '.join(facts)}</div>"
        f'<div style="display:flex;gap:8px;margin-top:4px">{images}</div></div>'
    )


def _figure(label: str, url: str) -> str:
    data_uri = thumbnail_data_uri(url)
    if data_uri is None:
        body = (
            f'<a href="{html.escape(url)}" target="_blank" rel="noopener">'
            f"{html.escape(redact_url(url))}</a>"
        )
    else:
        body = f'<img src="{data_uri}" alt="{label}" style="max-width:{THUMB_SIDE}px">'
    return f"<figure style='margin:0'>{body}<figcaption>{label}</figcaption></figure>"


@lru_cache(maxsize=128)
def thumbnail_data_uri(url: str) -> str | None:
    """A small data URI of the image at ``url``, or None if it cannot be had cheaply.

    Only ``http(s)`` URLs are fetched: a run's URLs come from a server, and a repr must
    not read local files a hostile answer names.
    """
    if not url.startswith(("http://", "https://")):
        return None
    try:
        from skinfix_nb.display.fetch import ImageFetcher

        with ImageFetcher(timeout=FETCH_TIMEOUT, max_bytes=MAX_FETCH_BYTES) as fetcher:
            return fetcher.thumbnail(url, max_side=THUMB_SIDE).data_uri
    except Exception:  # a repr must never raise, whatever the image or the network does
        return None
