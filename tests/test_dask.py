"""df.skinfix across dask partitions: explicit meta, one shared ledger, every URL paid once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import skinfix_nb  # noqa: F401  (registers df.skinfix)
from skinfix_nb.accessor import PartitionSubmit, output_meta
from skinfix_nb.client import SkinFix
from skinfix_nb.local import LocalServer, serve
from tests.conftest import FAKE_KEY

dd = pytest.importorskip("dask.dataframe")


@pytest.fixture
def fast_server() -> Iterator[LocalServer]:
    with serve(port=0, api_key=FAKE_KEY, engine=None, latency=0.02) as srv:
        yield srv


@pytest.mark.parametrize("scheduler", ["threads", "sync"])
def test_map_partitions_with_meta_shares_the_ledger(
    fast_server: LocalServer, tmp_path: Path, scheduler: str
) -> None:
    # 40 rows, 10 distinct URLs: every URL appears in every one of the 4 partitions.
    urls = [f"{fast_server.url}/img/{i % 10}.jpg" for i in range(40)]
    frame = pd.DataFrame({"image_url": urls, "row": range(40)})
    ddf = dd.from_pandas(frame, npartitions=4)
    ledger = tmp_path / "ledger.sqlite3"

    with SkinFix(FAKE_KEY, base_url=fast_server.url) as client:
        lazy = ddf.map_partitions(
            PartitionSubmit("image_url", client=client, ledger=ledger), meta=output_meta(ddf)
        )
        assert not fast_server.requests  # building the graph called nothing
        out = lazy.compute(scheduler=scheduler)

    assert out["row"].tolist() == list(range(40))
    assert (out["status"] == "succeeded").all()
    posts = [r for r in fast_server.requests if r.method == "POST"]
    assert len(posts) == 10  # each URL once, across partitions
    assert set(Counter(run["client_ref"] for run in fast_server.runs()).values()) == {1}
    by_url = out.groupby("image_url")["run_id"].nunique()
    assert (by_url == 1).all()  # every row of a URL shows the one run
