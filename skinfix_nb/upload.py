"""What an asset upload sends: the bytes, a file name and a media type, checked before any I/O.

Runflow takes at most 50 MiB per asset and checks that the PUT's ``Content-Type`` equals
the media type declared when the upload session was opened, so both are settled here,
once, from the bytes themselves rather than from a file extension.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import IO, TypeAlias
from urllib.parse import urlsplit

from PIL import Image

from skinfix_nb.errors import ConfigurationError, ImageTooLargeError, InvalidImageError, redact_url
from skinfix_nb.images import encode_image, mime_type_for

__all__ = ["MAX_UPLOAD_BYTES", "UploadPayload", "UploadSource", "check_upload_url", "read_upload"]

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
"""Runflow's limit for one asset (52,428,800 bytes)."""

UploadSource: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | IO[bytes] | Image.Image"

_UPLOADABLE = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/bmp": "bmp",
    "image/tiff": "tiff",
}
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True, repr=False)
class UploadPayload:
    """The bytes to PUT, with the name and media type declared for them."""

    data: bytes
    filename: str
    mime_type: str

    def __repr__(self) -> str:
        return f"UploadPayload({self.filename!r}, {self.mime_type}, {len(self.data)} bytes)"


def read_upload(source: UploadSource, *, filename: str | None = None) -> UploadPayload:
    """Read ``source`` (a path, bytes, a binary file or a PIL image) into an upload payload.

    PIL images are encoded losslessly as PNG, so the retouch sees every original pixel.

    Raises
    ------
    InvalidImageError
        The bytes are empty or not an image format Runflow takes (JPEG, PNG, WebP, GIF,
        BMP, TIFF).
    ImageTooLargeError
        More than 50 MiB: host the file elsewhere and pass its HTTPS URL instead.
    """
    data, default_name = _read(source)
    if not data:
        raise InvalidImageError(f"{default_name} is empty: nothing to upload")
    mime = mime_type_for(data)
    extension = _UPLOADABLE.get(mime)
    if extension is None:
        raise InvalidImageError(
            f"{default_name} is {mime}, not an image Runflow takes: "
            "upload JPEG, PNG, WebP, GIF, BMP or TIFF"
        )
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageTooLargeError(
            f"{default_name} is larger than Runflow's 50 MiB upload limit: shrink or re-encode "
            "it (e.g. JPEG), or host it yourself and pass its HTTPS URL"
        )
    name = filename or default_name
    if "." not in name:
        name = f"{name}.{extension}"
    return UploadPayload(data, name[-500:], mime)


def check_upload_url(url: object) -> str:
    """The presigned URL from an upload session, if it is safe to PUT the bytes there.

    Only HTTPS is accepted, except plain HTTP on loopback (the embedded local backend).
    Error messages show the URL without its query string, where the credentials live.
    """
    if not isinstance(url, str) or not url:
        raise ConfigurationError(
            "the upload session came back without an upload_url; the server is not "
            "Runflow-compatible"
        )
    parts = urlsplit(url)
    if parts.scheme == "https" or (
        parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK_HOSTS
    ):
        return url
    raise ConfigurationError(
        f"refusing to upload to {redact_url(url)}: the presigned URL must be HTTPS"
    )


def _read(source: UploadSource) -> tuple[bytes, str]:
    """The bytes of ``source`` and a file name to declare for them."""
    if isinstance(source, Image.Image):
        return encode_image(source, "PNG"), "image.png"
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), "image"
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        if os.path.isdir(path):
            raise InvalidImageError(f"{path!r} is a folder, not an image file")
        try:
            with open(path, "rb") as handle:
                return handle.read(MAX_UPLOAD_BYTES + 1), os.path.basename(path)
        except FileNotFoundError:
            raise InvalidImageError(f"no file at {path!r}: check the path") from None
    if hasattr(source, "read"):
        data = source.read(MAX_UPLOAD_BYTES + 1)
        if not isinstance(data, bytes | bytearray):
            raise InvalidImageError(
                f"the file object gave {type(data).__name__}, not bytes: open it with 'rb'"
            )
        name = os.path.basename(str(getattr(source, "name", "") or "")) or "image"
        return bytes(data), name
    raise InvalidImageError(
        f"cannot upload a {type(source).__name__}: pass a path, bytes, a binary file object "
        "or a PIL.Image.Image"
    )
