"""Safe image decoding: formats, orientation, limits, and clear errors for bad input."""

from __future__ import annotations

import base64
import io
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from skinfix_nb import samples
from skinfix_nb.errors import ImageTooLargeError, InvalidImageError
from skinfix_nb.images import (
    MAX_IMAGE_PIXELS,
    encode_image,
    mime_type_for,
    open_image,
    thumbnail,
    to_data_uri,
)


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _marked() -> Image.Image:
    """40 x 20, red on the left half, blue on the right: orientation shows in the pixels."""
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))
    return image


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    data = _encoded(_marked(), "JPEG", exif=exif, quality=95)

    image = open_image(data)

    assert image.size == (20, 40)
    top, bottom = np.asarray(image)[2, 10], np.asarray(image)[37, 10]
    assert top[0] > 200
    assert top[2] < 60
    assert bottom[2] > 200
    assert bottom[0] < 60
    assert image.getexif().get(0x0112, 1) == 1


@pytest.mark.parametrize(
    ("fmt", "mode", "expected_mode"),
    [
        ("JPEG", "RGB", "RGB"),
        ("PNG", "RGB", "RGB"),
        ("WEBP", "RGB", "RGB"),
        ("PNG", "RGBA", "RGBA"),
        ("WEBP", "RGBA", "RGBA"),
        ("PNG", "L", "L"),
        ("JPEG", "L", "L"),
        ("PNG", "LA", "RGBA"),
        ("PNG", "P", "RGB"),
        ("GIF", "P", "RGB"),
        ("BMP", "RGB", "RGB"),
        ("TIFF", "RGB", "RGB"),
        ("JPEG", "CMYK", "RGB"),
        ("PNG", "I;16", "L"),
        ("PNG", "1", "L"),
    ],
)
def test_formats_and_modes_come_back_as_rgb_rgba_or_l(
    fmt: str, mode: str, expected_mode: str
) -> None:
    source = Image.new(mode, (16, 12))
    image = open_image(_encoded(source, fmt))
    assert (image.mode, image.size) == (expected_mode, (16, 12))


def test_alpha_survives_decoding() -> None:
    rgba = Image.new("RGBA", (8, 8), (10, 20, 30, 0))
    rgba.putpixel((3, 3), (10, 20, 30, 200))
    alpha = np.asarray(open_image(_encoded(rgba, "PNG")))[..., 3]
    assert alpha[3, 3] == 200
    assert alpha[0, 0] == 0


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    grey = Image.fromarray(np.full((4, 4), 65535 // 2, np.uint16))
    assert abs(int(np.asarray(open_image(_encoded(grey, "PNG"))).mean()) - 128) <= 1


def test_icc_profile_is_kept_and_reencoded() -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = _encoded(Image.new("RGB", (8, 8)), "JPEG", icc_profile=icc)
    image = open_image(data)
    assert image.info["icc_profile"] == icc
    assert Image.open(io.BytesIO(encode_image(image, "PNG"))).info["icc_profile"] == icc


@pytest.mark.parametrize("kind", ["path", "str", "bytes", "file", "pil", "array"])
def test_every_source_kind(kind: str, tmp_path: Path) -> None:
    source_image = Image.new("RGB", (9, 7), (1, 2, 3))
    data = _encoded(source_image, "PNG")
    path = tmp_path / "x.png"
    path.write_bytes(data)
    source = {
        "path": path,
        "str": str(path),
        "bytes": data,
        "file": io.BytesIO(data),
        "pil": source_image,
        "array": np.asarray(source_image),
    }[kind]
    image = open_image(source)  # type: ignore[arg-type]
    assert image.size == (9, 7)
    assert image.getpixel((0, 0)) == (1, 2, 3)


def test_a_pil_image_is_copied_not_changed() -> None:
    original = Image.new("RGB", (4, 4))
    assert open_image(original) is not original


@pytest.mark.parametrize("size", [(1, 1), (8, 8)])
def test_tiny_images(size: tuple[int, int]) -> None:
    assert open_image(_encoded(Image.new("RGB", size), "PNG")).size == size


def test_pixel_limit_is_checked_before_decoding() -> None:
    data = _encoded(Image.new("RGB", (200, 100)), "PNG")
    with pytest.raises(ImageTooLargeError, match=r"200x100 = 20,000 pixels.*limit of 19,999"):
        open_image(data, max_pixels=19_999)
    assert open_image(data, max_pixels=20_000).size == (200, 100)
    assert MAX_IMAGE_PIXELS == 100_000_000


def test_a_decompression_bomb_header_is_refused() -> None:
    # a valid PNG header claiming 30000 x 30000 pixels, with almost no data behind it
    png = _encoded(Image.new("L", (1, 1)), "PNG")
    ihdr = b"IHDR" + (30000).to_bytes(4, "big") * 2 + png[24:29]
    bomb = png[:12] + ihdr + zlib.crc32(ihdr).to_bytes(4, "big") + png[33:]
    with pytest.raises(ImageTooLargeError, match="downscale"):
        open_image(bomb, max_pixels=10_000_000)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, this is text", "plain text"),
        (b"<!DOCTYPE html><html><body>Forbidden</body></html>", "HTML page"),
        (b'{"error": "expired"}', "JSON"),
        (b"%PDF-1.7 ...", "application/pdf"),
        (bytes(range(256)), "unrecognised binary"),
    ],
)
def test_non_images_raise_clear_errors(data: bytes, message: str) -> None:
    with pytest.raises(InvalidImageError, match=message):
        open_image(data)


