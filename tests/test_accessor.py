"""df.skinfix against the embedded server: frames in, frames out, any index, sync and await."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

import skinfix_nb
from skinfix_nb.accessor import output_meta
from skinfix_nb.client import AsyncSkinFix, SkinFix
from skinfix_nb.ledger import Ledger
from skinfix_nb.local import LocalServer, serve
from tests.conftest import FAKE_KEY

OUTPUT = ["run_id", "status", "output_url", "cost", "error", "duration_ms"]
SAMPLES = Path(skinfix_nb.__file__).parent / "samples"


@pytest.fixture
def fast_server() -> Iterator[LocalServer]:
    with serve(port=0, api_key=FAKE_KEY, engine=None, latency=0.02) as srv:
        yield srv


@pytest.fixture
def client(fast_server: LocalServer) -> Iterator[SkinFix]:
    with SkinFix(FAKE_KEY, base_url=fast_server.url) as api:
        yield api


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with Ledger(":memory:") as book:
        yield book


def frame_of(server: LocalServer, index: pd.Index) -> pd.DataFrame:
    urls = [f"{server.url}/a.jpg", None, f"{server.url}/b.jpg", f"{server.url}/a.jpg", "nope"]
    return pd.DataFrame({"image_url": urls, "note": list("vwxyz")}, index=index)


@pytest.mark.parametrize(
    "index",
    [
        pd.Index([7, 7, 3, 3, 1]),
        pd.Index(["e", "d", "c", "b", "a"]),
        pd.MultiIndex.from_tuples([("x", 2), ("x", 1), ("y", 2), ("x", 2), ("y", 1)]),
    ],
    ids=["duplicates", "strings", "multiindex"],
)
def test_any_index_and_row_order_are_kept(
    fast_server: LocalServer, client: SkinFix, ledger: Ledger, index: pd.Index
) -> None:
    frame = frame_of(fast_server, index)
    before = frame.copy()
    out = frame.skinfix.submit("image_url", client=client, progress=False, ledger=ledger)
    assert out is not None
    assert out.index.equals(index)
    assert list(out.columns) == ["image_url", "note", *OUTPUT]
    assert out["note"].tolist() == list("vwxyz")
    assert out["status"].tolist() == ["succeeded", "invalid", "succeeded", "succeeded", "invalid"]
    assert out["run_id"].iloc[0] == out["run_id"].iloc[3]
    assert out["output_url"].iloc[2] == f"{fast_server.url}/b.jpg"
    assert out["cost"].iloc[0] == pytest.approx(0.12)
    assert np.isnan(out["cost"].iloc[1])
    assert "missing value" in out["error"].iloc[1]
    assert out["duration_ms"].dtype == "Int64"
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is untouched


def test_inplace_writes_into_the_callers_frame(
    fast_server: LocalServer, client: SkinFix, ledger: Ledger
) -> None:
    frame = frame_of(fast_server, pd.Index([5, 5, 4, 4, 3]))
    assert frame.skinfix.submit(client=client, progress=False, ledger=ledger, inplace=True) is None
    assert set(OUTPUT) <= set(frame.columns)
    assert frame["status"].tolist()[:3] == ["succeeded", "invalid", "succeeded"]


def test_estimate_before_and_after_and_cost_counts_each_run_once(
    fast_server: LocalServer, client: SkinFix, ledger: Ledger
) -> None:
    frame = frame_of(fast_server, pd.RangeIndex(5))
    first = frame.skinfix.estimate(client=client, ledger=ledger)
    assert (first.rows, first.valid, first.invalid, first.distinct_urls) == (5, 3, 2, 2)
    assert (first.already_paid, first.to_submit) == (0, 2)
    assert first.usd == pytest.approx(0.24)
    assert not fast_server.requests  # nothing was sent
    out = frame.skinfix.submit(client=client, progress=False, ledger=ledger)
    assert out is not None
    assert out.skinfix.cost() == pytest.approx(0.24)  # row 3 shares row 0's run
    again = frame.skinfix.estimate(client=client, ledger=ledger)
    assert (again.already_paid, again.to_submit, again.usd) == (2, 0, 0.0)
    assert "2 already run" in str(again)


def test_refresh_follows_runs_that_were_still_running(
    fast_server: LocalServer, client: SkinFix, ledger: Ledger
) -> None:
    fast_server.set_faults(latency=0.5)
    frame = frame_of(fast_server, pd.RangeIndex(5))
    queued = frame.skinfix.submit(client=client, progress=False, ledger=ledger, wait=False)
    assert queued is not None
    assert set(queued["status"]) == {"queued", "invalid"}
    done = queued.skinfix.refresh(client=client, ledger=ledger, wait=True, timeout=10)
    assert done is not None
    assert done["status"].tolist() == ["succeeded", "invalid", "succeeded", "succeeded", "invalid"]
    assert done["output_url"].notna().sum() == 3
    assert queued["status"].iloc[0] == "queued"  # refresh returned a new frame


async def test_submit_works_inside_a_running_loop_and_asubmit_can_be_awaited(
    fast_server: LocalServer, ledger: Ledger
) -> None:
    frame = frame_of(fast_server, pd.RangeIndex(5))
    with SkinFix(FAKE_KEY, base_url=fast_server.url) as blocking:
        out = frame.skinfix.submit(client=blocking, progress=False, ledger=ledger)
    async with AsyncSkinFix(FAKE_KEY, base_url=fast_server.url) as api:
        awaited = await frame.skinfix.asubmit(client=api, progress=False, ledger=ledger)
    assert out is not None
    assert awaited is not None
    pd.testing.assert_frame_equal(out, awaited)
    assert len([r for r in fast_server.requests if r.method == "POST"]) == 2


class CountingTransport(httpx.HTTPTransport):
    """The real blocking HTTP transport, counting what it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        return super().handle_request(request)


