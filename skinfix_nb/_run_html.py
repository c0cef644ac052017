"""The HTML card a :class:`~skinfix_nb.models.Run` shows in Jupyter.

A repr must be cheap and must never raise: images are fetched once with a short timeout
and a byte cap, turned into small embedded thumbnails (so the notebook survives the
expiry of presigned URLs), cached per URL, and replaced by a plain link whenever anything
goes wrong. No credentials are ever sent with these fetches.
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
    """A small JPEG data URI of the image at ``url``, or None if it cannot be had cheaply."""
    try:
        from skinfix_nb.images import open_image, to_data_uri
    except ImportError:
        return None
    try:
        data = _fetch(url)
        if data is None:
            return None
        return to_data_uri(open_image(data), max_side=THUMB_SIDE)
    except Exception:  # a repr must never raise, whatever the image or the network does
        return None


def _fetch(url: str) -> bytes | None:
    if not url.startswith(("http://", "https://")):
        return None
    with httpx.stream("GET", url, timeout=FETCH_TIMEOUT, follow_redirects=True) as response:
        if response.status_code != 200:
            return None
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > MAX_FETCH_BYTES:
                return None
            chunks.append(chunk)
    return b"".join(chunks)
