"""``sf.upload_form``: pick a photo or paste a URL, retouch it, see before/after and the cost.

The Retouch button only starts a background thread and returns, so the kernel stays free
and the Cancel button stays clickable while the run is pending. The thread checks the file
(size, that it is an image), uploads it through ``client.upload`` from the kernel, submits
the run, polls it with a status line and a progress bar, and finally shows the comparison.
"""

from __future__ import annotations

import hashlib
import html
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as widgets

from skinfix_nb.display.comparison import Comparison
from skinfix_nb.display.markup import FONT, format_cost, format_duration
from skinfix_nb.display.pair import make_pair
from skinfix_nb.display.widgets_compat import UploadedFile, uploaded_files
from skinfix_nb.errors import (
    AuthenticationError,
    ImageTooLargeError,
    InvalidImageError,
    PermissionDeniedError,
    RunflowError,
)
from skinfix_nb.images import open_image
from skinfix_nb.models import Run
from skinfix_nb.upload import MAX_UPLOAD_BYTES

__all__ = ["UploadForm", "upload_form"]

_STEPS = 4  # checked, uploaded, submitted, finished
_RED = "#cf222e"


def upload_form(
    client: Any = None,
    *,
    max_bytes: int = MAX_UPLOAD_BYTES,
    timeout: float = 300.0,
    poll_interval: float = 0.5,
) -> UploadForm:
    """A form that retouches one image: file or URL in, before/after and cost out.

    Parameters
    ----------
    client : SkinFix, optional
        The client to use. Default: :func:`skinfix_nb.connect` on first use, which falls
        back to the embedded local backend (and says so) when no API key is set.
    max_bytes : int
        Largest file accepted (Runflow's limit is 50 MiB). Colab's widget channel carries
        only about 1 MB: pass a URL for larger files there.
    timeout : float
        Seconds to wait for the run before giving up (the run itself goes on).
    poll_interval : float
        Seconds between status checks.
    """
    return UploadForm(client, max_bytes=max_bytes, timeout=timeout, poll_interval=poll_interval)


@dataclass
class _Job:
    """One press of Retouch: what to send, and the switch that cancels it."""

    file: UploadedFile | None
    url: str | None
    cancel: threading.Event = field(default_factory=threading.Event)
    run: Run | None = None

    @property
    def key(self) -> str:
        """Same file or URL, same key: a second press shows the earlier result."""
        if self.file is not None:
            return "sha256:" + hashlib.sha256(self.file.content).hexdigest()
        return f"url:{self.url}"


