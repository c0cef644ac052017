"""Safe image I/O shared by the engine, the local server, the display helpers and QA.

Every image that enters the toolkit goes through :func:`open_image`: it accepts only a
short list of formats, refuses decompression bombs after reading the header and before
decoding, decodes fully (so a truncated file fails here, not later), applies the EXIF
orientation and hands back a detached image in mode ``RGB``, ``RGBA`` or ``L`` with its
ICC profile kept in ``image.info["icc_profile"]``.
"""

from __future__ import annotations

import base64
import io
import os
import warnings
from typing import IO, TypeAlias

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from skinfix_nb.errors import ImageTooLargeError, InvalidImageError

__all__ = [
    "ALLOWED_FORMATS",
    "MAX_IMAGE_PIXELS",
    "ImageSource",
    "encode_image",
    "mime_type_for",
    "open_image",
    "thumbnail",
    "to_data_uri",
]

MAX_IMAGE_PIXELS = 100_000_000
"""Largest image (width x height) :func:`open_image` decodes: about 10,000 x 10,000."""

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
"""Pillow format names :func:`open_image` will decode; everything else is refused."""

ImageSource: TypeAlias = (
    str | os.PathLike[str] | bytes | bytearray | IO[bytes] | Image.Image | NDArray[np.uint8]
)

_SUPPORTED = "JPEG, PNG, WebP, GIF, BMP or TIFF"
_ENCODABLE = {"JPEG": "JPEG", "JPG": "JPEG", "PNG": "PNG", "WEBP": "WEBP"}
_MIME_BY_FORMAT = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}

# (offset, magic bytes, mime type): enough to name what arrived, image or not.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (8, b"WEBP", "image/webp"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"BM", "image/bmp"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (4, b"ftypavif", "image/avif"),
    (4, b"ftypheic", "image/heic"),
    (4, b"ftypmif1", "image/heif"),
    (0, b"%PDF", "application/pdf"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
)


def mime_type_for(data: bytes) -> str:
    """Sniff the media type of ``data`` from its first bytes.

    Servers often label images ``application/octet-stream`` (or lie), so the toolkit
    trusts the bytes, not the header. Returns ``"application/octet-stream"`` when the
    bytes match no known signature, ``"text/html"`` or ``"text/plain"`` for text.
    """
    head = bytes(data[:64])
    for offset, magic, mime in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            if magic == b"WEBP" and not head.startswith(b"RIFF"):
                continue
            return mime
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "text/html"
    if text.startswith((b"<?xml", b"<svg")):
        return "image/svg+xml" if b"<svg" in bytes(data[:1024]).lower() else "application/xml"
    if text.startswith((b"{", b"[")):
        return "application/json"
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "text/plain"
    return "application/octet-stream"


def open_image(source: ImageSource, *, max_pixels: int | None = None) -> Image.Image:
    """Decode an image safely and return it upright in mode ``RGB``, ``RGBA`` or ``L``.

    Parameters
    ----------
    source : path, bytes, binary file object, PIL.Image.Image or uint8 array
        Where the image comes from. A PIL image is copied, never changed in place. An
        array is H x W (grey), H x W x 3 (RGB) or H x W x 4 (RGBA), dtype uint8.
    max_pixels : int, optional
        Refuse images with more pixels than this (default :data:`MAX_IMAGE_PIXELS`).
        Checked from the header, before any pixel is decoded.

    Returns
    -------
    PIL.Image.Image
        A fully loaded image, EXIF orientation applied, ICC profile kept in
        ``info["icc_profile"]``. Palette and two-channel images become ``RGB``/``RGBA``,
        CMYK becomes ``RGB`` (its CMYK profile is dropped), 1-bit and 16-bit grey
        become ``L``.

    Raises
    ------
    InvalidImageError
        Empty, corrupt, truncated, not an image, or a format outside :data:`ALLOWED_FORMATS`.
    ImageTooLargeError
        More pixels than ``max_pixels``.
    """
    limit = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if limit < 1:
        raise ValueError(f"max_pixels must be a positive pixel count, got {max_pixels!r}")
    if isinstance(source, np.ndarray):
        source = _from_array(source)
    if isinstance(source, Image.Image):
        _check_pixels(source.size, limit)
        image = _load(source, "the given PIL image")
        return _normalise(image)
    data, name = _read_bytes(source)
    image = _decode(data, name, limit)
    return _normalise(image)


