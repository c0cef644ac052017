"""A default comparison stays small in the saved notebook (executed for real with nbclient)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

LIMIT = 60_000

CELL = """\
from pathlib import Path
import skinfix_nb as sf

portrait = Path(sf.__file__).parent / "samples" / "astronaut.png"  # the largest sample
sf.compare(portrait, sf.retouch(portrait))"""


def test_saved_comparison_output_is_at_most_60_kb(tmp_path: Path) -> None:
    notebook = new_notebook(cells=[new_code_cell(CELL)])
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    saved = tmp_path / "compare.ipynb"
    nbformat.write(notebook, saved)

    outputs = nbformat.read(saved, as_version=4).cells[0].outputs
    assert [o["output_type"] for o in outputs] == ["execute_result"]
    data = outputs[0]["data"]
    assert set(data) == {"text/html", "text/plain"}
    assert data["text/html"].count("data:image/") == 2
    size = len(json.dumps(outputs, indent=1).encode())
    assert size <= LIMIT, f"the comparison output takes {size:,} bytes in the saved notebook"
