"""Kernel-side image fetching: pooled HTTP, safe decoding, on-disk thumbnails, URL refresh."""

from __future__ import annotations

import dataclasses
import io
import struct
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

import skinfix_nb
from skinfix_nb import SkinFix
from skinfix_nb.display.comparison import compare
from skinfix_nb.display.fetch import ImageFetcher
from skinfix_nb.errors import APIError, ImageTooLargeError, InvalidImageError
from skinfix_nb.local import LocalServer
from skinfix_nb.models import Run
from tests.conftest import FAKE_KEY

SAMPLES = Path(skinfix_nb.__file__).parent / "samples"
PORTRAIT = SAMPLES / "grace_hopper.jpg"
with Image.open(PORTRAIT) as _portrait:
    PORTRAIT_SIZE = _portrait.size


class _ImageHost(BaseHTTPRequestHandler):
    """Serves one JPEG and remembers each request's headers."""

    body = PORTRAIT.read_bytes()
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def image_host() -> Iterator[str]:
    _ImageHost.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHost)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def client(fresh_server: LocalServer) -> Iterator[SkinFix]:
    with SkinFix(FAKE_KEY, base_url=fresh_server.url) as sf_client:
        yield sf_client


def file_gets(server: LocalServer) -> list[str]:
    return [r.path for r in server.requests if r.method == "GET" and r.path.startswith("/files/")]


def test_thumbnail_is_cached_by_url_without_query(
    fresh_server: LocalServer, tmp_path: Path
) -> None:
    url = fresh_server.serve_file(PORTRAIT)
    with ImageFetcher(cache_dir=tmp_path) as fetcher:
        first = fetcher.thumbnail(url, max_side=128)
        assert (first.width, first.height) == PORTRAIT_SIZE
        assert max(Image.open(io.BytesIO(first.data)).size) == 128
        assert len(file_gets(fresh_server)) == 1
        # another size is another entry
        fetcher.thumbnail(url, max_side=64)
        assert len(file_gets(fresh_server)) == 2
    # a re-signed URL for the same object: served from the disk cache, no download
    with ImageFetcher(cache_dir=tmp_path) as fetcher:
        again = fetcher.thumbnail(url + "&X-Amz-Date=later", max_side=128)
    assert again.data == first.data
    assert len(file_gets(fresh_server)) == 2


def test_image_requests_reuse_the_client_pool_without_the_api_key(
    client: SkinFix, image_host: str, tmp_path: Path
) -> None:
    fetcher = ImageFetcher(client=client, cache_dir=tmp_path)
    assert fetcher._http is client._http  # one connection pool per client
    fetcher.thumbnail(f"{image_host}/face.jpg?sig=abc", max_side=64)
    assert len(_ImageHost.seen) == 1
    assert "authorization" not in _ImageHost.seen[0]
    assert FAKE_KEY not in str(_ImageHost.seen[0])


class CountingClient:
    """The real client, with a count of the runs it was asked to read."""

    def __init__(self, inner: SkinFix) -> None:
        self._http = inner._http
        self._inner = inner
        self.reads: list[str] = []

    def get(self, run_id: str) -> Run:
        self.reads.append(run_id)
        return self._inner.get(run_id)


def test_expired_output_url_is_refreshed_once_through_the_run(
    fresh_server: LocalServer, client: SkinFix
) -> None:
    run = client.run(client.upload(PORTRAIT))
    assert run.output_url is not None
    expired = dataclasses.replace(run, output_url=run.output_url.split("?")[0] + "?sig=expired")
    counting = CountingClient(client)
    fresh_server.clear_requests()

    view = compare(expired, client=counting)

    assert counting.reads == [run.id]  # one read of the run, for a fresh URL
    files = [r.status for r in fresh_server.requests if r.path.startswith("/files/")]
    assert files.count(403) == 1
    assert files[-1] == 200
    assert view.after is not None
    assert (view.after.width, view.after.height) == PORTRAIT_SIZE


def test_expired_url_without_a_client_says_what_to_do(fresh_server: LocalServer) -> None:
    url = fresh_server.serve_file(PORTRAIT).split("?")[0] + "?sig=expired"
    with ImageFetcher() as fetcher, pytest.raises(APIError, match="expired.*Pass client=") as info:
        fetcher.fetch_bytes(url)
    assert info.value.status_code == 403
    assert "sig=expired" not in str(info.value)  # presigned query strings stay out of messages


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size: a decoder that trusts it would allocate gigabytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def test_decompression_bombs_and_non_images_are_refused(tmp_path: Path) -> None:
    fetcher = ImageFetcher(cache_dir=tmp_path)
    with pytest.raises(ImageTooLargeError, match="pixels"):
        fetcher.thumbnail(png_header_only(40_000, 40_000))
    with pytest.raises(InvalidImageError, match="not an image"):
        fetcher.thumbnail(b"<html>login</html>")
    assert list(tmp_path.iterdir()) == []


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    picture = Image.new("RGB", (200, 100), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    path = tmp_path / "rotated.jpg"
    picture.save(path, exif=exif.tobytes())
    thumb = ImageFetcher(cache_dir=tmp_path / "cache").thumbnail(path, max_side=50)
    assert (thumb.width, thumb.height) == (100, 200)
    assert Image.open(io.BytesIO(thumb.data)).size == (25, 50)


def test_downloads_are_capped(fresh_server: LocalServer) -> None:
    url = fresh_server.serve_file(PORTRAIT)
    with ImageFetcher(max_bytes=1000) as fetcher, pytest.raises(ImageTooLargeError, match="1,000"):
        fetcher.fetch_bytes(url)


def test_data_uris_and_paths_are_read_without_http(tmp_path: Path) -> None:
    fetcher = ImageFetcher(cache_dir=tmp_path)
    from_path = fetcher.thumbnail(PORTRAIT, max_side=100)
    from_uri = fetcher.thumbnail(from_path.data_uri, max_side=100)
    assert (from_uri.width, from_uri.height) == Image.open(io.BytesIO(from_path.data)).size
    with pytest.raises(InvalidImageError, match="comma"):
        fetcher.fetch_bytes("data:image/png;base64")
