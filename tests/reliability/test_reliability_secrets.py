"""The API key never shows: not in reprs, frames, errors, logs, the ledger, the CLI or notebooks.

A recognisable fake key (``FAKE_KEY``) goes through every public entry point against the
embedded server over real HTTP, with every logger at DEBUG; then each place a key could
land is searched for it (whole, or its recognisable middle).
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

import skinfix_nb as sf
from skinfix_nb import loops, samples
from skinfix_nb._core import RetryPolicy
from skinfix_nb.errors import RunflowError
from skinfix_nb.ledger import Ledger
from skinfix_nb.local import LocalServer, serve
from tests.conftest import FAKE_KEY

REPO = Path(__file__).resolve().parents[2]
MARKERS = (FAKE_KEY, "SECRETCANARY")
ONE_TRY = RetryPolicy(max_attempts=1)


def occurrences(text: str | bytes) -> int:
    """How many times the key (or its recognisable middle) appears."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    return sum(data.count(marker.encode()) for marker in MARKERS)


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Every logger, ours and the libraries', at DEBUG into one buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s %(args)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def _text_of(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error) + repr(vars(error))


def _error_text(call: Callable[[], object]) -> str:
    """The full traceback, repr and attributes of the RunflowError ``call`` raises."""
    with pytest.raises(RunflowError) as caught:
        call()
    return _text_of(caught.value)


def test_no_entry_point_shows_the_key(
    server: LocalServer,
    debug_log: io.StringIO,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    seen: list[str] = []
    ledger = tmp_path / "ledger.db"
    image = server.serve_file(samples.path("grace_hopper"))
    with sf.connect(api_key=FAKE_KEY, base_url=server.url) as client:
        seen += [repr(client), str(client), repr(vars(client))]
        url = client.upload(samples.path("luispedro"))
        run = client.run(image, metadata={"note": "secrets"})
        seen += [repr(run), run._repr_html_(), repr(run.raw), url]
        seen += [repr(client.get(run)), repr(client.list_runs(limit=5))]
        seen += [repr(client.find_by_client_ref(str(run.client_ref))), repr(client.health())]
        seen.append(sf.compare(run)._repr_html_())
        frame = pd.DataFrame({"image_url": [image, image, "not a url"]})
        seen.append(str(frame.skinfix.estimate("image_url", client=client, ledger=str(ledger))))
        out = frame.skinfix.submit("image_url", client=client, ledger=str(ledger), progress=False)
        assert out is not None
        seen += [out.to_csv(), out.to_html(), repr(out), out.to_json()]
        refreshed = out.skinfix.refresh(client=client, ledger=str(ledger))
        assert refreshed is not None
        seen.append(refreshed.to_csv())
        seen.append(
            sf.gallery(out)._repr_html_() if hasattr(sf.gallery(out), "_repr_html_") else ""
        )
        with pytest.raises(RunflowError) as timeout_error:
            client.wait(client.submit(image, client_ref="sfnb-secrets-wait"), timeout=0.001)
        seen.append(_text_of(timeout_error.value))
    async_client = sf.connect_async(api_key=FAKE_KEY, base_url=server.url)
    seen += [repr(async_client), repr(vars(async_client))]
    loops.run_sync(async_client.close())
    with (
        serve(engine=None, api_key="another-key") as other,
        sf.connect(api_key=FAKE_KEY, base_url=other.url) as wrong,
    ):
        seen.append(_error_text(lambda: wrong.submit(image)))
    with sf.connect(api_key=FAKE_KEY, base_url="http://127.0.0.1:9", retry=ONE_TRY) as nowhere:
        seen.append(_error_text(nowhere.health))

    with serve(engine=None, api_key=FAKE_KEY) as mine:
        seen += [repr(mine), repr(mine.requests), repr(mine.runs())]
    captured = capfd.readouterr()
    seen += [captured.out, captured.err, debug_log.getvalue()]
    assert "HTTP Request" in debug_log.getvalue() or "skinfix_nb" in debug_log.getvalue()
    files = [ledger, *tmp_path.glob("ledger.db-*")]
    found = {f"text #{n}": occurrences(text) for n, text in enumerate(seen) if occurrences(text)}
    found |= {str(p): occurrences(p.read_bytes()) for p in files if occurrences(p.read_bytes())}
    assert found == {}
    with Ledger(str(ledger)) as book:
        assert len(book.for_api(server.url)) >= 1  # the ledger searched really holds runs


def test_the_cli_never_prints_or_writes_the_key(server: LocalServer, tmp_path: Path) -> None:
    image = server.serve_file(samples.path("camera"))
    source = tmp_path / "input.csv"
    pd.DataFrame({"image_url": [image, "nonsense"]}).to_csv(source, index=False)
    home = tmp_path / "home"
    env = dict(os.environ, RUNFLOW_API_KEY=FAKE_KEY, SKINFIX_NB_HOME=str(home))
    texts: list[bytes] = []
    for out, base_url in (("ok.csv", server.url), ("refused.csv", None)):
        command = [sys.executable, "-m", "skinfix_nb", "run", str(source), "--quiet"]
        command += ["--out", str(tmp_path / out)]
        if base_url is not None:
            command += ["--base-url", base_url]
        else:  # a server that refuses this key: the 401 message must not echo it
            refusing = serve(engine=None, api_key="another-key")
            command += ["--base-url", refusing.url]
        try:
            done = subprocess.run(command, env=env, capture_output=True, timeout=120, cwd=REPO)
        finally:
            if base_url is None:
                refusing.stop()
        texts += [done.stdout, done.stderr]
        assert done.returncode in (1, 3), done.stderr.decode()[-1000:]
    texts.append((tmp_path / "ok.csv").read_bytes())
    texts += [path.read_bytes() for path in home.rglob("*") if path.is_file()]
    assert any(b"succeeded" in text for text in texts)
    assert [occurrences(text) for text in texts if occurrences(text)] == []


def test_an_executed_notebook_never_shows_the_key(server: LocalServer, tmp_path: Path) -> None:
    """The quickstart notebook, pointed at the local server, with the key in the kernel's env."""
    book = nbformat.read(REPO / "notebooks" / "01_quickstart.ipynb", as_version=4)
    first_code = next(cell for cell in book.cells if cell.cell_type == "code")
    assert "sf.connect()" in first_code.source
    first_code.source = first_code.source.replace(
        "sf.connect()", "sf.connect(base_url=os.environ['SKINFIX_TEST_BASE_URL'])"
    )
    book.cells.insert(
        0,
        nbformat.v4.new_code_cell(
            "import logging, os, sys\n"
            "logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, force=True)"
        ),
    )
    book.cells.append(nbformat.v4.new_code_cell("client"))
    env_before = dict(os.environ)
    os.environ.update(RUNFLOW_API_KEY=FAKE_KEY, SKINFIX_TEST_BASE_URL=server.url)
    try:
        NotebookClient(
            book,
            kernel_name="python3",
            timeout=180,
            resources={"metadata": {"path": str(tmp_path)}},
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    executed = nbformat.writes(book)
    assert "succeeded" in executed  # the run really happened
    assert "DEBUG" in executed  # and the logs were on
    assert occurrences(executed) == 0
