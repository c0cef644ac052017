"""The review widget driven by browser-shaped messages; labels persist as they are made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from skinfix_nb import labels
from skinfix_nb.display.review_widget import ReviewGrid, ReviewWidget, review
from skinfix_nb.quality import qa_frame

# ipywidgets 7.7 (Colab's) builds its comms through ipykernel's deprecated Comm class
pytestmark = pytest.mark.filterwarnings(
    "ignore:The `ipykernel.comm.Comm` class has been deprecated:DeprecationWarning"
)

SAMPLES = Path(__file__).resolve().parents[1] / "skinfix_nb" / "samples"


def click(button: Any) -> None:
    """What the front end sends when a button is pressed (mouse, Space or Enter)."""
    button._handle_button_msg(None, {"event": "click"}, [])


def type_into(text: Any, value: str) -> None:
    """What the front end sends when a text box's value changes."""
    text.set_state({"value": value})


def results() -> pd.DataFrame:
    names = ["grace_hopper.jpg", "astronaut.png", "luispedro.jpg", "camera.png", "grace_hopper.jpg"]
    return pd.DataFrame(
        {
            "image_url": [str(SAMPLES / n) for n in names],
            "run_id": ["run-1", "run-2", "run-3", "run-4", None],
            "status": ["succeeded", "succeeded", "failed", "succeeded", "invalid"],
            "output_url": [str(SAMPLES / n) for n in names[:2]]
            + [None, str(SAMPLES / names[3]), None],
        },
        index=["g", "a", "l", "c", "x"],
    )


def texts(column: pd.Series) -> list[str | None]:
    return [None if pd.isna(v) else v for v in column]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "labels.sqlite3"


def test_reviews_only_succeeded_rows_and_shows_progress(store_path: Path) -> None:
    widget = review(results(), labels=store_path)
    assert widget.total == 3  # failed and invalid rows have nothing to judge
    assert widget.position == 0
    assert "0 of 3 reviewed" in widget.progress_text.value
    assert "run-1" in widget.title.value
    assert widget.before_image.value
    assert widget.after_image.value
    assert widget.previous_button.disabled
    assert "(key a)" in widget.accept_button.tooltip


def test_clicks_label_advance_and_persist_at_once(store_path: Path) -> None:
    widget = review(results(), labels=store_path)
    click(widget.accept_button)
    assert widget.position == 1
    type_into(widget.note, "halo around the hair")
    click(widget.reject_button)
    click(widget.flag_button)
    assert "3 of 3 reviewed" in widget.progress_text.value
    assert widget.progress_bar.value == 3
    stored = labels.LabelStore(store_path).get_many(["run-1", "run-2", "run-4"])
    assert {k: (v.label, v.note) for k, v in stored.items()} == {
        "run-1": ("accepted", ""),
        "run-2": ("rejected", "halo around the hair"),
        "run-4": ("flagged", ""),
    }
    frame = widget.frame
    assert list(frame.index) == ["g", "a", "l", "c", "x"]
    assert texts(frame["qa_label"]) == ["accepted", "rejected", None, "flagged", None]
    assert widget.labels()["run_id"].tolist() == ["run-1", "run-2", "run-4"]


def test_a_new_widget_shows_the_saved_labels(store_path: Path) -> None:
    first = review(results(), labels=store_path)
    click(first.accept_button)
    type_into(first.note, "check the eyes")  # a note alone is saved too
    again = review(results(), labels=store_path)  # as after a kernel restart
    assert again.position == 1  # opens at the first pair without a verdict
    assert again.note.value == "check the eyes"
    assert "1 of 3 reviewed" in again.progress_text.value
    again.previous()
    assert "accepted" in again.title.value
    assert texts(labels.load(results(), labels=store_path)["qa_note"])[1] == "check the eyes"