def test_truncated_jpeg_raises() -> None:
    data = samples.path("grace_hopper").read_bytes()
    with pytest.raises(InvalidImageError, match="corrupt or truncated"):
        open_image(data[: len(data) // 2])


def test_corrupt_png_raises() -> None:
    data = bytearray(samples.path("astronaut").read_bytes())
    data[5000:5400] = bytes(400)  # zeroes over compressed pixel data
    with pytest.raises(InvalidImageError, match="corrupt or truncated|damaged"):
        open_image(bytes(data))


def test_zero_byte_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InvalidImageError, match=r"empty\.jpg' is empty"):
        open_image(empty)
    with pytest.raises(InvalidImageError, match="no image file at"):
        open_image(tmp_path / "missing.jpg")
    with pytest.raises(InvalidImageError, match="is a folder"):
        open_image(tmp_path)


def test_unsupported_format_is_refused() -> None:
    with pytest.raises(InvalidImageError, match="JPEG, PNG, WebP"):
        open_image(_encoded(Image.new("RGB", (4, 4)), "PPM"))


def test_wrong_source_types() -> None:
    with pytest.raises(InvalidImageError, match="cannot read an image from int"):
        open_image(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidImageError, match="binary mode"):
        open_image(io.StringIO("text"))  # type: ignore[arg-type]
    with pytest.raises(InvalidImageError, match="dtype float64"):
        open_image(np.zeros((4, 4, 3)))  # type: ignore[arg-type]


def test_thumbnail_is_rgb_and_never_upscales() -> None:
    rgba = Image.new("RGBA", (1000, 500), (0, 0, 0, 0))
    small = thumbnail(rgba, 100)
    assert (small.mode, small.size) == ("RGB", (100, 50))
    assert small.getpixel((5, 5)) == (255, 255, 255)  # transparency laid on white
    assert thumbnail(Image.new("L", (30, 20)), 512).size == (30, 20)


def test_encode_image_flattens_alpha_for_jpeg_and_keeps_it_for_png() -> None:
    rgba = Image.new("RGBA", (6, 6), (255, 0, 0, 128))
    assert Image.open(io.BytesIO(encode_image(rgba, "JPEG"))).mode == "RGB"
    assert Image.open(io.BytesIO(encode_image(rgba, "png"))).mode == "RGBA"
    with pytest.raises(ValueError, match="choose 'JPEG', 'PNG' or 'WEBP'"):
        encode_image(rgba, "GIF")


def test_data_uri_holds_a_small_decodable_image() -> None:
    uri = to_data_uri(samples.path("astronaut"), max_side=64)
    head, payload = uri.split(",", 1)
    assert head == "data:image/jpeg;base64"
    assert Image.open(io.BytesIO(base64.b64decode(payload))).size == (64, 64)
    assert to_data_uri(Image.new("RGB", (4, 4)), "WEBP").startswith("data:image/webp;base64,")


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [
        ("JPEG", "image/jpeg"),
        ("PNG", "image/png"),
        ("WEBP", "image/webp"),
        ("GIF", "image/gif"),
        ("BMP", "image/bmp"),
        ("TIFF", "image/tiff"),
    ],
)
def test_mime_type_is_sniffed_from_bytes(fmt: str, mime: str) -> None:
    assert mime_type_for(_encoded(Image.new("RGB", (4, 4)), fmt)) == mime


def test_mime_type_of_non_images() -> None:
    assert mime_type_for(b"<html><body>") == "text/html"
    assert mime_type_for(b"\x00\x01\x02") == "application/octet-stream"
    assert mime_type_for(b"") == "application/octet-stream"
