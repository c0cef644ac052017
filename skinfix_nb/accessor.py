"""``df.skinfix``: a DataFrame column of image URLs in, runs, statuses and dollars out.

>>> import skinfix_nb  # registers the accessor
>>> df.skinfix.estimate("image_url")           # rows, valid, distinct, already paid, USD
>>> out = df.skinfix.submit("image_url", max_cost=5.0)
>>> out[["run_id", "status", "output_url", "cost", "error", "duration_ms"]]
>>> out.skinfix.refresh()                      # re-poll rows that were still running
>>> out.skinfix.cost()                         # dollars, summed
>>> out = await df.skinfix.asubmit("image_url")  # the same, awaited in a notebook cell

The accessor keeps no state (pandas 3 builds a new one at every access): it checks its
arguments and hands the work to :mod:`skinfix_nb.batch`, then returns a new DataFrame on
the caller's index (``inplace=True`` writes into the caller's frame instead).

Scaling out with dask: every partition calls ``submit``; they share the ledger, so a URL
is never paid for twice across partitions, workers or re-runs. Pass ``meta=`` so dask
never calls the API to guess the output columns::

    from skinfix_nb.accessor import PartitionSubmit, output_meta
    out = ddf.map_partitions(
        PartitionSubmit("image_url", client=client, ledger="runs.sqlite3"),
        meta=output_meta(ddf),
    ).compute()

With the distributed scheduler leave ``client=None`` (each worker connects with its own
``RUNFLOW_API_KEY``) and give a ledger path every worker can reach.

This module imports pandas only; the engine, the client and the display code load on
first use.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Hashable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from skinfix_nb.batch import Batch, Estimate, RunsAPI
    from skinfix_nb.callbacks import CallbackReceiver
    from skinfix_nb.client import AsyncSkinFix, SkinFix
    from skinfix_nb.ledger import Ledger

__all__ = ["PartitionSubmit", "SkinFixAccessor", "output_meta"]


def output_meta(frame: Any) -> pd.DataFrame:
    """An empty frame with ``frame``'s columns plus the output columns, for dask's ``meta=``.

    ``frame`` is a pandas DataFrame or a dask DataFrame (its ``_meta`` is used).
    """
    empty = getattr(frame, "_meta", frame)
    if not isinstance(empty, pd.DataFrame):
        raise TypeError(f"output_meta() takes a pandas or dask DataFrame, not {type(frame)}")
    from skinfix_nb.batch import OUTPUT_COLUMNS, result_frame

    columns: dict[str, list[Any]] = {name: [] for name in OUTPUT_COLUMNS}
    result = result_frame(columns, empty.index[:0])
    return _with_columns(empty.iloc[:0], result)


class PartitionSubmit:
    """``df.skinfix.submit`` as a function of one partition, for ``ddf.map_partitions``.

    dask names a task by hashing its function; this one hashes by its column, API and
    options (never the API key), so the graph is deterministic without pickling the
    client. The progress bar is off: partitions run side by side.

    Parameters
    ----------
    column : hashable
        The URL column.
    client : SkinFix, optional
        Shared by the partitions of a threaded or synchronous scheduler.
    **options
        Any other :meth:`SkinFixAccessor.submit` option (``ledger``, ``max_cost`` per
        partition, ``concurrency``, ...).
    """

    def __init__(
        self, column: Hashable = "image_url", *, client: SkinFix | None = None, **options: Any
    ) -> None:
        self.column = column
        self.client = client
        self.options = options

    def __call__(self, part: pd.DataFrame) -> pd.DataFrame:
        out = SkinFixAccessor(part).submit(
            self.column, client=self.client, progress=False, **self.options
        )
        if out is None:
            raise ValueError("PartitionSubmit returns new partitions: drop inplace=True")
        return out

    def __dask_tokenize__(self) -> tuple[str, ...]:
        api = "default" if self.client is None else f"{self.client.base_url} {self.client.model}"
        options = sorted((name, repr(value)) for name, value in self.options.items())
        return ("skinfix-submit", repr(self.column), api, repr(options))


def _with_columns(frame: pd.DataFrame, result: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``result``'s columns added or replaced, matched by position."""
    out = frame.copy()
    for name in result.columns:
        out[name] = result[name].array
    return out


