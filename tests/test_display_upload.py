"""The upload form against the embedded server, driven the way the browser drives it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import skinfix_nb
from skinfix_nb import SkinFix
from skinfix_nb.display.upload import UploadForm, upload_form
from skinfix_nb.errors import AuthenticationError, ImageTooLargeError, InvalidImageError
from skinfix_nb.local import LocalServer
from tests.conftest import FAKE_KEY
from tests.test_display_compat import browser_upload_state

PORTRAIT = Path(skinfix_nb.__file__).parent / "samples" / "luispedro.jpg"


@pytest.fixture
def client(server: LocalServer) -> Iterator[SkinFix]:
    with SkinFix(FAKE_KEY, base_url=server.url) as sf_client:
        yield sf_client


def pick(form: UploadForm, name: str, data: bytes) -> None:
    form.picker.set_state(browser_upload_state(name, data))


def test_picked_file_is_uploaded_retouched_and_compared(
    client: SkinFix, server: LocalServer
) -> None:
    form = upload_form(client, poll_interval=0.05)
    data = PORTRAIT.read_bytes()
    pick(form, "face.jpg", data)
    assert "Picked face.jpg" in form.status.value

    form.retouch_button.click()
    # the handler only scheduled the work: the form is pending and Cancel is live
    assert form.pending
    assert form.retouch_button.disabled
    assert not form.cancel_button.disabled
    assert form.progress.layout.visibility == "visible"

    run = form.wait(60)
    assert run is not None
    assert run.status == "succeeded"
    assert form.error is None
    assert form.received is not None
    assert form.received.content == data
    assert "skinfix-compare" in form.result.value
    assert "Done · $0.12" in form.status.value
    assert form.progress.layout.visibility == "hidden"
    assert form.cancel_button.disabled
    uploads = [r for r in server.requests if r.method == "PUT"]
    assert uploads  # the bytes went through client.upload from the kernel

    # the same file again: the earlier result comes back, nothing is submitted or billed
    runs_before = len(server.runs())
    form.retouch_button.click()
    assert not form.pending
    assert form.run == run
    assert "not billed twice" in form.status.value
    assert len(server.runs()) == runs_before


def test_url_input_is_used_when_typed_last(client: SkinFix, server: LocalServer) -> None:
    form = upload_form(client, poll_interval=0.05)
    pick(form, "face.jpg", PORTRAIT.read_bytes())
    form.url.value = server.serve_file(PORTRAIT)
    form.retouch()
    run = form.wait(60)
    assert run is not None
    assert run.image_url == form.url.value
    assert "skinfix-compare" in form.result.value


@pytest.mark.parametrize(
    ("setup", "message", "error"),
    [
        (
            lambda f: pick(f, "notes.txt", b"just some text, not a picture"),
            "Not an image",
            InvalidImageError,
        ),
        (
            lambda f: pick(f, "huge.jpg", PORTRAIT.read_bytes()),
            "Too big: huge.jpg is 22 KB",
            ImageTooLargeError,
        ),
    ],
    ids=["not-an-image", "too-big"],
)
def test_bad_files_get_a_clear_message_and_no_run(
    client: SkinFix,
    server: LocalServer,
    setup: Callable[[UploadForm], None],
    message: str,
    error: type[Exception],
) -> None:
    form = upload_form(client, max_bytes=10_000)
    runs_before = len(server.runs())
    setup(form)
    form.retouch()
    assert form.wait(30) is None
    assert isinstance(form.error, error)
    assert message in form.status.value
    assert "color:#cf222e" in form.status.value
    assert len(server.runs()) == runs_before


def test_refused_key_says_so_without_showing_it(server: LocalServer) -> None:
    with SkinFix("rf_live_WRONGKEY999", base_url=server.url) as wrong:
        form = upload_form(wrong)
        pick(form, "face.jpg", PORTRAIT.read_bytes())
        form.retouch()
        form.wait(30)
    assert isinstance(form.error, AuthenticationError)
    assert "API key was refused" in form.status.value
    assert "WRONGKEY" not in form.status.value


def test_missing_key_falls_back_to_the_local_backend_and_says_so() -> None:
    form = upload_form(poll_interval=0.05)
    pick(form, "face.jpg", PORTRAIT.read_bytes())
    form.retouch()
    try:
        run = form.wait(60)
        assert run is not None
        assert run.status == "succeeded"
        assert isinstance(form.client, SkinFix)
        assert "No Runflow API key found" in form.notice.value
        assert "local backend" in form.notice.value
    finally:
        if form.client is not None:
            form.client.close()


def test_no_input_and_bad_url_are_explained(client: SkinFix) -> None:
    form = upload_form(client)
    form.retouch()
    assert "Choose an image file or paste an image URL first" in form.status.value
    assert not form.pending
    form.url.value = "ftp://example.org/face.jpg"
    form.retouch()
    assert "is not an http(s) URL" in form.status.value
    assert not form.pending


def test_cancel_stays_clickable_and_cancels_the_pending_run(fresh_server: LocalServer) -> None:
    fresh_server.set_faults(latency=30.0)
    with SkinFix(FAKE_KEY, base_url=fresh_server.url) as slow:
        form = upload_form(slow, poll_interval=0.05)
        pick(form, "face.jpg", PORTRAIT.read_bytes())
        form.retouch()
        while form.run is None and form.pending:  # wait until the run is submitted
            form.wait(0.05)
        form.cancel_button.click()
        run = form.wait(30)
    assert run is not None
    assert run.status == "canceled"
    assert "Canceled: run" in form.status.value
    assert fresh_server.billed_usd() == 0