async def test_a_blocking_client_runs_the_batch_on_its_async_twin(
    fast_server: LocalServer, ledger: Ledger
) -> None:
    frame = frame_of(fast_server, pd.RangeIndex(5))
    with SkinFix(FAKE_KEY, base_url=fast_server.url) as blocking:
        out = frame.skinfix.submit(client=blocking, progress=False, ledger=ledger)
        again = await frame.skinfix.asubmit(client=blocking, progress=False, ledger=ledger)
        assert blocking._http._transport._pool.connections == []  # type: ignore[attr-defined]
        assert blocking.get(out["run_id"].iloc[0]).succeeded  # and it is still open
    assert out is not None
    assert again is not None
    assert out["status"].tolist() == again["status"].tolist()
    assert out["status"].tolist().count("succeeded") == 3


def test_a_blocking_client_with_its_own_transport_keeps_using_it(
    fast_server: LocalServer, ledger: Ledger
) -> None:
    transport = CountingTransport()
    frame = frame_of(fast_server, pd.RangeIndex(5))
    with SkinFix(FAKE_KEY, base_url=fast_server.url, transport=transport) as blocking:
        out = frame.skinfix.submit(client=blocking, progress=False, ledger=ledger)
    assert out is not None
    assert out["status"].tolist().count("succeeded") == 3
    assert transport.sent == len(fast_server.requests) > 0


def test_misuse_gets_a_clear_error(fast_server: LocalServer, ledger: Ledger) -> None:
    frame = frame_of(fast_server, pd.RangeIndex(5))
    with pytest.raises(KeyError, match="no column 'url'.*image_url"):
        frame.skinfix.submit("url", progress=False, ledger=ledger)
    api = AsyncSkinFix(FAKE_KEY, base_url=fast_server.url)
    with pytest.raises(TypeError, match="asubmit"):
        frame.skinfix.submit(client=api, progress=False, ledger=ledger)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="submit"):
        frame.skinfix.cost()
    with pytest.raises(ValueError, match="concurrency"):
        frame.skinfix.submit(
            client=SkinFix(FAKE_KEY, base_url=fast_server.url), concurrency=0, ledger=ledger
        )


def test_output_meta_describes_the_result_columns(
    fast_server: LocalServer, client: SkinFix, ledger: Ledger
) -> None:
    frame = frame_of(fast_server, pd.RangeIndex(5))
    meta = output_meta(frame)
    out = frame.skinfix.submit(client=client, progress=False, ledger=ledger)
    assert out is not None
    assert meta.empty
    assert dict(meta.dtypes) == dict(out.dtypes)


def test_results_feed_the_qa_and_gallery_views(server: LocalServer, ledger: Ledger) -> None:
    """The real engine on a bundled portrait, then the delegated views on the result."""
    url = server.serve_file(SAMPLES / "astronaut.png")
    frame = pd.DataFrame({"image_url": [url]})
    with SkinFix(FAKE_KEY, base_url=server.url) as api:
        out = frame.skinfix.submit(client=api, progress=False, ledger=ledger)
        assert out is not None
        assert out["status"].tolist() == ["succeeded"]
        checked = out.skinfix.qa(client=api, progress=False, labels=False)
    assert "qa_flag" in checked.columns
    assert not np.isnan(checked["qa_ssim"].iloc[0])
    assert out.skinfix.gallery() is not None


def test_submit_then_refresh_without_a_client_reach_the_same_local_runs() -> None:
    url = skinfix_nb.local.shared_server().serve_file(SAMPLES / "grace_hopper.jpg")
    frame = pd.DataFrame({"image_url": [url]})
    with Ledger(":memory:") as book:
        out = frame.skinfix.submit(wait=False, progress=False, ledger=book)
        assert out is not None
        done = out.skinfix.refresh(wait=True, timeout=60, ledger=book)
    assert done is not None
    assert done["status"].tolist() == ["succeeded"]
    assert done["run_id"].tolist() == out["run_id"].tolist()
    with skinfix_nb.connect(local=True) as client:
        assert client.get(out["run_id"].iloc[0]).succeeded