@dataclass
class _Session:
    """The client and ledger one call works with, and which of them it must close."""

    client: RunsAPI
    ledger: Ledger
    owned_client: AsyncSkinFix | None

    async def aclose(self) -> None:
        """Close the client this call created (on the loop that used it)."""
        if self.owned_client is not None:
            await self.owned_client.close()


@contextlib.contextmanager
def _session(
    client: SkinFix | AsyncSkinFix | None, ledger: object, *, concurrency: int, awaited: bool
) -> Iterator[_Session]:
    """Resolve ``client=`` and ``ledger=`` for one call.

    A blocking :class:`SkinFix` runs the batch through its async twin
    (:meth:`SkinFix.to_async`, on aiohttp), made for this call and closed after it; only a
    client with a transport of the user's own is driven from worker threads, so that
    transport carries every request. ``submit`` refuses an :class:`AsyncSkinFix`: its
    connections belong to the event loop that opened them, and the blocking call may run
    on a different loop each time.
    """
    from skinfix_nb.aiohttp_transport import AiohttpTransport
    from skinfix_nb.batch import ThreadedClient
    from skinfix_nb.client import AsyncSkinFix, SkinFix, connect_async
    from skinfix_nb.ledger import Ledger

    if isinstance(client, AsyncSkinFix) and not awaited:
        raise TypeError(
            "df.skinfix.submit takes a blocking client (sf.connect()); with an AsyncSkinFix "
            "use `await df.skinfix.asubmit(...)`, or leave client=None"
        )

    if isinstance(ledger, Ledger):
        book, own_book = ledger, False
    elif ledger is None or isinstance(ledger, str | os.PathLike | sqlite3.Connection):
        book, own_book = Ledger(ledger), True
    else:
        raise TypeError(
            f"ledger= takes a Ledger, a file path, ':memory:' or a sqlite3.Connection, "
            f"not {type(ledger).__name__}"
        )
    threads: ThreadedClient | None = None
    owned: AsyncSkinFix | None = None
    api: RunsAPI
    try:
        if client is None:
            owned = connect_async(
                max_connections=concurrency + 4,
                transport=AiohttpTransport(max_connections=concurrency + 4),
            )
            api = owned
        elif isinstance(client, AsyncSkinFix):
            api = client
        elif isinstance(client, SkinFix) and client._custom_transport:
            threads = ThreadedClient(client, workers=concurrency + 4)  # keep its transport
            api = threads
        elif isinstance(client, SkinFix):
            owned = client.to_async(
                max_connections=concurrency + 4,
                transport=AiohttpTransport(max_connections=concurrency + 4),
            )
            api = owned
        else:
            raise TypeError(
                f"client= takes a SkinFix or AsyncSkinFix (sf.connect() / sf.connect_async()), "
                f"not {type(client).__name__}"
            )
        yield _Session(api, book, owned)
    finally:
        if threads is not None:
            threads.close()
        if own_book:
            book.close()


