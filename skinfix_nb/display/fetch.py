"""Kernel-side image fetching for the display helpers.

Every picture the display helpers show is fetched and decoded by the kernel, never by the
browser: the notebook then holds small embedded thumbnails that outlive Runflow's presigned
URLs. This module does that work once per image:

* one pooled ``httpx.Client`` (the client's own pool when a client is given), with the
  ``Authorization`` header removed from image requests so the API key never reaches a
  storage host;
* safe decoding through :func:`skinfix_nb.images.open_image` (decompression bombs refused,
  EXIF orientation applied);
* thumbnails cached on disk under ``paths.home() / "thumbs"``, keyed by the URL without its
  query string (the presigned part changes, the object does not) and the thumbnail size;
* a ``403`` from an expired presigned URL calls ``refresh`` once for a fresh URL.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import unquote_to_bytes, urlsplit, urlunsplit

import httpx
from PIL import Image, features

from skinfix_nb import paths
from skinfix_nb.errors import (
    APIConnectionError,
    APIError,
    ImageTooLargeError,
    InvalidImageError,
    redact_url,
)
from skinfix_nb.images import encode_image, open_image, thumbnail

__all__ = [
    "DOWNLOAD_TIMEOUT",
    "MAX_DOWNLOAD_BYTES",
    "THUMBNAIL_FORMAT",
    "ImageFetcher",
    "Refresh",
    "Source",
    "Thumbnail",
    "default_fetcher",
]

Source: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | Image.Image"
"""What the display helpers accept as one image: URL, data URI, path, bytes or PIL image."""

Refresh: TypeAlias = Callable[[], "str | None"]
"""Called once after a ``403``; returns a fresh URL for the same image, or None."""

MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
"""Largest image body the kernel downloads (Runflow's upload limit is 50 MiB)."""

THUMBNAIL_FORMAT = "WEBP" if features.check("webp") else "JPEG"
"""Format of cached thumbnails: WebP is about a third smaller than JPEG at equal quality."""

DOWNLOAD_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
"""Default limits of one image download."""

_THUMBNAIL_QUALITY = 85
_MIME = {"WEBP": "image/webp", "JPEG": "image/jpeg"}


@dataclass(frozen=True, repr=False)
class Thumbnail:
    """An encoded thumbnail and the size of the image it was made from."""

    data: bytes
    mime: str
    width: int
    height: int

    @property
    def data_uri(self) -> str:
        """The thumbnail as a ``data:`` URI, for self-contained HTML."""
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"

    def __repr__(self) -> str:
        return f"Thumbnail({self.mime}, {len(self.data)} bytes, from {self.width}x{self.height})"


class ImageFetcher:
    """Fetch, decode and thumbnail images for display, with an on-disk thumbnail cache.

    Parameters
    ----------
    client : SkinFix, optional
        Its HTTP connection pool is reused for image downloads.
    http : httpx.Client, optional
        A pool to use instead (tests, custom transports). Default: a pool of this fetcher's own.
    cache_dir : path, optional
        Where thumbnails are kept; default ``paths.home() / "thumbs"``.
    max_bytes : int
        Largest download accepted.
    timeout : httpx.Timeout or float
        Limits of one download (default: 10 s to connect, 30 s to read). A ``Run``'s card
        in Jupyter uses a short one, so that a slow host never holds up a repr.
    """

    def __init__(
        self,
        *,
        client: Any = None,
        http: httpx.Client | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        max_bytes: int = MAX_DOWNLOAD_BYTES,
        timeout: httpx.Timeout | float = DOWNLOAD_TIMEOUT,
    ) -> None:
        pooled = http if http is not None else _pool_of(client)
        self._owns_http = pooled is None
        self._http = pooled if pooled is not None else _new_pool()
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._max_bytes = max_bytes
        self._timeout = httpx.Timeout(timeout)

    @property
    def cache_dir(self) -> Path:
        """The thumbnail cache folder (created on first use)."""
        folder = self._cache_dir if self._cache_dir is not None else paths.home() / "thumbs"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def close(self) -> None:
        """Close the HTTP pool if this fetcher created it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> ImageFetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def fetch_bytes(self, url: str, *, refresh: Refresh | None = None) -> bytes:
        """Download ``url`` (``http(s)`` or ``data:``); after a 403, refresh the URL once.

        Raises
        ------
        APIError
            The image host answered with an error status.
        APIConnectionError
            No answer (refused, timed out, dropped).
        ImageTooLargeError
            The body is larger than ``max_bytes``.
        """
        if url.startswith("data:"):
            return _decode_data_uri(url)
        try:
            return self._download(url)
        except APIError as exc:
            if exc.status_code != 403 or refresh is None:
                raise
            fresh = refresh()
            if not fresh:
                raise
            return self._download(fresh)

    def load(self, source: Source, *, refresh: Refresh | None = None) -> Image.Image:
        """The image at full resolution, decoded safely (see :func:`open_image`)."""
        return open_image(self.read(source, refresh=refresh))

    def read(
        self, source: Source, *, refresh: Refresh | None = None
    ) -> bytes | os.PathLike[str] | str | Image.Image:
        """Something :func:`open_image` reads: downloaded bytes for URLs, else ``source``."""
        if isinstance(source, str) and _is_url(source):
            return self.fetch_bytes(source, refresh=refresh)
        if isinstance(source, bytearray):
            return bytes(source)
        return source

    def thumbnail(
        self, source: Source, *, max_side: int = 512, refresh: Refresh | None = None
    ) -> Thumbnail:
        """A thumbnail whose longest side is at most ``max_side``, from the cache when possible.

        URLs are cached by their address without the query string; paths by their absolute
        path, size and modification time. Bytes and PIL images are not cached.
        """
        key = _cache_key(source, max_side)
        if key is not None:
            cached = self._cached(key)
            if cached is not None:
                return cached
        image = self.load(source, refresh=refresh)
        small = thumbnail(image, max_side)
        result = Thumbnail(
            data=encode_image(small, THUMBNAIL_FORMAT, quality=_THUMBNAIL_QUALITY),
            mime=_MIME[THUMBNAIL_FORMAT],
            width=image.width,
            height=image.height,
        )
        if key is not None:
            self._store(key, result)
        return result

    def _download(self, url: str) -> bytes:
        request = self._http.build_request("GET", url, timeout=self._timeout)
        # a client's pool carries the API key (as auth or a default header): storage hosts
        # must never see it, and S3 refuses presigned GETs that also carry Authorization
        request.headers.pop("authorization", None)
        try:
            response = self._http.send(request, stream=True, follow_redirects=True, auth=None)
        except httpx.TimeoutException as exc:
            raise APIConnectionError(f"timed out fetching {redact_url(url)}") from exc
        except httpx.HTTPError as exc:
            raise APIConnectionError(
                f"could not fetch {redact_url(url)}: {type(exc).__name__}"
            ) from exc
        try:
            if response.status_code >= 400:
                raise APIError(
                    _status_message(response.status_code, url),
                    status_code=response.status_code,
                )
            return self._read_capped(response, url)
        finally:
            response.close()

    def _read_capped(self, response: httpx.Response, url: str) -> bytes:
        chunks: list[bytes] = []
        received = 0
        try:
            for chunk in response.iter_bytes():
                received += len(chunk)
                if received > self._max_bytes:
                    raise ImageTooLargeError(
                        f"{redact_url(url)} is larger than {self._max_bytes:,} bytes; "
                        "download it yourself and pass a downscaled copy"
                    )
                chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise APIConnectionError(
                f"download of {redact_url(url)} broke off: {type(exc).__name__}"
            ) from exc
        return b"".join(chunks)

    def _cached(self, key: str) -> Thumbnail | None:
        folder = self.cache_dir
        try:
            meta = json.loads((folder / f"{key}.json").read_text())
            data = (folder / f"{key}.img").read_bytes()
            return Thumbnail(data, str(meta["mime"]), int(meta["width"]), int(meta["height"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _store(self, key: str, thumb: Thumbnail) -> None:
        folder = self.cache_dir
        meta = {"mime": thumb.mime, "width": thumb.width, "height": thumb.height}
        # image first, metadata last: a reader that finds the metadata finds the image
        _write_atomically(folder / f"{key}.img", thumb.data)
        _write_atomically(folder / f"{key}.json", json.dumps(meta).encode())


_default: ImageFetcher | None = None
_default_lock = threading.Lock()


def default_fetcher(client: Any = None) -> ImageFetcher:
    """A fetcher on ``client``'s pool, or the process-wide fetcher when no client is given."""
    global _default
    if client is not None:
        return ImageFetcher(client=client)
    with _default_lock:
        if _default is None:
            _default = ImageFetcher()
        return _default


def _pool_of(client: Any) -> httpx.Client | None:
    """The client's connection pool (``SkinFix._http``), or None for anything else."""
    pool = getattr(client, "_http", None)
    return pool if isinstance(pool, httpx.Client) else None


def _new_pool() -> httpx.Client:
    return httpx.Client(
        timeout=DOWNLOAD_TIMEOUT,
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        follow_redirects=True,
    )


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://", "data:"))


def _cache_key(source: Source, max_side: int) -> str | None:
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        parts = urlsplit(source)
        identity = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    elif isinstance(source, str | os.PathLike) and not str(source).startswith("data:"):
        path = Path(source).expanduser().resolve()
        try:
            stat = path.stat()
        except OSError:
            return None  # open_image gives the clear error
        identity = f"file://{path}?{stat.st_size}-{stat.st_mtime_ns}"
    else:
        return None
    digest = hashlib.sha256(f"{identity}@{max_side}".encode()).hexdigest()[:40]
    return f"{digest}-{max_side}"


def _decode_data_uri(uri: str) -> bytes:
    header, sep, payload = uri.partition(",")
    if not sep:
        raise InvalidImageError("a data: URI needs a comma before its payload")
    if header.endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except ValueError:
            raise InvalidImageError("the data: URI holds invalid base64") from None
    return unquote_to_bytes(payload)


def _status_message(status: int, url: str) -> str:
    where = redact_url(url)
    if status == 403:
        return (
            f"the image at {where} answered 403: a presigned URL that expired? "
            "Pass client= so the run can be read again for a fresh URL"
        )
    if status == 404:
        return f"no image at {where} (404)"
    return f"the image at {where} answered HTTP {status}"


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
