"""The run ledger: intents before POSTs, run ids after, resumable, shared between processes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from skinfix_nb.errors import ConfigurationError
from skinfix_nb.ledger import (
    Claim,
    Ledger,
    client_ref_for,
    default_ledger_path,
    new_owner,
    release_owner,
)

API = "https://api.runflow.io"
MODEL = "runflow/skin-fix"


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with Ledger(":memory:", api=API) as book:
        yield book


def claim(book: Ledger, ref: str, owner: str, url: str = "https://x.test/a.jpg") -> Claim:
    return book.claim(
        client_ref=ref, url_key=ref, generation=0, model=MODEL, image_url=url, owner=owner
    )


def test_client_ref_is_deterministic_and_depends_on_url_model_and_generation() -> None:
    ref = client_ref_for("https://x.test/a.jpg", MODEL)
    assert ref == client_ref_for("https://x.test/a.jpg", MODEL)
    assert ref.startswith("sfnb-")
    assert len(ref) <= 255
    assert ref != client_ref_for("https://x.test/b.jpg", MODEL)
    assert ref != client_ref_for("https://x.test/a.jpg", "runflow/other")
    assert client_ref_for("https://x.test/a.jpg", MODEL, generation=2) == f"{ref}-g2"


def test_intent_then_run_id_then_status(ledger: Ledger) -> None:
    owner = new_owner()
    try:
        first = claim(ledger, "r1", owner)
        assert first.outcome == "claimed"
        assert not first.resumed
        assert first.entry.run_id is None
        ledger.record_run(
            "r1", run_id="run-1", status="queued", created_at="2026-01-01T00:00:00+00:00"
        )
        again = claim(ledger, "r1", owner)
        assert again.outcome == "has_run"
        assert again.entry.run_id == "run-1"
        ledger.update_statuses(
            [{"run_id": "run-1", "status": "succeeded", "cost": "0.12", "duration_ms": 900}]
        )
        entry = ledger.get("r1")
        assert entry is not None
        assert (entry.status, entry.cost, entry.duration_ms) == ("succeeded", "0.12", 900)
        assert ledger.by_run_ids(["run-1", "nope"]).keys() == {"run-1"}
        assert len(ledger) == 1
    finally:
        release_owner(owner)


def test_intent_of_a_live_batch_is_busy_and_of_an_ended_one_is_resumed(ledger: Ledger) -> None:
    first, second = new_owner(), new_owner()
    try:
        assert claim(ledger, "r1", first).outcome == "claimed"
        assert claim(ledger, "r1", second).outcome == "busy"
        release_owner(first)  # the first batch ended (interrupted) without a run id
        taken = claim(ledger, "r1", second)
        assert taken.outcome == "claimed"
        assert taken.resumed
    finally:
        release_owner(second)


def test_intent_of_a_dead_process_is_resumed_and_of_a_live_one_is_busy(ledger: Ledger) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = new_owner()
    try:
        host = mine.split(":")[0]
        claim(ledger, "alive", f"{host}:{sleeper.pid}:abc")
        claim(ledger, "dead", f"{host}:{dead.pid}:abc")
        assert claim(ledger, "alive", mine).outcome == "busy"
        resumed = claim(ledger, "dead", mine)
        assert resumed.outcome == "claimed"
        assert resumed.resumed
    finally:
        sleeper.kill()
        sleeper.wait()
        release_owner(mine)


def test_drop_intent_forgets_only_an_unsent_ref_of_that_owner(ledger: Ledger) -> None:
    owner = new_owner()
    try:
        claim(ledger, "r1", owner)
        ledger.drop_intent("r1", owner="someone-else")
        assert ledger.get("r1") is not None
        ledger.drop_intent("r1", owner=owner)
        assert ledger.get("r1") is None
    finally:
        release_owner(owner)


def test_latest_returns_the_newest_generation(ledger: Ledger) -> None:
    owner = new_owner()
    try:
        for generation in (0, 1):
            ledger.claim(
                client_ref=f"k-g{generation}",
                url_key="k",
                generation=generation,
                model=MODEL,
                image_url="https://x.test/a.jpg",
                owner=owner,
            )
        assert ledger.latest(["k", "unknown"])["k"].client_ref == "k-g1"
        assert "unknown" not in ledger.latest(["k", "unknown"])
    finally:
        release_owner(owner)


def test_runs_are_scoped_to_their_api(ledger: Ledger) -> None:
    owner = new_owner()
    try:
        claim(ledger, "r1", owner)
        local = ledger.for_api("http://127.0.0.1:9999")
        assert local.get("r1") is None
        assert claim(local, "r1", owner).outcome == "claimed"
        assert len(ledger) == 1
        assert len(local) == 1
    finally:
        release_owner(owner)


def test_presigned_query_strings_are_not_stored(ledger: Ledger) -> None:
    owner = new_owner()
    try:
        claim(ledger, "r1", owner, url="https://bucket.test/a.jpg?X-Amz-Signature=SECRET")
        entry = ledger.get("r1")
        assert entry is not None
        assert "SECRET" not in entry.image_url
    finally:
        release_owner(owner)


def test_file_ledger_uses_wal_and_is_shared_by_two_connections(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "ledger.sqlite3"
    owner = new_owner()
    try:
        with Ledger(path, api=API) as one, Ledger(str(path), api=API) as two:
            (mode,) = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()
            assert mode == "wal"
            claim(one, "r1", owner)
            one.record_run("r1", run_id="run-1", status="queued")
            entry = two.get("r1")
            assert entry is not None
            assert entry.run_id == "run-1"
    finally:
        release_owner(owner)


def test_a_given_connection_is_left_open() -> None:
    connection = sqlite3.connect(":memory:")
    with Ledger(connection, api=API) as book:
        assert len(book) == 0
    assert connection.execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)
    connection.close()


def test_default_path_is_under_the_toolkit_home() -> None:
    assert default_ledger_path() == Path(os.environ["SKINFIX_NB_HOME"]) / "ledger.sqlite3"


def test_bad_target_says_what_it_takes() -> None:
    with pytest.raises(ConfigurationError, match="file path"):
        Ledger(42)  # type: ignore[arg-type]


def test_junk_numbers_from_the_api_are_stored_as_unknown(ledger: Ledger) -> None:
    owner = new_owner()
    try:
        claim(ledger, "r1", owner)
        ledger.record_run("r1", run_id="run-1", status="running", duration_ms=10**309)
        ledger.update_statuses(
            [{"run_id": "run-1", "status": "succeeded", "cost": "0.12", "duration_ms": -(2**70)}]
        )
        entry = ledger.get("r1")
        assert entry is not None
        assert entry.status == "succeeded"
        assert entry.duration_ms is None
    finally:
        release_owner(owner)


def _open_together(barrier: threading.Barrier, path: Path) -> Ledger:
    barrier.wait()
    return Ledger(path)


def test_many_openers_of_a_new_ledger_file_at_once_all_get_it(tmp_path: Path) -> None:
    # dask partitions in threads (or kernels) opening one new ledger together: switching
    # the file to WAL needs it alone, and SQLite refuses that at once with "locked"
    for attempt in range(10):
        path = tmp_path / f"ledger-{attempt}.sqlite3"
        with ThreadPoolExecutor(8) as pool:
            ledgers = list(pool.map(_open_together, [threading.Barrier(8)] * 8, [path] * 8))
        for ledger in ledgers:
            assert ledger._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            ledger.close()