@pd.api.extensions.register_dataframe_accessor("skinfix")
class SkinFixAccessor:
    """Skin Fix for a DataFrame: ``submit``, ``asubmit``, ``estimate``, ``refresh``, ``cost``.

    Results go to the columns ``run_id``, ``status``, ``output_url``, ``cost`` (USD),
    ``error`` and ``duration_ms``. ``status`` is the API's (``succeeded``, ``failed``,
    ``queued``, ...) or one of ``invalid`` (bad input, never sent), ``not_submitted``
    (stopped by ``max_cost``, credit, timeout or interrupt) and ``error`` (refused by the
    API; ``error`` says why). None of those three was billed.
    """

    def __init__(self, pandas_obj: pd.DataFrame) -> None:
        self._obj = pandas_obj

    # -- money ------------------------------------------------------------------------

    def estimate(
        self,
        column: Hashable = "image_url",
        *,
        client: SkinFix | AsyncSkinFix | None = None,
        ledger: Any = None,
    ) -> Estimate:
        """What :meth:`submit` would do, before anything is sent.

        Counts rows, valid rows, distinct URLs, URLs already run (found in the ledger) and
        the most it would cost. Makes no request; without ``client`` it assumes the API
        ``RUNFLOW_API_KEY`` points at (https only) when that is set, else the local backend.
        """
        from skinfix_nb._urls import is_loopback_url
        from skinfix_nb.batch import column_values, estimate_rows
        from skinfix_nb.client import DEFAULT_BASE_URL, DEFAULT_MODEL, resolve_api_key
        from skinfix_nb.ledger import Ledger
        from skinfix_nb.local.server import shared_server_url

        values = column_values(self._obj, column)
        if client is not None:
            base_url, model = client.base_url, client.model
        else:
            local_url = shared_server_url() or "http://127.0.0.1"
            base_url = DEFAULT_BASE_URL if resolve_api_key() else local_url
            model = DEFAULT_MODEL
        book = ledger if isinstance(ledger, Ledger) else Ledger(ledger)
        try:
            return estimate_rows(
                values,
                model=model,
                https_only=not is_loopback_url(base_url),
                ledger=book.for_api(base_url),
            )
        finally:
            if book is not ledger:
                book.close()

    def cost(self) -> float:
        """Dollars the frame's runs cost: the ``cost`` column summed once per run.

        Rows that share a run (the same URL twice) count once; unknown costs count 0.
        """
        self._require(("cost",))
        costs = pd.to_numeric(self._obj["cost"], errors="coerce")
        if "run_id" in self._obj.columns:
            has_run = self._obj["run_id"].notna().to_numpy()
            once = ~self._obj["run_id"].duplicated().to_numpy() | ~has_run
            costs = costs[once]
        return float(costs.sum(skipna=True))

    # -- running ----------------------------------------------------------------------

    def submit(
        self,
        column: Hashable = "image_url",
        *,
        client: SkinFix | None = None,
        concurrency: int = 8,
        wait: bool = True,
        max_cost: float | Decimal | None = None,
        timeout: float | None = 600.0,
        progress: bool = True,
        inplace: bool = False,
        force: bool = False,
        callback_url: str | CallbackReceiver | None = None,
        metadata: Mapping[str, Any] | None = None,
        ledger: Any = None,
    ) -> pd.DataFrame | None:
        """Run Skin Fix on every row's image; return the frame with the result columns.

        Parameters
        ----------
        column : hashable
            The column holding image URLs (HTTPS for Runflow).
        client : SkinFix, optional
            A blocking client (``sf.connect(...)``); the batch runs on its async twin
            (:meth:`~skinfix_nb.client.SkinFix.to_async`: same key and settings). Default:
            a client of the call's own (``RUNFLOW_API_KEY``, a Colab secret, or the shared
            local backend), closed afterwards.
        concurrency : int
            Runs in flight at once (one connection pool carries them all).
        wait : bool
            Wait until every run has finished; False returns once all are submitted.
        max_cost : float, optional
            Hard cap in USD on what this call may add; in-flight runs count as spent.
            Rows past it are ``not_submitted``.
        timeout : float, optional
            Seconds to wait in all. Rows still running keep their status
            (``refresh()`` later); rows never sent are ``not_submitted``.
        progress : bool
            A progress bar with rows done, failed and dollars spent.
        inplace : bool
            Write the columns into this frame and return None.
        force : bool
            Run again URLs that already have a run in the ledger (billed again).
        callback_url : str or CallbackReceiver, optional
            With a running :class:`~skinfix_nb.callbacks.CallbackReceiver`, completions
            arrive by callback and polling only sweeps runs that are late. A plain URL is
            passed to every run for your own receiver.
        metadata : mapping, optional
            Attached to every run.
        ledger : Ledger, path, ':memory:' or sqlite3.Connection, optional
            Where runs are recorded (default ``$SKINFIX_NB_HOME/ledger.sqlite3``).

        Returns
        -------
        DataFrame or None
            A new frame on the same index, rows in the same order (None with ``inplace``).
            The stop button keeps every run id already created and returns what is done.
        """
        from skinfix_nb.batch import Batch, column_values
        from skinfix_nb.loops import run_sync

        values = column_values(self._obj, column)
        with _session(client, ledger, concurrency=concurrency, awaited=False) as session:
            batch = Batch(
                values,
                client=session.client,
                ledger=session.ledger,
                concurrency=concurrency,
                wait=wait,
                max_cost=max_cost,
                timeout=timeout,
                force=force,
                callback_url=callback_url,
                metadata=metadata,
                progress=progress,
            )
            try:
                run_sync(_drive(batch, session))
            except KeyboardInterrupt:
                batch.wait_finished()  # the loop thread is recording the last run ids
        return self._deliver(batch, inplace=inplace)

    async def asubmit(
        self,
        column: Hashable = "image_url",
        *,
        client: AsyncSkinFix | SkinFix | None = None,
        concurrency: int = 8,
        wait: bool = True,
        max_cost: float | Decimal | None = None,
        timeout: float | None = 600.0,
        progress: bool = True,
        inplace: bool = False,
        force: bool = False,
        callback_url: str | CallbackReceiver | None = None,
        metadata: Mapping[str, Any] | None = None,
        ledger: Any = None,
    ) -> pd.DataFrame | None:
        """:meth:`submit` for ``await`` (a notebook cell, or any running loop).

        Same options, except that ``client`` may also be an
        :class:`~skinfix_nb.client.AsyncSkinFix` of this loop (for the least CPU per
        request give it ``transport=skinfix_nb.aiohttp_transport.AiohttpTransport()``).
        """
        from skinfix_nb.batch import Batch, column_values

        values = column_values(self._obj, column)
        with _session(client, ledger, concurrency=concurrency, awaited=True) as session:
            batch = Batch(
                values,
                client=session.client,
                ledger=session.ledger,
                concurrency=concurrency,
                wait=wait,
                max_cost=max_cost,
                timeout=timeout,
                force=force,
                callback_url=callback_url,
                metadata=metadata,
                progress=progress,
            )
            await _drive(batch, session)
        return self._deliver(batch, inplace=inplace)

    def refresh(
        self,
        *,
        client: SkinFix | None = None,
        wait: bool = False,
        timeout: float | None = 600.0,
        inplace: bool = False,
        ledger: Any = None,
    ) -> pd.DataFrame | None:
        """Ask the API again about rows whose run had not finished; return the updated frame.

        Rows with a terminal or client-side status are left as they are. ``wait=True``
        keeps polling until every such run has finished or ``timeout`` passes.
        """
        from skinfix_nb.batch import refresh_columns
        from skinfix_nb.loops import run_sync

        self._require(("run_id", "status"))
        frame = self._obj
        with _session(client, ledger, concurrency=8, awaited=False) as session:

            async def go() -> dict[str, list[Any]]:
                async with _closing(session):
                    return await refresh_columns(
                        frame,
                        client=session.client,
                        ledger=session.ledger,
                        wait=wait,
                        timeout=timeout,
                    )

            columns = run_sync(go())
        from skinfix_nb.batch import result_frame

        result = result_frame(columns, frame.index)
        if inplace:
            for name in result.columns:
                frame[name] = result[name].array
            return None
        return _with_columns(frame, result)

    # -- looking at results -----------------------------------------------------------

    def gallery(self, **options: Any) -> Any:
        """Before/after thumbnails of the frame's runs (``skinfix_nb.display.gallery_grid``)."""
        from skinfix_nb.display.gallery_grid import gallery

        return gallery(self._obj, **options)

    def review(self, **options: Any) -> Any:
        """Step through results and label them (``skinfix_nb.display.review_widget``)."""
        from skinfix_nb.display.review_widget import review

        return review(self._obj, **options)

    def qa(self, **options: Any) -> pd.DataFrame:
        """Before/after quality metrics per row (``skinfix_nb.quality.qa_frame``)."""
        from skinfix_nb import quality

        result: pd.DataFrame = quality.qa_frame(self._obj, **options)
        return result

    def report(self, path: str | os.PathLike[str], **options: Any) -> Any:
        """Write an HTML before/after report to ``path`` (``skinfix_nb.quality.report``)."""
        from skinfix_nb.quality.report import report

        return report(self._obj, path, **options)

    # -- helpers ----------------------------------------------------------------------

    def _require(self, names: tuple[str, ...]) -> None:
        missing = [name for name in names if name not in self._obj.columns]
        if missing:
            raise KeyError(
                f"this frame has no {', '.join(map(repr, missing))} column: "
                "call df.skinfix.submit(...) first and use the frame it returns"
            )

    def _deliver(self, batch: Batch, *, inplace: bool) -> pd.DataFrame | None:
        result = batch.frame(self._obj.index)
        if inplace:
            for name in result.columns:
                self._obj[name] = result[name].array
            return None
        return _with_columns(self._obj, result)


async def _drive(batch: Batch, session: _Session) -> None:
    async with _closing(session):
        await batch.run()


@contextlib.asynccontextmanager
async def _closing(session: _Session) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await session.aclose()
