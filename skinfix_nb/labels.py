"""Review labels that survive a kernel restart: one SQLite row per run id.

A person reviewing retouched pairs marks each run ``accepted``, ``rejected`` or ``flagged``
and may add a note. Every label is written (and committed) the moment it is made, to
``labels.sqlite3`` in :func:`skinfix_nb.paths.home` unless another file is given, so a
crash or a restart loses nothing; :func:`load` merges them back into any frame that has a
``run_id`` column.

>>> from skinfix_nb import labels
>>> store = labels.LabelStore()
>>> store.set("run-1", "accepted", note="natural")
>>> labelled = labels.load(out)          # adds qa_label and qa_note
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeAlias

import pandas as pd

from skinfix_nb import paths
from skinfix_nb.errors import ConfigurationError

__all__ = ["LABELS", "DEFAULT_FILENAME", "Label", "LabelStore", "LabelsLike", "load", "save"]

LABELS = ("accepted", "rejected", "flagged")
"""The verdicts a reviewer can give; ``None`` means not reviewed yet."""

DEFAULT_FILENAME = "labels.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    run_id     TEXT PRIMARY KEY,
    label      TEXT CHECK (label IS NULL OR label IN ('accepted', 'rejected', 'flagged')),
    note       TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class Label:
    """One run's review: its verdict (or ``None``), a free-text note and when it was made."""

    run_id: str
    label: str | None
    note: str
    updated_at: datetime


class LabelStore:
    """Labels keyed by run id in a SQLite file, committed on every change.

    Parameters
    ----------
    path : str, os.PathLike, sqlite3.Connection or None
        The database file (created on first use), ``":memory:"`` for a throw-away store, or
        an open connection the caller keeps ownership of. Default:
        ``labels.sqlite3`` in :func:`skinfix_nb.paths.home`.

    Notes
    -----
    A file store opens a short connection per call, so a store kept by a widget holds no
    file handle and two kernels can label the same file (SQLite serialises the writes).
    """

    def __init__(self, path: str | os.PathLike[str] | sqlite3.Connection | None = None) -> None:
        self._connection: sqlite3.Connection | None = None
        self._owns_connection = False
        self.path: Path | None = None
        if isinstance(path, sqlite3.Connection):
            self._connection = path
        elif path is not None and os.fspath(path) == ":memory:":
            self._connection = sqlite3.connect(":memory:")
            self._owns_connection = True
        else:
            self.path = Path(path) if path is not None else paths.home() / DEFAULT_FILENAME
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._transaction() as conn:
            conn.execute(_SCHEMA)

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "connection"
        return f"LabelStore({where!r})"

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the in-memory connection this store opened (file stores hold none)."""
        if self._owns_connection and self._connection is not None:
            self._connection.close()
            self._connection = None

    def set(self, run_id: str, label: str | None, *, note: str | None = None) -> Label:
        """Record a verdict (``"accepted"``, ``"rejected"``, ``"flagged"`` or ``None``).

        ``note=None`` keeps the note already stored; pass ``""`` to clear it.
        """
        _check_run_id(run_id)
        if label is not None and label not in LABELS:
            raise ValueError(f"label must be one of {', '.join(LABELS)} or None, got {label!r}")
        now = datetime.now(UTC)
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO labels (run_id, label, note, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (run_id) DO UPDATE SET label = excluded.label, "
                "note = CASE WHEN ? THEN excluded.note ELSE labels.note END, "
                "updated_at = excluded.updated_at",
                (run_id, label, note or "", now.isoformat(), note is not None),
            )
            row = conn.execute("SELECT note FROM labels WHERE run_id = ?", (run_id,)).fetchone()
        return Label(run_id, label, row[0], now)

    def set_note(self, run_id: str, note: str) -> Label:
        """Record a note and keep the verdict already stored (if any)."""
        _check_run_id(run_id)
        now = datetime.now(UTC)
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO labels (run_id, label, note, updated_at) VALUES (?, NULL, ?, ?) "
                "ON CONFLICT (run_id) DO UPDATE SET note = excluded.note, "
                "updated_at = excluded.updated_at",
                (run_id, note, now.isoformat()),
            )
            row = conn.execute("SELECT label FROM labels WHERE run_id = ?", (run_id,)).fetchone()
        return Label(run_id, row[0], note, now)

    def get(self, run_id: str) -> Label | None:
        """The label of one run, or ``None`` when it was never reviewed."""
        return self.get_many([run_id]).get(run_id)

    def get_many(self, run_ids: Iterable[str]) -> dict[str, Label]:
        """Labels of the given runs that have one, keyed by run id."""
        wanted = sorted({r for r in run_ids if isinstance(r, str) and r})
        found: dict[str, Label] = {}
        with self._transaction() as conn:
            # SQLite caps bound parameters; 500 stays far below every build's limit.
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT run_id, label, note, updated_at FROM labels WHERE run_id IN ({marks})",
                    chunk,
                )
                found.update({row[0]: _label_from_row(row) for row in rows})
        return found

    def all(self) -> list[Label]:
        """Every stored label, oldest change first."""
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT run_id, label, note, updated_at FROM labels ORDER BY updated_at, run_id"
            ).fetchall()
        return [_label_from_row(row) for row in rows]

    def delete(self, run_id: str) -> None:
        """Forget the label and note of one run."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM labels WHERE run_id = ?", (run_id,))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self._connection is not None:
            with self._connection:
                yield self._connection
            return
        if self.path is None:
            raise ConfigurationError("this LabelStore was closed; open a new one")
        with closing(sqlite3.connect(self.path, timeout=10.0)) as conn, conn:
            yield conn


