"""The gallery: pages, status filter, tiles, and opening a row's interactive comparison."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import skinfix_nb
from skinfix_nb import SkinFix
from skinfix_nb.display.gallery_grid import gallery
from skinfix_nb.display.interactive import InteractiveComparison
from skinfix_nb.local import LocalServer
from tests.conftest import FAKE_KEY

SAMPLES = Path(skinfix_nb.__file__).parent / "samples"


@pytest.fixture(scope="module")
def client(server: LocalServer) -> Iterator[SkinFix]:
    with SkinFix(FAKE_KEY, base_url=server.url) as sf_client:
        yield sf_client


@pytest.fixture(scope="module")
def results(client: SkinFix) -> pd.DataFrame:
    """A results frame like ``df.skinfix.submit`` returns: 4 succeeded, 1 failed, 1 invalid."""
    rows = []
    for path in [SAMPLES / "grace_hopper.jpg", SAMPLES / "luispedro.jpg"] * 2:
        run = client.run(client.upload(path))
        rows.append(
            {"image_url": run.image_url, "run_id": run.id, "status": run.status,
             "output_url": run.output_url, "cost": run.cost, "error": None}
        )  # fmt: skip
    rows.append({"image_url": rows[0]["image_url"], "run_id": None, "status": "failed",
                 "output_url": None, "cost": None, "error": "face too small <img src=x>"})  # fmt: skip
    rows.append({"image_url": "not a url", "run_id": None, "status": "invalid",
                 "output_url": None, "cost": None, "error": "image_url is not a URL"})  # fmt: skip
    return pd.DataFrame(rows, index=[10, 11, 12, 13, 14, 15])


def tile_markup(view: object) -> list[str]:
    return [tile.children[0].value for tile in view.grid.children]  # type: ignore[attr-defined]


def test_pages_and_tiles(results: pd.DataFrame, client: SkinFix) -> None:
    view = gallery(results, page_size=4, client=client)
    assert view.page_count == 2
    tiles = tile_markup(view)
    assert len(tiles) == 4
    assert all(tile.count("data:image/") == 2 for tile in tiles)
    assert all("succeeded" in tile and "$0.12" in tile for tile in tiles)
    assert view.previous_button.disabled
    assert not view.next_button.disabled

    first_tile = view.grid.children[0]
    view.next_button.click()
    assert view.page == 1
    assert view.grid.children[0] is first_tile  # paging reuses tiles: no widget leak
    failed, invalid = tile_markup(view)
    assert "face too small &lt;img src=x&gt;" in failed
    assert "<img src=x>" not in failed
    assert "no output" in failed
    assert "is not a URL" in invalid  # the bad URL's own error, not a crash
    compare_buttons = [tile.children[1] for tile in view.grid.children]
    assert all(button.disabled for button in compare_buttons)
    assert view.next_button.disabled
    assert "page 2 of 2" in view.page_label.value


def test_status_filter(results: pd.DataFrame) -> None:
    view = gallery(results, page_size=3, status="failed")
    assert len(view.rows) == 1
    assert [label for label, _ in view.status_filter.options] == [
        "all (6)", "failed (1)", "invalid (1)", "succeeded (4)"
    ]  # fmt: skip
    view.status_filter.value = "succeeded"
    assert view.page_count == 2
    assert len(view.grid.children) == 3
    view.status_filter.value = ""  # "all"
    assert len(view.rows) == 6


def test_tile_button_and_index_open_the_interactive_comparison(
    results: pd.DataFrame, client: SkinFix
) -> None:
    view = gallery(results, page_size=4, client=client)
    view.grid.children[1].children[1].click()  # the second tile's Compare button
    opened = view.detail.children[1]
    assert isinstance(opened, InteractiveComparison)
    assert opened.pair.run_id == results.loc[11, "run_id"]
    by_index = view.compare(13)
    assert by_index.pair.run_id == results.loc[13, "run_id"]
    view.detail.children[0].children[1].click()  # Close
    assert view.detail.children == ()
    with pytest.raises(KeyError, match="no row with index 99"):
        view.compare(99)


def test_second_view_reads_thumbnails_from_the_disk_cache(
    results: pd.DataFrame, client: SkinFix, server: LocalServer
) -> None:
    gallery(results, page_size=6, client=client, thumb_side=96)
    downloads = len([r for r in server.requests if r.path.startswith("/files/")])
    again = gallery(results, page_size=6, client=client, thumb_side=96)
    assert len([r for r in server.requests if r.path.startswith("/files/")]) == downloads
    assert sum(tile.count("data:image/") for tile in tile_markup(again)) == 9


def test_misuse_is_explained(results: pd.DataFrame) -> None:
    with pytest.raises(TypeError, match="takes a DataFrame"):
        gallery(results.iloc[0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no 'src' column"):
        gallery(results, columns=("src", "dst"))
    with pytest.raises(ValueError, match="no row has status 'running'"):
        gallery(results, status="running")
    with pytest.raises(ValueError, match="page_size"):
        gallery(results, page_size=0)
