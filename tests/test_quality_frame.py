"""qa_frame on a results frame: every succeeded row measured, the rest left alone."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skinfix_nb import labels
from skinfix_nb.local.engine import retouch
from skinfix_nb.quality import METRIC_COLUMNS, QA_COLUMNS, QAThresholds, qa_frame

SAMPLES = Path(__file__).resolve().parents[1] / "skinfix_nb" / "samples"


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pairs")
    with Image.open(SAMPLES / "grace_hopper.jpg") as image:
        grace = image.convert("RGB")
    written = {
        "retouched": retouch(grace),
        "blurred": Image.fromarray(cv2.GaussianBlur(np.asarray(grace), (0, 0), 2.5)),
    }
    paths = {"before": SAMPLES / "grace_hopper.jpg"}
    for name, image in written.items():
        paths[name] = folder / f"{name}.png"
        image.save(paths[name])
    return paths


def texts(column: pd.Series) -> list[str | None]:
    """Column values with every missing marker as None (pandas 2 keeps None, 3 gives NaN)."""
    return [None if pd.isna(v) else v for v in column]


def results(pairs: dict[str, Path]) -> pd.DataFrame:
    before = str(pairs["before"])
    return pd.DataFrame(
        {
            "image_url": [before, before, before, "bad://x", before],
            "run_id": ["run-a", "run-b", "run-c", None, "run-e"],
            "status": ["succeeded", "succeeded", "failed", "invalid", "succeeded"],
            "output_url": [
                str(pairs["retouched"]),
                str(pairs["blurred"]),
                None,
                None,
                str(pairs["before"].with_name("missing.png")),
            ],
        },
        index=pd.Index(["x", "x", "y", "z", "w"], name="photo"),  # duplicates are kept
    )


def test_succeeded_rows_get_metrics_and_flags(pairs: dict[str, Path], tmp_path: Path) -> None:
    df = results(pairs)
    original = df.copy()
    out = qa_frame(df, progress=False, labels=tmp_path / "labels.sqlite3")
    pd.testing.assert_frame_equal(df, original)  # the caller's frame is untouched
    assert list(out.index) == list(df.index)
    assert set(QA_COLUMNS) <= set(out.columns)
    good, blur, failed, invalid, missing = (out.iloc[i] for i in range(5))
    assert good["qa_flag"] == ""
    assert good["qa_skin_change"] > 20 * good["qa_background_change"]
    assert set(blur["qa_flag"].split(",")) >= {"background_changed", "features_blurred"}
    for row in (failed, invalid):
        assert pd.isna(row["qa_flag"])
        assert all(pd.isna(row[c]) for c in METRIC_COLUMNS)
    assert missing["qa_flag"] == "fetch_failed"
    assert "missing.png" in missing["qa_error"]
    assert math.isnan(missing["qa_ssim"])
    assert out["qa_label"].isna().all()


def test_nsfw_column_and_thresholds_are_honoured(pairs: dict[str, Path], tmp_path: Path) -> None:
    df = results(pairs).iloc[:2].assign(nsfw_detected=[True, False])
    lenient = QAThresholds(
        background_altered_pct=100.0,
        feature_sharpness_ratio=0.0,
        sharpness_ratio=0.0,
    )
    out = qa_frame(df, thresholds=lenient, progress=False, labels=False)
    assert list(out["qa_flag"]) == ["nsfw", ""]
    assert list(out["qa_nsfw"]) == [True, False]
    assert "qa_label" not in out.columns


def test_labels_made_in_review_are_merged(pairs: dict[str, Path], tmp_path: Path) -> None:
    store_path = tmp_path / "labels.sqlite3"
    with labels.LabelStore(store_path) as store:
        store.set("run-b", "rejected", note="background smeared")
    out = qa_frame(results(pairs), progress=False, labels=store_path)
    assert texts(out["qa_label"]) == [None, "rejected", None, None, None]
    assert out["qa_note"].iloc[1] == "background smeared"


def test_frames_without_the_needed_columns_are_refused(pairs: dict[str, Path]) -> None:
    df = results(pairs)
    with pytest.raises(ValueError, match="status"):
        qa_frame(df.drop(columns="status"), progress=False)
    with pytest.raises(ValueError, match="columns="):
        qa_frame(df.rename(columns={"image_url": "photo"}), progress=False)
    renamed = df.rename(columns={"image_url": "photo", "output_url": "retouched"})
    out = qa_frame(renamed, columns=("photo", "retouched"), progress=False, labels=False)
    assert out["qa_flag"].iloc[0] == ""
    with pytest.raises(TypeError, match="DataFrame"):
        qa_frame([1, 2], progress=False)  # type: ignore[arg-type]