def thumbnail(image: Image.Image, max_side: int = 512) -> Image.Image:
    """A reduced ``RGB`` copy whose longest side is at most ``max_side`` (never upscaled).

    Transparent areas are laid on white, so a thumbnail of a cut-out looks as it would on a
    page. The ICC profile is kept, so colour-managed viewers show the same colours.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1 pixel, got {max_side}")
    small = image.copy()
    small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return _to_rgb(small)


def encode_image(image: Image.Image, format: str = "JPEG", *, quality: int = 85) -> bytes:
    """Encode ``image`` as JPEG, PNG or WebP bytes, keeping its ICC profile.

    JPEG has no alpha channel, so ``RGBA`` images are laid on white first; PNG and WebP keep
    alpha. ``quality`` (1-100) applies to JPEG and WebP.
    """
    target = _ENCODABLE.get(format.upper())
    if target is None:
        raise ValueError(f"cannot encode as {format!r}: choose 'JPEG', 'PNG' or 'WEBP'")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be between 1 and 100, got {quality}")
    if target == "JPEG":
        image = _to_rgb(image) if image.mode not in ("RGB", "L") else image
    elif image.mode not in ("RGB", "RGBA", "L"):
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    options: dict[str, object] = {}
    icc = image.info.get("icc_profile")
    if icc:
        options["icc_profile"] = icc
    if target in ("JPEG", "WEBP"):
        options["quality"] = quality
    buffer = io.BytesIO()
    image.save(buffer, format=target, **options)
    return buffer.getvalue()


def to_data_uri(
    image: ImageSource, format: str = "JPEG", *, max_side: int = 512, quality: int = 80
) -> str:
    """A ``data:`` URI holding a thumbnail of ``image``, for HTML that must stay self-contained.

    Notebooks keep such URIs in their outputs, so the picture survives the expiry of a
    presigned URL; ``max_side`` keeps the notebook small.
    """
    target = _ENCODABLE.get(format.upper())
    if target is None:
        raise ValueError(f"cannot encode as {format!r}: choose 'JPEG', 'PNG' or 'WEBP'")
    picture = image if isinstance(image, Image.Image) else open_image(image)
    data = encode_image(thumbnail(picture, max_side), target, quality=quality)
    return f"data:{_MIME_BY_FORMAT[target]};base64,{base64.b64encode(data).decode('ascii')}"


def _from_array(array: NDArray[np.uint8]) -> Image.Image:
    channels = 1 if array.ndim == 2 else array.shape[-1] if array.ndim == 3 else 0
    if array.dtype != np.uint8 or channels not in (1, 3, 4):
        raise InvalidImageError(
            f"cannot use an array of shape {array.shape} and dtype {array.dtype} as an image: "
            "pass uint8 H x W (grey), H x W x 3 (RGB) or H x W x 4 (RGBA)"
        )
    return Image.fromarray(
        np.ascontiguousarray(array.reshape(array.shape[:2]) if channels == 1 else array)
    )


def _read_bytes(source: object) -> tuple[bytes, str]:
    """The raw bytes of ``source`` and a short name for messages."""
    if isinstance(source, bytes | bytearray):
        return bytes(source), "the given bytes"
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        try:
            with open(path, "rb") as handle:
                return handle.read(), repr(path)
        except FileNotFoundError:
            raise InvalidImageError(f"no image file at {path!r}: check the path") from None
        except IsADirectoryError:
            raise InvalidImageError(f"{path!r} is a folder, not an image file") from None
        except OSError as exc:
            raise InvalidImageError(f"cannot read {path!r}: {exc.strerror or exc}") from exc
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, bytes | bytearray):
            raise InvalidImageError(
                f"the file object gave {type(data).__name__}, not bytes: open it in binary mode ('rb')"
            )
        return bytes(data), "the given file object"
    raise InvalidImageError(
        f"cannot read an image from {type(source).__name__}: pass a path, bytes, "
        "a binary file object, a PIL.Image.Image or a uint8 array"
    )


def _decode(data: bytes, name: str, limit: int) -> Image.Image:
    if not data:
        raise InvalidImageError(f"{name} is empty (0 bytes): there is no image to read")
    try:
        # Pillow warns above its own, lower limit; ours is the one that applies here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(
            f"{name} is too large to decode safely ({exc}); downscale it first"
        ) from None
    except UnidentifiedImageError:
        raise InvalidImageError(_not_an_image_message(data, name)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageError(
            f"{name} is truncated or its header is damaged ({exc}); download or export it again"
        ) from None
    _check_pixels(image.size, limit)
    return _load(image, name)


def _check_pixels(size: tuple[int, int], limit: int) -> None:
    width, height = size
    if width * height > limit:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height:,} pixels, more than the limit of "
            f"{limit:,}; downscale it first (or pass a larger max_pixels= if you trust the source)"
        )
    if width < 1 or height < 1:
        raise InvalidImageError(f"image has no pixels ({width}x{height})")


def _load(image: Image.Image, name: str) -> Image.Image:
    """Decode every pixel now (first frame only), so damage shows here as a clear error."""
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        detail = str(exc) or type(exc).__name__
        raise InvalidImageError(
            f"{name} is corrupt or truncated ({detail}); download or export it again"
        ) from None
    return image


def _not_an_image_message(data: bytes, name: str) -> str:
    kind = mime_type_for(data)
    if kind.startswith("image/") and kind not in ("image/svg+xml",):
        return (
            f"{name} looks like {kind}, which cannot be decoded here, or its header is "
            f"damaged; convert it to {_SUPPORTED}"
        )
    what = {
        "text/html": "an HTML page (a login or error page instead of the image?)",
        "application/json": "JSON text (an API error instead of the image?)",
        "text/plain": "plain text",
        "image/svg+xml": "an SVG drawing",
        "application/octet-stream": "unrecognised binary data",
    }.get(kind, kind)
    return f"{name} is not an image: it looks like {what}; expected {_SUPPORTED}"


def _normalise(image: Image.Image) -> Image.Image:
    """Upright, detached copy in ``RGB``, ``RGBA`` or ``L``; profile kept when it still applies."""
    try:
        upright = ImageOps.exif_transpose(image) or image
    except (OSError, SyntaxError, ValueError, KeyError, TypeError):
        upright = image.copy()  # unreadable EXIF: keep the pixels as stored
    mode = upright.mode
    if mode in ("RGB", "RGBA", "L"):
        return upright
    if mode in ("1",):
        return upright.convert("L")
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_l(upright)
    if mode in ("LA", "La", "PA", "RGBa") or upright.has_transparency_data:
        converted = upright.convert("RGBA")
    else:
        converted = upright.convert("RGB")
    if mode in ("CMYK", "LAB", "HSV", "YCbCr"):
        # the embedded profile describes the old colour space, not these RGB values
        converted.info.pop("icc_profile", None)
    return converted


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit or float grey into 0-255 instead of clipping it."""
    values = np.asarray(image, dtype=np.float64)
    peak = float(values.max()) if values.size else 0.0
    if image.mode == "F":
        scale = 255.0 if peak <= 1.0 else 255.0 / peak
    else:
        scale = 255.0 / 65535.0 if peak > 255 else 1.0
    grey = Image.fromarray(np.clip(values * scale + 0.5, 0, 255).astype(np.uint8))
    grey.info.update({k: v for k, v in image.info.items() if k == "icc_profile"})
    return grey


def _to_rgb(image: Image.Image) -> Image.Image:
    """``RGB`` with transparency laid on white; an RGB ICC profile travels along."""
    if image.mode == "RGB":
        return image
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
    else:
        flat = image.convert("RGB")
    icc = image.info.get("icc_profile")
    if icc and image.mode in ("RGBA", "P", "PA"):
        flat.info["icc_profile"] = icc
    else:  # a grey or CMYK profile does not describe RGB values
        flat.info.pop("icc_profile", None)
    return flat