class UploadForm(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no types
    """The widget :func:`upload_form` returns.

    Attributes
    ----------
    received : UploadedFile or None
        The last file read from the picker.
    run : Run or None
        The last run, as last seen.
    comparison : Comparison or None
        The before/after shown after a successful run.
    error : Exception or None
        What stopped the last attempt, if anything did.
    """

    def __init__(
        self,
        client: Any = None,
        *,
        max_bytes: int = MAX_UPLOAD_BYTES,
        timeout: float = 300.0,
        poll_interval: float = 0.5,
    ) -> None:
        self.client = client
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.received: UploadedFile | None = None
        self.run: Run | None = None
        self.comparison: Comparison | None = None
        self.error: Exception | None = None
        self._job: _Job | None = None
        self._done: dict[str, tuple[Run, Comparison]] = {}
        self._worker: threading.Thread | None = None
        self._source = "file"

        self.picker = widgets.FileUpload(accept="image/*", multiple=False, description="Image file")
        self.url = widgets.Text(
            placeholder="…or paste an image URL (https://…)", layout=widgets.Layout(width="28em")
        )
        self.retouch_button = widgets.Button(
            description="Retouch", button_style="primary", icon="magic"
        )
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True)
        self.status = widgets.HTML(
            f'<span style="{FONT}">Choose an image file or paste a URL.</span>'
        )
        self.progress = widgets.IntProgress(
            value=0, min=0, max=_STEPS, layout=widgets.Layout(visibility="hidden", width="16em")
        )
        self.result = widgets.HTML()
        self.notice = widgets.HTML()
        self.picker.observe(self._on_pick, names="value")
        self.url.observe(self._on_url, names="value")
        self.retouch_button.on_click(lambda _button: self.retouch())
        self.cancel_button.on_click(lambda _button: self.cancel())
        super().__init__(
            children=[
                widgets.HBox([self.picker, self.url]),
                widgets.HBox([self.retouch_button, self.cancel_button, self.progress]),
                self.notice,
                self.status,
                self.result,
            ]
        )

    @property
    def pending(self) -> bool:
        """True while a run is being checked, uploaded, submitted or waited for."""
        return self._worker is not None and self._worker.is_alive()

    def retouch(self) -> None:
        """Start retouching the picked file or the URL; returns at once."""
        if self.pending:
            self._say("A run is already pending: wait for it or press Cancel.")
            return
        job = self._new_job()
        if job is None:
            return
        earlier = self._done.get(job.key)
        if earlier is not None:
            self._show_again(earlier)
            return
        self._job = job
        self.run = self.comparison = self.error = None
        self.result.value = ""
        self._set_busy(busy=True)
        self._worker = threading.Thread(
            target=self._work, args=(job,), daemon=True, name="skinfix-upload-form"
        )
        self._worker.start()

    def cancel(self) -> None:
        """Stop the pending attempt; a submitted run is canceled at the server when allowed."""
        if self._job is not None and self.pending:
            self._job.cancel.set()
            self._say("Canceling…")

    def wait(self, timeout: float | None = None) -> Run | None:
        """Block until the pending attempt ends (for scripts and tests); return the run."""
        if self._worker is not None:
            self._worker.join(timeout)
        return self.run

    def _new_job(self) -> _Job | None:
        files = uploaded_files(self.picker.value)
        url = self.url.value.strip()
        if url and (self._source == "url" or not files):
            if not url.startswith(("https://", "http://")):
                self._say(f"{html.escape(url[:80])} is not an http(s) URL.", error=True)
                return None
            return _Job(file=None, url=url)
        if files:
            self.received = files[-1]
            return _Job(file=files[-1], url=None)
        self._say("Choose an image file or paste an image URL first.", error=True)
        return None

    def _on_pick(self, _change: dict[str, Any]) -> None:
        files = uploaded_files(self.picker.value)
        if files:
            self._source = "file"
            self.received = files[-1]
            self._say(
                f"Picked {html.escape(files[-1].name)} ({_size(files[-1].size)}). Press Retouch."
            )

    def _on_url(self, change: dict[str, Any]) -> None:
        if str(change["new"]).strip():
            self._source = "url"

    def _work(self, job: _Job) -> None:
        try:
            self._attempt(job)
        except RunflowError as exc:
            self.error = exc
            self._say(_explain(exc), error=True)
        except Exception as exc:  # the thread's edge: show it rather than lose it in a log
            self.error = exc
            self._say(
                f"Unexpected error: {type(exc).__name__}: {html.escape(str(exc))}", error=True
            )
        finally:
            self._set_busy(busy=False)

    def _attempt(self, job: _Job) -> None:
        if job.file is not None:
            self._check_file(job.file)
        self._step(1, "Connecting…")
        client = self._client()
        if self._stopped(job):
            return
        if job.file is not None:
            self._step(1, f"Uploading {html.escape(job.file.name)} ({_size(job.file.size)})…")
            image_url = client.upload(job.file.content, filename=job.file.name)
        else:
            assert job.url is not None
            image_url = job.url
        if self._stopped(job):
            return
        self._step(2, "Submitting…")
        job.run = self.run = client.submit(image_url)
        self._follow(job, client)

    def _check_file(self, file: UploadedFile) -> None:
        if file.size > self.max_bytes:
            raise ImageTooLargeError(
                f"{file.name} is {_size(file.size)}, more than the {_size(self.max_bytes)} "
                "limit: shrink it or paste a URL of the image instead"
            )
        open_image(file.content)  # raises InvalidImageError with what the bytes look like

    def _follow(self, job: _Job, client: Any) -> None:
        run = job.run
        assert run is not None
        started = time.monotonic()
        while not run.is_terminal:
            elapsed = time.monotonic() - started
            if job.cancel.is_set():
                self._cancel_at_server(job, client)
                return
            if elapsed > self.timeout:
                self._say(
                    f"Run <code>{html.escape(run.id or '')}</code> still {html.escape(run.status)} "
                    f"after {elapsed:.0f} s; it goes on at the server: "
                    f"<code>client.wait({run.id!r})</code> fetches it later.",
                    error=True,
                )
                return
            self._step(
                3,
                f"Run <code>{html.escape(run.id or '')}</code> {html.escape(run.status)} · {elapsed:.1f} s",
            )
            job.cancel.wait(self.poll_interval)
            run = self.run = client.get(run)
        self._finish(run, client)

    def _finish(self, run: Run, client: Any) -> None:
        facts = " · ".join(
            f for f in (format_cost(run.cost), format_duration(run.duration_ms)) if f
        )
        if not run.succeeded:
            reason = run.failure_message or run.failure_code or "no reason given"
            self._say(f"Run ended {html.escape(run.status)}: {html.escape(reason)}", error=True)
            return
        self.comparison = Comparison(make_pair(run, client=client))
        self.result.value = self.comparison._repr_html_()
        if self._job is not None:
            self._done[self._job.key] = (run, self.comparison)
        self._step(_STEPS, f"Done · {facts or 'cost not reported'}")

    def _show_again(self, earlier: tuple[Run, Comparison]) -> None:
        self.run, self.comparison = earlier
        self.error = None
        self.result.value = self.comparison._repr_html_()
        self._say(
            f"Already retouched as run <code>{html.escape(self.run.id or '')}</code>: shown "
            "again, not billed twice. Pick another image to retouch."
        )

    def _cancel_at_server(self, job: _Job, client: Any) -> None:
        assert job.run is not None
        try:
            self.run = client.cancel(job.run)
        except PermissionDeniedError:
            self._say(
                "Stopped waiting. This API key may not cancel runs, so the run goes on at "
                "Runflow (and is billed if it succeeds).",
                error=True,
            )
            return
        self._say(
            f"Canceled: run <code>{html.escape(job.run.id or '')}</code> is {html.escape(self.run.status)}."
        )

    def _stopped(self, job: _Job) -> bool:
        if job.cancel.is_set():
            self._say("Canceled before the run was submitted: nothing was billed.")
        return job.cancel.is_set()

    def _client(self) -> Any:
        if self.client is None:
            from skinfix_nb.client import connect, resolve_api_key

            if resolve_api_key() is None:
                self.notice.value = (
                    f'<span style="{FONT};color:#9a6700">No Runflow API key found (set '
                    "RUNFLOW_API_KEY or a Colab secret of that name): using the embedded local "
                    "backend, which retouches with skinfix_nb's own engine and bills nothing."
                    "</span>"
                )
                self.client = connect(local=True)
            else:
                self.client = connect()
        return self.client

    def _set_busy(self, *, busy: bool) -> None:
        self.retouch_button.disabled = busy
        self.cancel_button.disabled = not busy
        self.progress.layout.visibility = "visible" if busy else "hidden"
        if busy:
            self.progress.value = 0

    def _step(self, step: int, message: str) -> None:
        self.progress.value = step
        self._say(message)

    def _say(self, message: str, *, error: bool = False) -> None:
        colour = f"color:{_RED};" if error else ""
        self.status.value = f'<span style="{FONT};{colour}">{message}</span>'


def _explain(exc: RunflowError) -> str:
    """The status-line text for a failure: what happened and what to do."""
    if isinstance(exc, AuthenticationError):
        text = (
            "The API key was refused (401): check RUNFLOW_API_KEY, or pass "
            "client=sf.connect(api_key=...)."
        )
    elif isinstance(exc, ImageTooLargeError):
        text = f"Too big: {exc}"
    elif isinstance(exc, InvalidImageError):
        text = f"Not an image: {exc}"
    else:
        text = str(exc)
    return html.escape(text)


def _size(count: int) -> str:
    if count < 1024 * 1024:
        return f"{count / 1024:.0f} KB"
    return f"{count / (1024 * 1024):.1f} MB"
