"""Run notebooks for real in JupyterLab 4 + headless Chromium, and look at their widgets.

Small API (everything a notebook test needs)::

    from tests.browser.jupyterlab import JupyterLab, artifacts_dir

    with JupyterLab(files=[notebook_path]) as lab:      # server on a free 127.0.0.1 port
        with lab.page() as page:                          # Chromium tab, a LabPage
            page.open("upload_form.ipynb")               # open with the python3 kernel
            page.run_all()                                # Run All, wait until settled
            assert page.problems() == []                  # error outputs, widget errors
            page.screenshot_widgets("upload")             # PNGs into artifacts_dir()
            page.pick_file("photo.jpg")                   # through the browser's file chooser
            page.click_button("Retouch")
            page.wait_for_kernel("form.run is not None")  # poll a Python expression
            page.kernel("print(form.run.status)")         # -> "succeeded\\n"

* ``require_browser()`` skips the calling test when ``/usr/bin/chromium``, Playwright or
  JupyterLab is missing, and fails it instead when ``SKINFIX_REQUIRE_BROWSER=1`` (CI);
  ``missing_requirements()`` gives the reason, or None.
* ``JupyterLab(files=..., env=None)`` copies ``files`` into a fresh root folder,
  starts ``python -m jupyterlab`` with isolated settings (``windowingMode: none`` so every
  cell renders, no news or update checks, no autosave), ``--allow-root`` when run as root,
  XSRF checks off so shutdown can be POSTed (loopback only, no token). The kernel inherits
  ``env`` (e.g. ``SKINFIX_NB_HOME``). ``stop()`` shuts kernels down and kills leftovers.
* ``artifacts_dir()`` is ``$SKINFIX_ARTIFACTS`` or ``./artifacts/browser``.

Traps handled here (see the jupyter-e2e notes): ipywidgets 8's FileUpload keeps its file
input detached, so files go through ``page.expect_file_chooser``; widget outputs carry no
MIME attribute, so model output *i* is matched with the *i*-th output node; ipykernel 7 may
report ``idle`` while a cell runs, so ``[*]`` prompts are checked too; a kernel restart
during the run is an error.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
BAD_TEXTS = ("Error displaying widget", "Error rendering output item")
LOADING_TEXT = "Loading widget..."

_LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/extensionmanager-extension/plugin.jupyterlab-settings": {"enabled": False},
}


def missing_requirements(*, chromium: Path = CHROMIUM) -> str | None:
    """Why browser tests cannot run on this machine, or None when they can."""
    if not chromium.exists():
        return f"no Chromium at {chromium} (apt-get install chromium)"
    # installed distributions, not importable names: a test folder on sys.path could shadow those
    for distribution, requirement in (
        ("playwright", "playwright"),
        ("jupyterlab", "jupyterlab>=4"),
    ):
        try:
            version(distribution)
        except PackageNotFoundError:
            return f"{distribution} is not installed (pip install '{requirement}')"
    return None


def require_browser(*, chromium: Path = CHROMIUM, environ: Mapping[str, str] = os.environ) -> None:
    """Skip the calling test when the browser stack is missing; fail instead in CI.

    ``SKINFIX_REQUIRE_BROWSER=1`` (set by CI) turns the skip into a failure, so a broken
    set-up cannot pass as green.
    """
    reason = missing_requirements(chromium=chromium)
    if reason is None:
        return
    if environ.get("SKINFIX_REQUIRE_BROWSER") == "1":
        pytest.fail(f"SKINFIX_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def artifacts_dir() -> Path:
    """Where screenshots and server logs go: ``$SKINFIX_ARTIFACTS`` or ./artifacts/browser."""
    folder = Path(os.environ.get("SKINFIX_ARTIFACTS") or "artifacts/browser").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class JupyterLab:
    """A JupyterLab server in its own process group, on a free loopback port."""

    def __init__(
        self,
        *,
        files: Iterable[str | os.PathLike[str]] = (),
        env: dict[str, str] | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="skinfix-lab-")
        state = Path(self._tmp.name)
        self.root = state / "root"
        self.root.mkdir()
        for file in files:
            shutil.copy2(file, self.root / Path(file).name)
        self._state = state
        self._env = env or {}
        self._startup_timeout = startup_timeout
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = artifacts_dir() / f"jupyterlab-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> JupyterLab:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server and wait until ``/api/status`` answers."""
        settings = self._state / "settings"
        for name, values in _LAB_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = {
            **os.environ,
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(self._state / "workspaces"),
            "JUPYTER_RUNTIME_DIR": str(self._state / "runtime"),
            "JUPYTER_CONFIG_DIR": str(self._state / "config"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "PYTHONUNBUFFERED": "1",
            **self._env,
        }
        command = [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0", "--IdentityProvider.token=",
            "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={self.root}",
            "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]  # fmt: skip
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")  # CI runs as root; the server refuses otherwise
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                command, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"JupyterLab exited ({self._process.returncode}); see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(self.url + "/api/status", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(
            f"JupyterLab did not answer within {self._startup_timeout} s; see {self.log_path}"
        )

    def stop(self) -> None:
        """Shut the server and its kernels down; kill whatever is left of its process group."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                try:
                    request = urllib.request.Request(
                        self.url + "/api/shutdown", method="POST", data=b""
                    )
                    urllib.request.urlopen(request, timeout=5).close()
                    process.wait(20)
                except (OSError, subprocess.TimeoutExpired):
                    _kill_group(process.pid, signal.SIGTERM)
                    try:
                        process.wait(5)
                    except subprocess.TimeoutExpired:
                        _kill_group(process.pid, signal.SIGKILL)
                        process.wait(5)
            _kill_group(process.pid, signal.SIGKILL)  # kernels share the group
        self._tmp.cleanup()

    @contextmanager
    def page(
        self, *, width: int = 1280, height: int = 900, timeout: float = 120.0
    ) -> Iterator[LabPage]:
        """A headless Chromium tab on this server, closed afterwards."""
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
            )
            try:
                context = browser.new_context(viewport={"width": width, "height": height})
                tab = context.new_page()
                tab.set_default_timeout(timeout * 1000)
                yield LabPage(tab, self, timeout=timeout)
                context.close()
            finally:
                browser.close()


class LabPage:
    """One notebook open in JupyterLab in a Chromium tab (from :meth:`JupyterLab.page`)."""

    def __init__(self, page: Any, lab: JupyterLab, *, timeout: float) -> None:
        self.page = page
        self.lab = lab
        self.timeout = timeout
        self.console_errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text[:500]))
        page.on("pageerror", lambda e: self.console_errors.append(f"pageerror: {str(e)[:500]}"))
        self._loaded = False

    def open(self, path: str, *, kernel: str = "python3") -> None:
        """Open ``path`` (relative to the server root) and wait for an idle kernel."""
        if not self._loaded:
            self.page.goto(f"{self.lab.url}/lab?reset", wait_until="domcontentloaded")
            self.page.wait_for_function("() => window.jupyterapp !== undefined")
            self._loaded = True
        self.page.evaluate(_JS_OPEN, [path, kernel])
        self.page.wait_for_function(_JS_KERNEL_READY)

    def run_all(self, *, settle: float = 1.5) -> dict[str, Any]:
        """Run all cells, then wait until no cell is busy and every widget has rendered."""
        self.page.evaluate(_JS_RUN_ALL)
        state = self.wait_settled(settle=settle)
        unrun = [
            c["index"]
            for c in state["cells"]
            if c["type"] == "code" and c["execution_count"] is None and not c["empty"]
        ]
        if unrun and not self.problems(state):
            raise AssertionError(f"code cells {unrun} never ran, and no cell reported an error")
        return state

    def wait_settled(self, *, settle: float = 1.5) -> dict[str, Any]:
        """Wait until the kernel is idle, no prompt shows ``[*]`` and widgets have rendered.

        Raises ``AssertionError`` when the kernel died or restarted, or on timeout.
        """
        deadline = time.monotonic() + self.timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            state = self.state()
            restarts = set(state["statuses"]) & {"dead", "autorestarting", "restarting"}
            if restarts or state["kernel"] in ("dead", "autorestarting", "restarting"):
                raise AssertionError(f"kernel {sorted(restarts) or state['kernel']} during the run")
            pending = [
                c["index"] for c in state["cells"]
                if c["busy"] or (c["widgets_rendered"] < c["widget_outputs"] and not c["bad_text"])
            ]  # fmt: skip
            if not pending and state["kernel"] == "idle" and state["run_done"]:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle:
                    return state
            else:
                quiet_since = None
            time.sleep(0.25)
        raise AssertionError(
            f"notebook not settled after {self.timeout} s: {self.state()['cells']}"
        )

    def state(self) -> dict[str, Any]:
        """Per-cell snapshot: execution count, busy, errors, widget outputs rendered, bad text."""
        result: dict[str, Any] = self.page.evaluate(
            _JS_STATE, [WIDGET_MIME, list(BAD_TEXTS), LOADING_TEXT]
        )
        return result

    def problems(self, state: dict[str, Any] | None = None) -> list[str]:
        """Error outputs and widget error texts of every cell (empty when all is well)."""
        found = []
        for cell in (state or self.state())["cells"]:
            found += [f"cell {cell['index']}: {e['ename']}: {e['evalue']}" for e in cell["errors"]]
            found += [f"cell {cell['index']}: {text!r}" for text in cell["bad_text"]]
        return found

    def screenshot_widgets(self, name: str) -> list[Path]:
        """PNG of every cell output area holding a widget, plus one of the whole notebook.

        JupyterLab scrolls inside its own panel, so the viewport is grown to the notebook's
        height for the shots (tall outputs come out whole), then restored.
        """
        folder = artifacts_dir()
        shots = []
        size = self.page.viewport_size
        height = self.page.evaluate(_JS_NOTEBOOK_HEIGHT)
        self.page.set_viewport_size(
            {"width": size["width"], "height": max(size["height"], min(int(height) + 200, 12000))}
        )
        try:
            self.page.wait_for_timeout(300)
            cells = self.page.locator(".jp-Notebook .jp-Cell")
            for cell in self.state()["cells"]:
                if cell["widget_outputs"]:
                    path = folder / f"{name}.cell{cell['index']:02d}.png"
                    area = cells.nth(cell["index"]).locator(".jp-Cell-outputArea")
                    area.screenshot(path=str(path), animations="disabled")
                    shots.append(path)
            full = folder / f"{name}.full.png"
            self.page.screenshot(path=str(full), animations="disabled")
            shots.append(full)
        finally:
            self.page.set_viewport_size(size)
        return shots

    def pick_file(self, path: str | os.PathLike[str], *, index: int = 0) -> None:
        """Choose ``path`` in the ``index``-th FileUpload widget via the browser's file chooser."""
        with self.page.expect_file_chooser() as chooser:
            self.page.locator(".widget-upload").nth(index).click()
        chooser.value.set_files(str(path))

    def click_button(self, text: str, *, index: int = 0) -> None:
        """Click the ``index``-th widget button whose label is ``text``."""
        self.page.locator("button.jupyter-button", has_text=text).nth(index).click()

    def kernel(self, code: str) -> str:
        """Run ``code`` in the notebook's kernel; return its printed and displayed text.

        Raises ``AssertionError`` with the Python error when the code raises.
        """
        reply = self.page.evaluate(_JS_KERNEL_EXEC, [code, int(self.timeout * 1000)])
        if reply["status"] != "ok":
            raise AssertionError(
                f"kernel code failed: {reply['ename']}: {reply['evalue']}\n{reply['output']}"
            )
        return str(reply["output"])

    def wait_for_kernel(self, expression: str, *, timeout: float | None = None) -> None:
        """Poll the Python ``expression`` in the kernel until it is true."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            if self.kernel(f"print(bool({expression}))").strip() == "True":
                return
            time.sleep(0.3)
        raise AssertionError(f"{expression} still false after {timeout or self.timeout} s")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


_JS_NOTEBOOK_HEIGHT = """
() => Math.max(0, ...[...document.querySelectorAll('.jp-NotebookPanel-notebook, .jp-WindowedPanel-outer')]
  .map(n => { n.scrollTop = 0; return n.scrollHeight; }))
"""

_JS_OPEN = """
async ([path, kernel]) => {
  const app = window.jupyterapp;
  await app.started; await app.restored;
  const w = await app.commands.execute('docmanager:open', {path, factory: 'Notebook', kernel: {name: kernel}});
  await w.context.ready; await w.sessionContext.ready;
  app.shell.activateById(w.id);
  if (app.shell.collapseLeft) app.shell.collapseLeft();
  window.__lab_nb = w;
  window.__lab_statuses = [];
  w.sessionContext.statusChanged.connect((_, status) => window.__lab_statuses.push(status));
  return true;
}
"""

_JS_KERNEL_READY = """
() => { const w = window.__lab_nb; const k = w && w.sessionContext.session && w.sessionContext.session.kernel;
        return !!k && k.connectionStatus === 'connected' && k.status === 'idle'; }
"""

# fire Run All without awaiting it here: a hanging cell must hit our timeout, not block evaluate()
_JS_RUN_ALL = """
() => { const app = window.jupyterapp; const w = window.__lab_nb;
  app.shell.activateById(w.id);
  window.__lab_run_done = false; window.__lab_statuses = [];
  app.commands.execute('notebook:run-all-cells').then(() => { window.__lab_run_done = true; },
                                                      () => { window.__lab_run_done = true; });
  return true; }
"""

_JS_STATE = """
([widgetMime, badTexts, loadingText]) => {
  const w = window.__lab_nb;
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  const cells = [];
  w.content.widgets.forEach((cell, i) => {
    const m = cell.model;
    const c = {index: i, type: m.type, busy: false, empty: false, execution_count: null, errors: [],
               widget_outputs: 0, widgets_rendered: 0, bad_text: []};
    if (m.type === 'code') {
      c.execution_count = m.executionCount;
      c.empty = m.sharedModel.getSource().trim() === '';
      const prompt = cell.node.querySelector('.jp-InputPrompt');
      c.busy = !!(prompt && prompt.textContent.includes('*'));
      const area = cell.node.querySelector('.jp-Cell-outputArea');
      const children = area ? [...area.querySelectorAll(':scope > .jp-OutputArea-child')] : [];
      m.outputs.toJSON().forEach((o, j) => {
        if (o.output_type === 'error') c.errors.push({ename: o.ename, evalue: o.evalue});
        if (o.data && o.data[widgetMime]) {
          c.widget_outputs += 1;
          const el = children[j] && children[j].querySelector('.jp-OutputArea-output');
          const view = el && el.querySelector('.jupyter-widgets');
          const box = view ? view.getBoundingClientRect() : {width: 0, height: 0};
          if (view && box.width > 0 && box.height > 0 && !el.textContent.includes(loadingText)) c.widgets_rendered += 1;
        }
      });
      const text = area ? area.textContent : '';
      for (const bad of badTexts) if (text.includes(bad)) c.bad_text.push(text.slice(text.indexOf(bad), text.indexOf(bad) + 300));
    }
    cells.push(c);
  });
  return {kernel: k ? k.status : 'none', cells, run_done: window.__lab_run_done !== false,
          statuses: window.__lab_statuses || []};
}
"""

_JS_KERNEL_EXEC = """
async ([code, timeoutMs]) => {
  const k = window.__lab_nb.sessionContext.session.kernel;
  const future = k.requestExecute({code, store_history: false, silent: false});
  const out = [];
  future.onIOPub = (msg) => {
    const t = msg.header.msg_type, c = msg.content;
    if (t === 'stream') out.push(c.text);
    else if (t === 'execute_result' || t === 'display_data') out.push((c.data && c.data['text/plain']) || '');
    else if (t === 'error') out.push(c.ename + ': ' + c.evalue);
  };
  const timer = new Promise((_, reject) => setTimeout(() => reject(new Error('timed out')), timeoutMs));
  try {
    const reply = await Promise.race([future.done, timer]);
    return {status: reply.content.status, ename: reply.content.ename || null,
            evalue: reply.content.evalue || null, output: out.join('')};
  } catch (e) {
    return {status: 'timeout', ename: 'Timeout', evalue: String(e), output: out.join('')};
  }
}
"""
