"""The HTML report is one self-contained file with the summary, plots, flagged rows, labels."""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skinfix_nb import labels
from skinfix_nb.local.engine import retouch
from skinfix_nb.quality import QAThresholds, qa_frame, report, worst_pairs

SAMPLES = Path(__file__).resolve().parents[1] / "skinfix_nb" / "samples"


class Links(HTMLParser):
    """Every URL-bearing attribute and every tag of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in {"src", "href", "srcset", "poster", "data"} and value is not None:
                self.urls.append((tag, name, value))


def qa_results(folder: Path) -> pd.DataFrame:
    with Image.open(SAMPLES / "grace_hopper.jpg") as image:
        grace = image.convert("RGB")
    retouch(grace).save(folder / "retouched.png")
    Image.fromarray(cv2.GaussianBlur(np.asarray(grace), (0, 0), 2.5)).save(folder / "blur.png")
    before = str(SAMPLES / "grace_hopper.jpg")
    return pd.DataFrame(
        {
            "image_url": [before, before, before, before],
            "run_id": ["run-good", "run-blur", "run-gone", "run-failed"],
            "status": ["succeeded", "succeeded", "succeeded", "failed"],
            "output_url": [
                str(folder / "retouched.png"),
                str(folder / "blur.png"),
                str(folder / "gone.png"),
                None,
            ],
            "cost": [0.12, 0.12, 0.12, 0.0],
        }
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "labels.sqlite3"
    with labels.LabelStore(path) as saved:
        saved.set("run-good", "accepted")
        saved.set("run-blur", "rejected", note="whole frame <blurred>")
    return path


def test_report_is_self_contained_and_complete(tmp_path: Path, store: Path) -> None:
    path = report(qa_results(tmp_path), tmp_path / "out" / "qa.html", labels=store, title="Batch 7")
    assert path == tmp_path / "out" / "qa.html"
    page = path.read_text(encoding="utf-8")
    parser = Links()
    parser.feed(page)
    assert "script" not in parser.tags
    assert "link" not in parser.tags
    images = [value for tag, _, value in parser.urls if tag == "img"]
    assert len(images) >= 6  # worst pairs (before/after/difference) and flagged thumbnails
    assert all(value.startswith("data:image/") for _, _, value in parser.urls)
    assert not re.search(r"url\((?!data:)", page)  # no CSS fetches either
    assert "<title>Batch 7</title>" in page
    assert page.count("<svg") == 6
    assert "background_changed" in page
    assert "fetch_failed" in page
    assert "gone.png" in page  # the error says which file was missing
    assert "whole frame &lt;blurred&gt;" in page  # notes are escaped
    assert "1 accepted, 1 rejected, 0 flagged, 2 not reviewed" in page
    assert "0.36" in page  # spent


def test_a_measured_frame_is_not_measured_again_but_can_be_reflagged(
    tmp_path: Path, store: Path
) -> None:
    checked = qa_frame(qa_results(tmp_path), progress=False, labels=False)
    checked.loc[0, "image_url"] = str(tmp_path / "not-read.jpg")  # proves no re-measuring
    strict = QAThresholds(feature_sharpness_ratio=10.0)  # every measured pair falls below
    page = report(checked, tmp_path / "qa.html", thresholds=strict, labels=False).read_text()
    assert "Flagged pairs (3)" in page  # the good pair is flagged under the strict limits
    assert "Review labels" not in page


def test_report_needs_no_matplotlib(tmp_path: Path) -> None:
    frame = qa_frame(qa_results(tmp_path), progress=False, labels=False)
    frame.to_pickle(tmp_path / "frame.pkl")  # measured here: the child only writes the page
    code = (
        "import sys, pandas as pd\n"
        "sys.modules['matplotlib'] = None  # as if it were not installed\n"
        "from skinfix_nb.quality import report\n"
        f"report(pd.read_pickle({str(tmp_path / 'frame.pkl')!r}), {str(tmp_path / 'r.html')!r}, "
        "labels=False)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True)
    assert (tmp_path / "r.html").stat().st_size > 10_000


def test_worst_pairs_show_in_a_notebook_with_embedded_images(tmp_path: Path) -> None:
    checked = qa_frame(qa_results(tmp_path), progress=False, labels=False)
    view = worst_pairs(checked, 2)
    page = view._repr_html_()
    parser = Links()
    parser.feed(page)
    sources = [value for tag, _, value in parser.urls if tag == "img"]
    assert len(sources) == 3  # the blurred pair: before, after, difference; then the missing one
    assert all(src.startswith("data:image/") for src in sources)
    assert "run-blur" in page
    assert "images unavailable" in page
    assert page.index("run-blur") < page.index("run-gone")  # three flags before one
    with pytest.raises(ValueError, match="qa_frame"):
        worst_pairs(qa_results(tmp_path))
