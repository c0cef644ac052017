"""Review labels are stored per run id at once and merged back into any frame."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from skinfix_nb import labels, paths


def test_labels_survive_a_new_store_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite3"
    first = labels.LabelStore(path)
    first.set("run-1", "accepted")
    first.set("run-2", "rejected", note="plastic skin")
    first.set_note("run-3", "look again")
    again = labels.LabelStore(path)  # as after a kernel restart
    stored = again.get_many(["run-1", "run-2", "run-3", "run-4"])
    assert {k: (v.label, v.note) for k, v in stored.items()} == {
        "run-1": ("accepted", ""),
        "run-2": ("rejected", "plastic skin"),
        "run-3": (None, "look again"),
    }
    assert again.get("run-4") is None


def test_changing_a_verdict_keeps_the_note_unless_given(tmp_path: Path) -> None:
    store = labels.LabelStore(tmp_path / "l.sqlite3")
    store.set("run-1", "flagged", note="eyes?")
    assert store.set("run-1", "accepted").note == "eyes?"
    assert store.set("run-1", None, note="").note == ""
    label = store.get("run-1")
    assert label is not None
    assert label.label is None
    store.delete("run-1")
    assert store.all() == []


def test_default_file_lives_in_the_toolkit_home() -> None:
    store = labels.LabelStore()
    assert store.path == paths.home() / "labels.sqlite3"


def test_in_memory_and_caller_connections(tmp_path: Path) -> None:
    with labels.LabelStore(":memory:") as memory:
        memory.set("run-1", "accepted")
        assert [x.run_id for x in memory.all()] == ["run-1"]
    conn = sqlite3.connect(tmp_path / "shared.sqlite3")
    try:
        store = labels.LabelStore(conn)
        store.set("run-9", "rejected")
        store.close()  # the caller's connection stays open
        assert conn.execute("SELECT label FROM labels").fetchone() == ("rejected",)
    finally:
        conn.close()


def test_bad_labels_are_refused(tmp_path: Path) -> None:
    store = labels.LabelStore(tmp_path / "l.sqlite3")
    with pytest.raises(ValueError, match="accepted, rejected, flagged"):
        store.set("run-1", "good")
    with pytest.raises(ValueError, match="run_id"):
        store.set("", "accepted")
    with pytest.raises(TypeError, match="LabelStore"):
        labels.load(pd.DataFrame({"run_id": []}), labels=3)  # type: ignore[arg-type]


def test_load_and_save_round_trip_through_a_frame(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    df = pd.DataFrame(
        {"run_id": ["a", "b", None, "c"], "qa_label": ["accepted", None, "rejected", None]},
        index=[10, 10, 11, 12],
    )
    df["qa_note"] = ["", "", "", "ask the client"]
    assert labels.save(df, labels=path) == 2  # the row without a run id cannot be keyed
    merged = labels.load(df[["run_id"]], labels=path)
    assert [None if pd.isna(v) else v for v in merged["qa_label"]] == ["accepted", None, None, None]
    assert merged["qa_note"].tolist() == ["", "", "", "ask the client"]
    assert list(merged.index) == [10, 10, 11, 12]
    with pytest.raises(ValueError, match="run_id"):
        labels.load(pd.DataFrame({"x": [1]}), labels=path)
