"""Every notebook runs top to bottom in a real kernel, with no key, against the embedded backend."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
MAX_SAVED_BYTES = 200_000
# An executed notebook embeds thumbnails only (<= 512 px), never full-size images.
MAX_EXECUTED_BYTES = 2_000_000


def test_the_four_notebooks_exist() -> None:
    assert [path.stem for path in NOTEBOOKS] == [
        "01_quickstart",
        "02_batch_dataframe",
        "03_quality_review",
        "colab_demo",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_saved_notebook_is_small_and_clean(path: Path) -> None:
    assert path.stat().st_size <= MAX_SAVED_BYTES
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    assert book.metadata["kernelspec"]["name"] == "python3"
    assert book.cells[0].cell_type == "markdown"
    assert all(not cell.get("outputs") for cell in book.cells)  # stored without outputs


def test_colab_demo_has_badge_guarded_install_and_local_fallback() -> None:
    book = nbformat.read(next(p for p in NOTEBOOKS if p.stem == "colab_demo"), as_version=4)
    text = "\n".join(cell.source for cell in book.cells)
    assert "colab.research.google.com/assets/colab-badge.svg" in book.cells[0].source
    assert "/notebooks/colab_demo.ipynb" in book.cells[0].source
    install = next(cell for cell in book.cells if "pip" in cell.source and cell.cell_type == "code")
    assert "if IN_COLAB and" in install.source  # never installs outside Colab (tests included)
    assert "sf.connect()" in text
    assert "RUNFLOW_API_KEY" in text


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_without_errors(path: Path, tmp_path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    assert "RUNFLOW_API_KEY" not in os.environ  # the kernel inherits this: no key
    NotebookClient(
        book,
        kernel_name="python3",
        timeout=180,
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    for cell in book.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"{path.name}: {output.get('evalue')}"
            if output.output_type == "stream" and output.name == "stderr":
                assert "Traceback" not in output.text, output.text
                assert "Warning" not in output.text, output.text
    executed = json.dumps(nbformat.from_dict(book))
    assert len(executed) <= MAX_EXECUTED_BYTES
    assert all(cell.get("execution_count") for cell in book.cells if cell.cell_type == "code")
