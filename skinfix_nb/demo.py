"""``skinfix demo``: the whole job on the bundled portraits, offline, in well under a minute.

It goes the same way a real batch goes, only against the embedded backend: the portraits
are served over loopback HTTP, submitted through ``df.skinfix.submit`` (ledger, budget,
polling), fetched back and written out as ``results.csv``, ``retouched/`` and a
self-contained ``report.html``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pandas as pd

from skinfix_nb import samples
from skinfix_nb.errors import APIConnectionError
from skinfix_nb.images import mime_type_for

__all__ = ["DemoSummary", "run_demo"]

_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp"}


@dataclass(frozen=True)
class DemoSummary:
    """What a demo run did, for the one-paragraph summary it prints."""

    rows: int
    succeeded: int
    failed: int
    dollars: Decimal
    seconds: float
    out: Path

    def describe(self) -> str:
        """The summary as printed by ``skinfix demo``."""
        return (
            f"{self.rows} portraits: {self.succeeded} succeeded, {self.failed} failed; "
            f"${self.dollars:.2f} (local backend, nothing billed); {self.seconds:.1f} s\n"
            f"results: {self.out / 'results.csv'}\n"
            f"report:  {self.out / 'report.html'}\n"
            f"images:  {self.out / 'retouched'}"
        )


def run_demo(out: Path, *, progress: bool = True) -> DemoSummary:
    """Retouch the bundled portraits on the embedded backend and write the results to ``out``.

    Parameters
    ----------
    out : Path
        Folder for ``results.csv``, ``report.html`` and ``retouched/`` (created if missing;
        files from an earlier demo are replaced).
    progress : bool
        Show a progress bar while the runs go.
    """
    from skinfix_nb.client import connect
    from skinfix_nb.ledger import Ledger
    from skinfix_nb.local import serve
    from skinfix_nb.quality import report

    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    portraits = [samples.path(name) for name in samples.names()]
    with serve(port=0) as server, Ledger(":memory:") as ledger:
        frame = pd.DataFrame(
            {
                "name": [path.stem for path in portraits],
                "image_path": [str(path) for path in portraits],
                "image_url": [server.serve_file(path) for path in portraits],
            }
        )
        with connect(base_url=server.url, api_key=server.api_key) as client:
            result = frame.skinfix.submit(
                "image_url", client=client, ledger=ledger, concurrency=4, progress=progress
            )
        result["retouched_path"] = _save_outputs(result, out / "retouched")
        result.to_csv(out / "results.csv", index=False)
        report(result, out / "report.html")
    succeeded = int((result["status"] == "succeeded").sum())
    return DemoSummary(
        rows=len(result),
        succeeded=succeeded,
        failed=len(result) - succeeded,
        dollars=Decimal(str(result.skinfix.cost())),
        seconds=time.monotonic() - started,
        out=out,
    )


def _save_outputs(result: pd.DataFrame, folder: Path) -> list[str | None]:
    """Download each retouched image next to the results; None where a row has no output."""
    folder.mkdir(parents=True, exist_ok=True)
    saved: list[str | None] = []
    with httpx.Client(timeout=30) as http:
        for name, url in zip(result["name"], result["output_url"], strict=True):
            if not isinstance(url, str):
                saved.append(None)
                continue
            try:
                response = http.get(url)
                response.raise_for_status()
            except httpx.HTTPError as exc:
                raise APIConnectionError(f"could not fetch the retouched {name}: {exc}") from None
            path = folder / f"{name}{_EXTENSIONS.get(mime_type_for(response.content), '.img')}"
            path.write_bytes(response.content)
            saved.append(str(path.relative_to(folder.parent)))
    return saved