LabelsLike: TypeAlias = LabelStore | str | os.PathLike[str] | None


def open_store(labels: LabelsLike) -> LabelStore:
    """A :class:`LabelStore` for a store, a file path, or ``None`` (the default file)."""
    if isinstance(labels, LabelStore):
        return labels
    if labels is None or isinstance(labels, str | os.PathLike):
        return LabelStore(labels)
    raise TypeError(
        f"labels must be a LabelStore, a path to a labels file or None, not {type(labels).__name__}"
    )


def load(df: pd.DataFrame, *, labels: LabelsLike = None) -> pd.DataFrame:
    """A copy of ``df`` with ``qa_label`` and ``qa_note`` filled from the store by run id.

    Rows without a run id, or never reviewed, get ``None`` and ``""``. Stored labels win over
    values already in the frame: the store is what the reviewer last decided.
    """
    if "run_id" not in df.columns:
        raise ValueError(
            "the frame has no 'run_id' column: load labels into the frame that "
            "df.skinfix.submit(...) returned"
        )
    store = open_store(labels)
    try:
        found = store.get_many(r for r in df["run_id"] if isinstance(r, str))
    finally:
        if store is not labels:
            store.close()
    out = df.copy()
    old_labels = out["qa_label"] if "qa_label" in out.columns else None
    old_notes = out["qa_note"] if "qa_note" in out.columns else None
    new_labels: list[str | None] = []
    new_notes: list[str] = []
    for position, run_id in enumerate(out["run_id"]):
        stored = found.get(run_id) if isinstance(run_id, str) else None
        if stored is not None:
            new_labels.append(stored.label)
            new_notes.append(stored.note)
            continue
        new_labels.append(
            _text_or_none(old_labels.iloc[position]) if old_labels is not None else None
        )
        new_notes.append(
            _text_or_none(old_notes.iloc[position]) or "" if old_notes is not None else ""
        )
    # object columns keep None for "not reviewed" on pandas 2 and 3 alike
    out["qa_label"] = pd.Series(new_labels, index=out.index, dtype=object)
    out["qa_note"] = pd.Series(new_notes, index=out.index, dtype=object)
    return out


def save(df: pd.DataFrame, *, labels: LabelsLike = None) -> int:
    """Store the ``qa_label`` / ``qa_note`` of every row that has a run id and a label or note.

    For labels made in code rather than in the review widget. Returns the rows written.
    """
    missing = [c for c in ("run_id", "qa_label") if c not in df.columns]
    if missing:
        raise ValueError(f"the frame needs column(s) {', '.join(missing)} to save labels")
    store = open_store(labels)
    written = 0
    try:
        notes = df["qa_note"] if "qa_note" in df.columns else None
        for position, (run_id, label) in enumerate(zip(df["run_id"], df["qa_label"], strict=True)):
            note = _text_or_none(notes.iloc[position]) if notes is not None else None
            verdict = _text_or_none(label)
            if not isinstance(run_id, str) or not run_id or (verdict is None and not note):
                continue
            store.set(run_id, verdict, note=note)
            written += 1
    finally:
        if store is not labels:
            store.close()
    return written


def _label_from_row(row: tuple[str, str | None, str, str]) -> Label:
    return Label(row[0], row[1], row[2], datetime.fromisoformat(row[3]))


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _check_run_id(run_id: object) -> None:
    if not isinstance(run_id, str) or not run_id:
        raise ValueError(f"run_id must be a non-empty string, got {run_id!r}")
