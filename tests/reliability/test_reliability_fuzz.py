"""Hostile input: fuzzed DataFrame cells and junk server answers raise only documented errors.

Documented means a :class:`~skinfix_nb.errors.RunflowError` subclass (or, for cells, no
exception at all: a bad cell becomes an ``invalid`` row). The junk answers come from a
hostile loopback server of the test's own (``hostile.py``), over real HTTP.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import skinfix_nb as sf
from skinfix_nb.local import LocalServer, serve
from tests.conftest import FAKE_KEY
from tests.reliability.fuzzing import fuzz_async_client, fuzz_batch, fuzz_sync_client
from tests.reliability.hostile import HostileServer, Junk, junk_bodies
from tests.reliability.scenarios import CREATE_PATH

# Junk families that once escaped as RecursionError / httpx.DecodingError: kept as their
# own regression tests below, on every operation.
DEEP_JSON = ("malformed:deep-array", "malformed:deep-object")
GZIP_LIE = ("gzip-lie",)
# A run whose duration_ms is 1e308 (it once escaped as OverflowError from the ledger).
HUGE_NUMBER = "wrong:run.duration_ms=4"

# wait=False: runs are followed up elsewhere; a row is queued/running/done once sent,
# ``invalid`` when refused before sending, ``error`` when the API refused it.
ROW_STATUSES = {"queued", "dispatching", "running", "succeeded", "invalid", "error"}


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


@pytest.fixture(scope="module")
def instant_server() -> Iterator[LocalServer]:
    with serve(engine=None, api_key=FAKE_KEY, seed=3) as server:
        yield server


def _family(junk: Junk) -> str:
    return junk.name.split("@")[0]


def test_the_junk_covers_at_least_500_bodies() -> None:
    junk = junk_bodies()
    assert len(junk) >= 500
    kinds = {item.name.split(":")[0] for item in junk}
    assert {"malformed", "wrong", "truncated"} <= kinds
    assert any(item.name.startswith("html") for item in junk)


def test_sync_client_raises_only_documented_errors_on_junk(hostile: HostileServer) -> None:
    junk = junk_bodies()
    outcome = fuzz_sync_client(hostile, junk)
    assert outcome.calls >= 500
    assert outcome.documented > 0  # the junk was really refused, not all accepted
    assert outcome.escapes == 0, outcome.examples


def test_async_client_raises_only_documented_errors_on_junk(hostile: HostileServer) -> None:
    junk = junk_bodies()
    outcome = fuzz_async_client(hostile, junk)
    assert outcome.calls >= 500
    assert outcome.escapes == 0, outcome.examples


def test_deeply_nested_json_gives_a_documented_error(hostile: HostileServer) -> None:
    junk = [item for item in junk_bodies() if _family(item) in DEEP_JSON]
    outcome = fuzz_sync_client(hostile, junk, every_operation=True)
    assert outcome.escapes == 0, outcome.examples


def test_undecodable_content_encoding_gives_a_documented_error(hostile: HostileServer) -> None:
    junk = [item for item in junk_bodies() if _family(item) in GZIP_LIE]
    outcome = fuzz_sync_client(hostile, junk, every_operation=True)
    assert outcome.escapes == 0, outcome.examples


def test_batch_on_junk_answers_fills_rows_and_raises_nothing_undocumented(
    hostile: HostileServer,
) -> None:
    """Every sixth junk answer through ``df.skinfix.submit`` (all of them in the benchmark)."""
    junk = junk_bodies()[::6]
    outcome = fuzz_batch(hostile, junk)
    assert outcome.calls >= 100
    assert outcome.escapes == 0, outcome.examples


def test_a_huge_duration_in_a_run_does_not_break_the_batch(hostile: HostileServer) -> None:
    junk = [item for item in junk_bodies() if item.name.startswith(HUGE_NUMBER)]
    outcome = fuzz_batch(hostile, junk)
    assert outcome.escapes == 0, outcome.examples


# -- DataFrame cells ---------------------------------------------------------------------

_ODD_CELLS = [
    pd.NA,
    pd.NaT,
    np.nan,
    np.float32("nan"),
    np.int64(7),
    np.True_,
    "",
    "   ",
    "https://",
    "https:///no-host.jpg",
    "http://[::1",
    "https://img.example.test:99999/x.jpg",
    "https://img.example.test/a b.jpg",
    "https://img.example.test/tab\t.jpg",
    "file:///etc/passwd",
    "data:image/png;base64,AAAA",
    "C:\\photos\\face.jpg",
    "/home/me/face.jpg",
    "javascript:alert(1)",
    "ftp://img.example.test/a.jpg",
    "https://img.example.test/signed.jpg?X-Amz-Signature=abc&X-Amz-Credential=k",
    "HTTPS://IMG.EXAMPLE.TEST/UPPER.JPG",
    "  https://img.example.test/padded.jpg  ",
    "https://img.example.test/ünïcödé/😀.jpg",
    "https://xn--nxasmq6b.example.test/a.jpg",
    "https://img.example.test/" + "a" * 3000 + ".jpg",
    "https://img.example.test/quote'.jpg",
    "https://img.example.test/nul\x00.jpg",
]

_urls = st.builds(
    "https://img.example.test/{}.jpg".format,
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
)
_cells = st.one_of(
    _urls,
    st.sampled_from(_ODD_CELLS),
    st.none(),
    st.text(max_size=30),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(max_size=16),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.decimals(allow_nan=True, allow_infinity=True),  # signalling NaN included
    st.datetimes(),
    st.timedeltas(),
    st.complex_numbers(),
)


def test_fuzzed_cells_become_rows_never_escaping_exceptions(instant_server: LocalServer) -> None:
    seen: list[int] = []

    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(_cells, min_size=20, max_size=40))
    def check(cells: list[object]) -> None:
        seen.append(len(cells))
        frame = pd.DataFrame({"image_url": pd.Series(cells, dtype=object)})
        instant_server.clear_requests()
        estimate = frame.skinfix.estimate("image_url", ledger=":memory:")
        with sf.connect(base_url=instant_server.url, api_key=FAKE_KEY) as client:
            out = frame.skinfix.submit(
                "image_url",
                client=client,
                ledger=":memory:",
                progress=False,
                timeout=30,
                wait=False,
            )
        assert list(out.index) == list(frame.index)
        assert set(out["status"]) <= ROW_STATUSES, out[["image_url", "status", "error"]]
        invalid = out["status"] == "invalid"
        assert out.loc[invalid, "error"].notna().all()  # each refusal says why
        assert out.loc[invalid, "run_id"].isna().all()
        assert out.loc[out["status"] == "error", "error"].notna().all()
        posts = [r for r in instant_server.requests if r.path == CREATE_PATH]
        sent = out.loc[~invalid, "image_url"].map(lambda url: str(url).strip()).nunique()
        assert len(posts) == sent == estimate.to_submit
        assert estimate.invalid == int(invalid.sum())

    check()
    assert sum(seen) >= 1000, f"only {sum(seen)} cells were tried"


def test_a_signalling_nan_cell_is_an_invalid_row() -> None:
    frame = pd.DataFrame({"image_url": [decimal.Decimal("sNaN"), "https://img.example.test/a.jpg"]})
    estimate = frame.skinfix.estimate("image_url", ledger=":memory:")
    assert estimate.invalid == 1
