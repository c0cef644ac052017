"""FileUpload values from ipywidgets 7 and 8, fed in the shapes the browser sends."""

from __future__ import annotations

from pathlib import Path

import ipywidgets
import pytest

import skinfix_nb
from skinfix_nb.display.widgets_compat import IPYWIDGETS_MAJOR, UploadedFile, uploaded_files

PORTRAIT = Path(skinfix_nb.__file__).parent / "samples" / "luispedro.jpg"


def browser_upload_state(name: str, data: bytes) -> dict[str, object]:
    """What the front end syncs into FileUpload when a user picks one file."""
    if IPYWIDGETS_MAJOR >= 8:
        return {
            "value": [
                {
                    "name": name,
                    "type": "image/jpeg",
                    "size": len(data),
                    "content": memoryview(data),
                    "last_modified": 1_700_000_000_000,
                }
            ]
        }
    return {
        "metadata": [
            {
                "name": name,
                "type": "image/jpeg",
                "size": len(data),
                "lastModified": 1_700_000_000_000,
            }
        ],
        "data": [memoryview(data)],
        "_counter": 1,
    }


def test_installed_file_upload_value_normalises_after_a_browser_pick() -> None:
    data = PORTRAIT.read_bytes()
    picker = ipywidgets.FileUpload()
    assert uploaded_files(picker.value) == []
    picker.set_state(browser_upload_state("face.jpg", data))
    assert uploaded_files(picker.value) == [UploadedFile("face.jpg", "image/jpeg", len(data), data)]


def test_ipywidgets7_dict_shape() -> None:
    value = {
        "a.png": {
            "metadata": {"name": "a.png", "type": "image/png", "size": 3, "lastModified": 1},
            "content": b"abc",
        }
    }
    assert uploaded_files(value) == [UploadedFile("a.png", "image/png", 3, b"abc")]


def test_ipywidgets8_tuple_shape_with_memoryview_content() -> None:
    value = (
        {"name": "a.png", "type": "image/png", "size": 3, "content": memoryview(b"abc")},
        {"name": "b.jpg", "type": "", "size": 0, "content": b"xy"},
    )
    files = uploaded_files(value)
    assert files == [
        UploadedFile("a.png", "image/png", 3, b"abc"),
        UploadedFile("b.jpg", "", 2, b"xy"),
    ]
    assert isinstance(files[0].content, bytes)
    assert "abc" not in repr(files[0])  # reprs never carry the file's bytes


def test_other_values_are_refused_clearly() -> None:
    with pytest.raises(TypeError, match="dict \\(ipywidgets 7\\) or a tuple \\(ipywidgets 8\\)"):
        uploaded_files("face.jpg")
    with pytest.raises(TypeError, match="bytes or a memoryview"):
        uploaded_files(({"name": "x", "content": 42},))
