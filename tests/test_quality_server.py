"""QA end to end: portraits submitted to the embedded server over real HTTP, measured, reported."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import skinfix_nb as sf
from skinfix_nb.local import LocalServer
from skinfix_nb.quality import qa_frame
from tests.conftest import FAKE_KEY

SAMPLES = Path(sf.__file__).parent / "samples"


@pytest.fixture
def client(server: LocalServer) -> Iterator[sf.SkinFix]:
    with sf.connect(FAKE_KEY, base_url=server.url) as connected:
        yield connected


@pytest.fixture
def submitted(server: LocalServer, client: sf.SkinFix, tmp_path: Path) -> pd.DataFrame:
    urls = [server.serve_file(SAMPLES / n) for n in ("grace_hopper.jpg", "luispedro.jpg")]
    df = pd.DataFrame({"image_url": [*urls, "not a url"]})
    out = df.skinfix.submit(
        "image_url", client=client, progress=False, ledger=tmp_path / "ledger.sqlite3"
    )
    assert out["status"].tolist() == ["succeeded", "succeeded", "invalid"]
    return out


def test_real_retouches_from_the_server_pass_qa(
    submitted: pd.DataFrame, client: sf.SkinFix, tmp_path: Path
) -> None:
    checked = submitted.skinfix.qa(client=client, progress=False, labels=tmp_path / "l.sqlite3")
    good = checked.iloc[:2]
    assert good["qa_flag"].tolist() == ["", ""]
    assert good["qa_face_found"].tolist() == [True, True]
    assert good["qa_nsfw"].tolist() == [False, False]  # read from each run
    assert (good["qa_skin_change"] > 3 * good["qa_background_change"]).all()  # JPEG noise too
    assert (good["qa_skin_changed_pct"] > 20).all()
    assert (good["qa_background_altered_pct"] < 0.5).all()
    assert checked["qa_flag"].iloc[2] is None  # the invalid row was never measured

    path = submitted.skinfix.report(tmp_path / "qa.html", client=client, labels=False)
    page = Path(path).read_text(encoding="utf-8")
    assert "No pair was flagged." in page
    assert "http://127.0.0.1" not in page  # images are embedded, never linked


def test_the_input_image_is_read_from_the_run_when_the_frame_lacks_it(
    submitted: pd.DataFrame, client: sf.SkinFix
) -> None:
    bare = submitted.drop(columns="image_url")
    checked = qa_frame(bare, client=client, progress=False, labels=False)
    assert checked["qa_flag"].iloc[:2].tolist() == ["", ""]
    with pytest.raises(ValueError, match="client="):
        qa_frame(bare, progress=False)


def test_an_expired_output_url_is_refreshed_through_the_run(
    submitted: pd.DataFrame, client: sf.SkinFix, server: LocalServer
) -> None:
    stale = submitted.copy()
    stale["output_url"] = [
        url.split("?", 1)[0] + "?sig=STALE0SIGNATURE" if isinstance(url, str) else url
        for url in stale["output_url"]
    ]
    without_client = qa_frame(stale, progress=False, labels=False)
    assert without_client["qa_flag"].iloc[:2].tolist() == ["fetch_failed", "fetch_failed"]
    assert "403" in without_client["qa_error"].iloc[0]
    assert "STALE0SIGNATURE" not in without_client["qa_error"].iloc[0]  # no query string shown
    server.clear_requests()
    refreshed = qa_frame(stale, client=client, progress=False, labels=False)
    assert refreshed["qa_flag"].iloc[:2].tolist() == ["", ""]
    run_reads = [r for r in server.requests if r.method == "GET" and r.path.startswith("/v1/runs/")]
    assert len(run_reads) >= 2  # one fresh URL per stale output