def test_shortcut_box_keys(store_path: Path) -> None:
    widget = review(results(), labels=store_path, advance=False)
    type_into(widget.shortcuts, "f")
    assert widget.shortcuts.value == ""
    assert texts(widget.labels()["qa_label"]) == ["flagged", None, None]
    type_into(widget.shortcuts, "n")
    type_into(widget.shortcuts, "R")
    type_into(widget.shortcuts, "j")
    type_into(widget.shortcuts, "a")
    type_into(widget.shortcuts, "x")  # unknown keys do nothing
    assert texts(widget.labels()["qa_label"]) == ["flagged", "rejected", "accepted"]
    type_into(widget.shortcuts, "k")
    assert widget.position == 1


def test_navigation_stays_in_range_and_start_is_honoured(store_path: Path) -> None:
    widget = review(results(), labels=store_path, start=2)
    assert widget.position == 2
    assert widget.next_button.disabled
    click(widget.next_button)
    assert widget.position == 2
    click(widget.previous_button)
    assert widget.position == 1
    with pytest.raises(IndexError, match="outside"):
        widget.go_to(3)


def test_qa_flags_and_figures_are_shown(store_path: Path) -> None:
    checked = qa_frame(results(), progress=False, labels=store_path)
    widget = review(checked, labels=store_path, start=2)
    assert "no_face" in widget.details.value  # camera.png has no face
    assert "SSIM 1.000" in widget.details.value


def test_unreachable_images_are_reported_in_the_widget(store_path: Path) -> None:
    df = results()
    df.loc["g", "output_url"] = str(SAMPLES / "missing.png")
    widget = review(df, labels=store_path)
    assert "after image unavailable" in widget.image_message.value
    assert widget.after_image.value == b""
    click(widget.reject_button)  # a pair that cannot be seen can still be judged
    assert texts(widget.labels()["qa_label"])[0] == "rejected"


def test_frames_with_nothing_to_review_are_refused(store_path: Path) -> None:
    df = results()
    with pytest.raises(ValueError, match="nothing to review"):
        review(df[df["status"] != "succeeded"], labels=store_path)
    with pytest.raises(ValueError, match="run_id"):
        review(df.drop(columns="run_id"), labels=store_path)
    with pytest.raises(TypeError, match="DataFrame"):
        ReviewWidget([1], labels=store_path)  # type: ignore[arg-type]


def test_grid_labels_tiles_and_shares_the_store(store_path: Path) -> None:
    df = pd.concat([results()] * 3, ignore_index=True)
    df["run_id"] = [f"run-{i}" if r is not None else None for i, r in enumerate(df["run_id"])]
    grid = review(df, labels=store_path, grid=True, page_size=4)
    assert isinstance(grid, ReviewGrid)
    assert (grid.total, grid.pages, grid.page) == (9, 3, 0)
    assert len(grid.tiles.children) == 4
    assert "0 of 9 reviewed" in grid.progress_text.value
    grid.choices[1].set_state({"index": 2})  # the browser sends the chosen button's index
    grid.choices[0].set_state({"index": 1})
    assert texts(grid.labels()["qa_label"])[:2] == ["accepted", "rejected"]
    assert "2 of 9 reviewed" in grid.progress_text.value
    click(grid.next_page_button)
    click(grid.next_page_button)
    assert grid.page == 2
    assert len(grid.tiles.children) == 1
    assert grid.next_page_button.disabled
    grid.choices[0].set_state({"index": 3})
    grid.choices[0].set_state({"index": 0})  # back to "not reviewed"
    single = review(df, labels=store_path)  # the one-pair view sees the grid's labels
    assert single.reviewed == 2
    assert single.position == 2
    reopened = review(df, labels=store_path, grid=True, page_size=1)
    assert reopened.page == 2  # opens on the page of the first unreviewed pair
    assert reopened.choices[0].value == ""
    with pytest.raises(ValueError, match="page_size"):
        review(df, labels=store_path, grid=True, page_size=0)
