"""The batch engine: a column of image URLs in, one run per distinct URL out, never paid twice.

:class:`Batch` plans the work (row checks, one job per distinct URL, the ledger's memory of
earlier calls), then runs it on one event loop: at most ``concurrency`` runs in flight, a
budget that counts in-flight runs as spent, and a single poller that asks
``GET /v1/runs`` about every pending run at once, timed for when runs are expected to end.
The accessor (``df.skinfix``) is a thin wrapper; this module knows nothing of notebooks.

Row statuses are the API's own plus three client-side ones that were never billed:
``invalid`` (bad input, not sent), ``not_submitted`` (stopped by the budget, the credit, a
timeout or an interrupt) and ``error`` (the API refused the run; ``error`` says why).
"""

from __future__ import annotations

import asyncio
import math
import queue
import re
import statistics
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

import pandas as pd

from skinfix_nb._urls import is_loopback_url
from skinfix_nb.errors import (
    APIConnectionError,
    APIError,
    InsufficientCreditError,
    RateLimitError,
    RunflowError,
    ServerError,
    redact_url,
)
from skinfix_nb.ledger import Claim, Ledger, client_ref_for, new_owner, release_owner
from skinfix_nb.models import TERMINAL_STATUSES, Run, RunPage

if TYPE_CHECKING:
    from skinfix_nb.callbacks import CallbackEvent, CallbackReceiver
    from skinfix_nb.client import SkinFix

T = TypeVar("T")

__all__ = [
    "INVALID",
    "NOT_SUBMITTED",
    "OUTPUT_COLUMNS",
    "PRICE_PER_IMAGE_USD",
    "SUBMIT_ERROR",
    "Batch",
    "Estimate",
    "RowCheck",
    "RunsAPI",
    "ThreadedClient",
    "check_image_url",
    "estimate_rows",
    "fetch_runs",
    "refresh_columns",
    "result_frame",
]

PRICE_PER_IMAGE_USD = Decimal("0.12")
"""What Runflow bills for one successful ``runflow/skin-fix`` run."""

INVALID = "invalid"
NOT_SUBMITTED = "not_submitted"
SUBMIT_ERROR = "error"
CLIENT_STATUSES = frozenset({INVALID, NOT_SUBMITTED, SUBMIT_ERROR})
OUTPUT_COLUMNS = ("run_id", "status", "output_url", "cost", "error", "duration_ms")

# Fields the poller asks for: enough to fill the output columns, nothing more.
POLL_FIELDS = (
    "id",
    "status_code",
    "client_ref",
    "output",
    "cost",
    "duration_ms",
    "created_at",
    "completed_at",
    "failure_code",
    "failure_message",
)
LIST_PAGE_SIZE = 500
# Below this many pending runs one GET each is cheaper than a listing.
_FEW_RUNS = 3
# ``created_at>T`` is strict; a millisecond of slack keeps the oldest pending run in the
# listing. A server that rounds timestamps more coarsely only costs GETs for the rest.
_LISTING_SLACK = timedelta(milliseconds=1)
_FIRST_CHECK_S = 0.25  # first look at a run before any duration has been observed
_MIN_POLL_GAP_S = 0.02
_MAX_POLL_GAP_S = 5.0
_BACKOFF = 1.5
_COALESCE = 0.1  # fraction of a typical run within which due checks are merged
_BATCHING = 0.01  # fraction of a typical run a poll may wait for more runs to fall due
_LOOKUP_CONCURRENCY = 8
_INTERRUPT_GRACE_S = 10.0
_BUSY_RECHECK_S = 0.05  # how soon to look again at a ref another batch is sending
_CALLBACK_GRACE_S = 5.0  # with callbacks, a run is polled only this long after it was due


# -- row checks --------------------------------------------------------------------------

# ``\s`` matches exactly what str.isspace() calls whitespace, Unicode included
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


@dataclass(frozen=True)
class RowCheck:
    """The verdict on one cell: ``url`` when it may be sent, else ``error`` says why not."""

    url: str | None
    error: str | None


def _describe(value: object) -> str:
    text = redact_url(value) if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


def check_image_url(value: object, *, https_only: bool) -> RowCheck:
    """Decide whether a cell holds an image URL the API can take, never raising.

    Surrounding whitespace is stripped. ``https_only`` is set when talking to the real API,
    which takes HTTPS image URLs only; a loopback server also accepts ``http://``.
    """
    if value is None or (not isinstance(value, str) and _is_missing(value)):
        return RowCheck(None, "missing value: expected an image URL")
    if not isinstance(value, str):
        return RowCheck(
            None, f"expected an image URL string, got {type(value).__name__} {_describe(value)}"
        )
    url = value.strip()
    if not url:
        return RowCheck(None, "empty string: expected an image URL")
    upload_hint = "upload the file first with client.upload(path) and use the URL it returns"
    if _SPACE_OR_CONTROL.search(url):
        return RowCheck(
            None, f"not a URL (contains whitespace or control characters): {_describe(url)}"
        )
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        return RowCheck(None, f"malformed URL: {_describe(url)}")
    scheme = parts.scheme.lower()
    if scheme == "data":
        return RowCheck(None, f"data: URIs are not sent; {upload_hint}")
    if scheme in {"", "file"} or (len(scheme) == 1 and url[1:3] in {":\\", ":/"}):
        return RowCheck(None, f"looks like a file path, not a URL: {_describe(url)}; {upload_hint}")
    if scheme not in {"http", "https"}:
        return RowCheck(
            None, f"unsupported URL scheme {scheme!r} in {_describe(url)}: expected https://"
        )
    if not hostname:
        return RowCheck(None, f"URL has no host: {_describe(url)}")
    if scheme == "http" and https_only:
        return RowCheck(
            None,
            f"http:// URL refused: Runflow takes https:// image URLs only ({_describe(url)}); "
            f"serve it over HTTPS or {upload_hint}",
        )
    return RowCheck(url, None)


def _is_missing(value: object) -> bool:
    if isinstance(value, Decimal):  # pd.isna raises on a signalling NaN
        return value.is_nan()
    try:
        missing = pd.isna(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, ArithmeticError):
        return False
    return bool(missing) if isinstance(missing, bool) else False


# -- the plan ----------------------------------------------------------------------------


@dataclass
class _Job:
    """One distinct image URL: the rows that share it and what became of its run."""

    url: str
    url_key: str
    client_ref: str
    generation: int
    rows: list[int]
    run: Run | None = None
    run_id: str | None = None
    status: str | None = None  # None until known: the API's status or a client-side one
    error: str | None = None
    reused: bool = False
    paid_before: bool = False
    created_at: datetime | None = None  # server time, from the run or the ledger
    submitted_at: float | None = None  # loop time when the POST returned
    next_check: float = 0.0
    misses: int = 0
    reserved: Decimal = Decimal(0)
    maybe_created: bool = False  # a POST failed without an answer: a run may exist

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES or self.status in CLIENT_STATUSES

    @property
    def tracked(self) -> bool:
        return self.run_id is not None and not self.finished


@dataclass(frozen=True)
class Estimate:
    """What :meth:`df.skinfix.estimate` reports before anything is sent."""

    rows: int
    valid: int
    invalid: int
    distinct_urls: int
    already_paid: int
    to_submit: int
    usd: float
    price_per_image_usd: float

    def __str__(self) -> str:
        return (
            f"{self.rows} rows: {self.valid} valid ({self.invalid} invalid), "
            f"{self.distinct_urls} distinct URLs, {self.already_paid} already run, "
            f"{self.to_submit} to submit: at most ${self.usd:.2f} "
            f"at ${self.price_per_image_usd:.2f} per image"
        )

    def _repr_html_(self) -> str:
        return f"<code>{self}</code>"


class _Plan:
    """Rows checked, grouped into jobs, and matched against the ledger."""

    def __init__(
        self,
        values: Sequence[object],
        *,
        model: str,
        https_only: bool,
        ledger: Ledger,
        force: bool,
    ) -> None:
        self.size = len(values)
        self.row_errors: dict[int, str] = {}
        by_url: dict[str, _Job] = {}
        for position, value in enumerate(values):
            check = check_image_url(value, https_only=https_only)
            if check.url is None:
                self.row_errors[position] = str(check.error)
                continue
            job = by_url.get(check.url)
            if job is None:
                key = client_ref_for(check.url, model)
                job = _Job(url=check.url, url_key=key, client_ref=key, generation=0, rows=[])
                by_url[check.url] = job
            job.rows.append(position)
        self.jobs = list(by_url.values())
        known = ledger.latest(job.url_key for job in self.jobs)
        for job in self.jobs:
            entry = known.get(job.url_key)
            if entry is None:
                continue
            if force and entry.run_id is not None:
                job.generation = entry.generation + 1
                job.client_ref = client_ref_for(job.url, model, generation=job.generation)
                continue
            job.generation = entry.generation
            job.client_ref = entry.client_ref
            if entry.run_id is not None:
                # Followed up like any pending run: the first poll brings fresh output URLs.
                job.run_id = entry.run_id
                job.reused = True
                job.paid_before = entry.status not in {"failed", "canceled"}
                job.created_at = _parse_iso(entry.created_at)


def estimate_rows(
    values: Sequence[object], *, model: str, https_only: bool, ledger: Ledger
) -> Estimate:
    """Count rows, valid rows, distinct URLs, runs already made, and the dollars still to spend."""
    plan = _Plan(values, model=model, https_only=https_only, ledger=ledger, force=False)
    already = sum(1 for job in plan.jobs if job.reused and job.paid_before)
    to_submit = sum(1 for job in plan.jobs if not job.reused)
    return Estimate(
        rows=plan.size,
        valid=plan.size - len(plan.row_errors),
        invalid=len(plan.row_errors),
        distinct_urls=len(plan.jobs),
        already_paid=already,
        to_submit=to_submit,
        usd=float(PRICE_PER_IMAGE_USD * to_submit),
        price_per_image_usd=float(PRICE_PER_IMAGE_USD),
    )


# -- budget ------------------------------------------------------------------------------


class _Budget:
    """A hard cap on new spending: a run is paid for from its POST until it ends unbilled."""

    def __init__(self, max_cost: float | Decimal | None, price: Decimal) -> None:
        self.cap = None if max_cost is None else Decimal(str(max_cost))
        self.price = price
        self.committed = Decimal(0)  # in-flight reservations plus what finished runs cost
        self.spent = Decimal(0)  # what finished runs actually cost

    def try_reserve(self) -> Decimal | None:
        if self.cap is not None and self.committed + self.price > self.cap:
            return None
        self.committed += self.price
        return self.price

    def settle(self, reserved: Decimal, actual: Decimal) -> None:
        """Replace a reservation by what the run really cost (never more than reserved)."""
        charged = min(actual, reserved) if reserved else actual
        self.committed += charged - reserved
        self.spent += actual

    def release(self, reserved: Decimal) -> None:
        self.committed -= reserved


# -- the client seen by the engine -------------------------------------------------------


class RunsAPI(Protocol):
    """What the engine needs from a client: :class:`~skinfix_nb.client.AsyncSkinFix` has it."""

    @property
    def model(self) -> str: ...
    @property
    def base_url(self) -> str: ...
    async def submit(
        self,
        image_url: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        client_ref: str | None = None,
        idempotency_key: str | None = None,
    ) -> Run: ...
    async def get(self, run: Run | str) -> Run: ...
    async def list_runs(
        self,
        *,
        limit: int = 50,
        client_ref: str | None = None,
        status: str | None = None,
        created_after: datetime | str | None = None,
        fields: list[str] | None = None,
        q: str | None = None,
        cursor: str | None = None,
    ) -> RunPage: ...
    async def find_by_client_ref(self, client_ref: str) -> Run | None: ...


class ThreadedClient:
    """A blocking :class:`~skinfix_nb.client.SkinFix` driven from the event loop.

    For a client built with a blocking ``transport=`` of the user's own (a proxy, a test
    double), which its async twin could not use: each call runs on a worker thread of a
    pool sized to the batch; httpx's blocking pool is thread-safe and shared by every call.
    """

    def __init__(self, client: SkinFix, *, workers: int) -> None:
        self._client = client
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="skinfix-nb")
        self.model = client.model
        self.base_url = client.base_url
        # Set by the worker thread that meets a 402, so the other workers stop creating at
        # once instead of after the answer has travelled back to the event loop.
        self._refused: InsufficientCreditError | None = None

    async def _call(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(function, *args, **kwargs))

    async def submit(
        self,
        image_url: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        client_ref: str | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        return await self._call(
            self._submit_unless_refused,
            image_url,
            metadata=metadata,
            callback_url=callback_url,
            client_ref=client_ref,
            idempotency_key=idempotency_key,
        )

    def _submit_unless_refused(self, image_url: str, **options: Any) -> Run:
        if self._refused is not None:
            raise self._refused
        try:
            return self._client.submit(image_url, **options)
        except InsufficientCreditError as exc:
            self._refused = exc
            raise

    async def get(self, run: Run | str) -> Run:
        return await self._call(self._client.get, run)

    async def list_runs(
        self,
        *,
        limit: int = 50,
        client_ref: str | None = None,
        status: str | None = None,
        created_after: datetime | str | None = None,
        fields: list[str] | None = None,
        q: str | None = None,
        cursor: str | None = None,
    ) -> RunPage:
        return await self._call(
            self._client.list_runs,
            limit=limit,
            client_ref=client_ref,
            status=status,
            created_after=created_after,
            fields=fields,
            q=q,
            cursor=cursor,
        )

    async def find_by_client_ref(self, client_ref: str) -> Run | None:
        return await self._call(self._client.find_by_client_ref, client_ref)

    def close(self) -> None:
        """Stop the worker threads (the wrapped client stays open: it is the caller's)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


# -- polling -----------------------------------------------------------------------------


async def fetch_runs(
    client: RunsAPI,
    run_ids: Sequence[str],
    *,
    must: Sequence[str] | None = None,
    created_after: datetime | None = None,
) -> dict[str, Run]:
    """The current state of many runs for few requests.

    One ``GET /v1/runs`` walk over the window the runs were created in (``fields=`` keeps
    it small) covers most of them; runs in ``must`` (default: all) that the listing did
    not cover are fetched one by one with ``GET /v1/runs/{id}``. Transient failures leave
    a run out of the answer rather than raising: the caller asks again later.
    """
    must = list(run_ids) if must is None else must
    seen: dict[str, Run] = {}
    if len(run_ids) > _FEW_RUNS:
        seen = await _list_runs(client, set(run_ids), created_after)
    missing = [run_id for run_id in must if run_id not in seen]
    if missing:
        gate = asyncio.Semaphore(_LOOKUP_CONCURRENCY)

        async def fetch(run_id: str) -> Run | None:
            async with gate:
                try:
                    return await client.get(run_id)
                except (APIError, APIConnectionError):
                    return None

        for run in await asyncio.gather(*(fetch(run_id) for run_id in missing)):
            if run is not None and run.id is not None:
                seen[run.id] = run
    return seen


async def _list_runs(
    client: RunsAPI, wanted: set[str], created_after: datetime | None
) -> dict[str, Run]:
    since = created_after - _LISTING_SLACK if created_after is not None else None
    seen: dict[str, Run] = {}
    cursor: str | None = None
    for _ in range(math.ceil(len(wanted) / LIST_PAGE_SIZE) + 1):
        try:
            page = await client.list_runs(
                limit=LIST_PAGE_SIZE, created_after=since, fields=list(POLL_FIELDS), cursor=cursor
            )
        except (APIError, APIConnectionError):
            break  # the runs still due are fetched one by one instead
        for run in page.items:
            if run.id in wanted:
                seen[run.id] = run
        cursor = page.next
        if cursor is None or len(seen) == len(wanted):
            break
    return seen


# -- the engine --------------------------------------------------------------------------


class _Progress(Protocol):
    def update(self, n: float | None = 1) -> bool | None: ...
    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None: ...
    def close(self) -> None: ...


class _NoProgress:
    def update(self, n: float | None = 1) -> bool | None:
        return None

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        return None

    def close(self) -> None:
        return None


@dataclass
class _Durations:
    """Observed run durations, to time the next poll for when runs should be done."""

    samples: list[float] = field(default_factory=list)
    _typical: float | None = None

    def add(self, seconds: float) -> None:
        if seconds > 0:
            self.samples.append(seconds)
            del self.samples[:-64]
            self._typical = statistics.median(self.samples)

    def typical(self) -> float | None:
        return self._typical


class Batch:
    """One ``df.skinfix.submit`` call: plan, submit, poll; the result is kept on the object.

    The state lives here rather than in a return value so that an interrupted call (the
    notebook's stop button) still hands back every run id created so far: call :meth:`run`,
    and read :meth:`columns` whatever happened.

    Parameters
    ----------
    values : sequence
        The cells of the URL column, in row order.
    client : AsyncSkinFix or ThreadedClient
        The client; its connection pool carries every request.
    ledger : Ledger
        Where intents and run ids are recorded (scoped here to the client's API).
    concurrency : int
        Runs in flight at once (submitted and not yet finished).
    wait : bool
        Wait for every run to finish (else return once all are submitted).
    max_cost : float or None
        Hard cap in USD on new spending by this call; in-flight runs count as spent.
    timeout : float or None
        Seconds to wait in all; rows still unsent then are ``not_submitted``.
    force : bool
        Send again even URLs the ledger already has runs for.
    callback_url : str, CallbackReceiver or None
        A URL is passed to every run (the caller receives the callbacks). A running
        :class:`~skinfix_nb.callbacks.CallbackReceiver` (without a handler) is listened
        to: completions come from it, and polling only sweeps runs that are late.
    metadata : mapping or None
        Passed to every run.
    progress : bool
        Show a ``tqdm.auto`` bar: rows done, failed, dollars spent.
    max_poll_interval : float
        Longest pause between two looks at a pending run, in seconds.
    """

    def __init__(
        self,
        values: Sequence[object],
        *,
        client: RunsAPI,
        ledger: Ledger,
        concurrency: int = 8,
        wait: bool = True,
        max_cost: float | Decimal | None = None,
        timeout: float | None = 600.0,
        force: bool = False,
        callback_url: str | CallbackReceiver | None = None,
        metadata: Mapping[str, Any] | None = None,
        progress: bool = True,
        max_poll_interval: float = _MAX_POLL_GAP_S,
    ) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
        if max_cost is not None and not (
            isinstance(max_cost, int | float | Decimal) and max_cost >= 0
        ):
            raise ValueError(f"max_cost must be a non-negative number of USD, got {max_cost!r}")
        self.client = client
        self.ledger = ledger.for_api(client.base_url)
        self.concurrency = concurrency
        self.wait = wait
        self.timeout = timeout
        self._receiver: CallbackReceiver | None = None
        self.callback_url: str | None = None
        if isinstance(callback_url, str) or callback_url is None:
            self.callback_url = callback_url
        else:
            self._receiver, self.callback_url = callback_url, callback_url.url
        self.metadata = dict(metadata) if metadata is not None else None
        self.max_poll_interval = max_poll_interval
        self.show_progress = progress
        self.plan = _Plan(
            values,
            model=client.model,
            https_only=not is_loopback_url(client.base_url),
            ledger=self.ledger,
            force=force,
        )
        self.budget = _Budget(max_cost, PRICE_PER_IMAGE_USD)
        self.stop_reason: str | None = None
        self._durations = _Durations()
        self._changed = asyncio.Event()  # a run became pending, or the work list changed
        # when the waiting poller looks next (inf: only on a change); -inf while it is busy,
        # since it then sees new runs when it next looks at the pending set
        self._poller_wakes_at = -math.inf
        self._slot_freed = asyncio.Event()  # a slot or some budget came free
        self._in_flight = 0
        self._pending: dict[str, _Job] = {}  # run id -> job, for runs not finished yet
        self._deadline: float | None = None
        self._finished = threading.Event()
        self._owner = new_owner()
        self._progress: _Progress = _NoProgress()
        self._failed_rows = 0

    # -- results ----------------------------------------------------------------------

    def columns(self) -> dict[str, list[Any]]:
        """The output columns, one entry per input row, in row order."""
        cols = _empty_columns(self.plan.size)
        for position, message in self.plan.row_errors.items():
            cols["status"][position] = INVALID
            cols["error"][position] = message
        for job in self.plan.jobs:
            values: dict[str, Any] = dict.fromkeys(OUTPUT_COLUMNS)
            values["cost"] = math.nan
            if job.run is not None:
                values.update(_run_values(job.run))
            values["run_id"] = job.run_id
            values["status"] = job.status or values["status"]
            values["status"] = values["status"] or ("queued" if job.run_id else NOT_SUBMITTED)
            values["error"] = job.error or values["error"]
            for position in job.rows:
                for name, value in values.items():
                    cols[name][position] = value
        return cols

    def frame(self, index: pd.Index[Any]) -> pd.DataFrame:
        """The output columns as a DataFrame on ``index`` (any index: kept as it is)."""
        return result_frame(self.columns(), index)

    # -- running ----------------------------------------------------------------------

    async def run(self) -> None:
        """Submit and (with ``wait``) follow every job; stop cleanly when cancelled.

        Cancellation (KeyboardInterrupt in ``asyncio.run``, or ``task.cancel()``) stops new
        submissions, lets POSTs already on the wire finish so their run ids are kept, marks
        the rest ``not_submitted`` and re-raises.
        """
        self._progress = self._open_progress()
        try:
            await self._run()
        except asyncio.CancelledError:
            self.stop_reason = self.stop_reason or "interrupted"
            raise
        finally:
            self._finish_unsent()
            release_owner(self._owner)
            self._progress.close()
            self._finished.set()

    def wait_finished(self, timeout: float = _INTERRUPT_GRACE_S + 5.0) -> bool:
        """Block until :meth:`run` has returned or raised (from another thread)."""
        return self._finished.wait(timeout)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else loop.time() + self.timeout
        self._deadline = deadline
        for job in self.plan.jobs:
            if job.tracked:  # created by an earlier call: look at it in the first poll
                job.next_check = loop.time()
                self._pending[str(job.run_id)] = job
        posts: set[asyncio.Task[None]] = set()
        poller = asyncio.create_task(self._poll_forever(deadline)) if self.wait else None
        listener = (
            asyncio.create_task(self._listen(self._receiver))
            if self.wait and self._receiver is not None
            else None
        )
        try:
            for job in self.plan.jobs:
                if job.run_id is not None or job.status is not None:
                    continue
                if not await self._wait_for_slot(deadline):
                    break
                reserved = self.budget.try_reserve()
                # Over the cap with runs in flight: one that fails unbilled frees money.
                while reserved is None and self._in_flight > 0 and self.stop_reason is None:
                    await self._wait_for_change(self._slot_freed, deadline)
                    if deadline is not None and loop.time() >= deadline:
                        self.stop_reason = "timeout"
                        break
                    reserved = self.budget.try_reserve()
                if reserved is None:
                    self.stop_reason = self.stop_reason or "max_cost"
                    break
                if self.stop_reason is not None:
                    self.budget.release(reserved)
                    break
                job.reserved = reserved
                self._in_flight += 1
                task = asyncio.create_task(self._submit(job))
                posts.add(task)
                task.add_done_callback(posts.discard)
            await self._drain(posts)
            self._finish_unsent()
            if poller is not None:
                await poller
        except asyncio.CancelledError:
            self.stop_reason = self.stop_reason or "interrupted"
            if posts:  # let POSTs already sent come back so their run ids are recorded
                await asyncio.wait(list(posts), timeout=_INTERRUPT_GRACE_S)
            raise
        finally:
            for helper in (poller, listener):
                if helper is not None:
                    helper.cancel()
                    await asyncio.gather(helper, return_exceptions=True)
            for task in posts:
                task.cancel()

    async def _drain(self, posts: set[asyncio.Task[None]]) -> None:
        while posts:
            await asyncio.gather(*list(posts))

    async def _wait_for_slot(self, deadline: float | None) -> bool:
        loop = asyncio.get_running_loop()
        while self._in_flight >= self.concurrency and self.stop_reason is None:
            await self._wait_for_change(self._slot_freed, deadline)
            if deadline is not None and loop.time() >= deadline:
                self.stop_reason = "timeout"
        return self.stop_reason is None

    @staticmethod
    async def _wait_for_change(event: asyncio.Event, deadline: float | None) -> None:
        loop = asyncio.get_running_loop()
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that lands as the event fires, and the batch then never stops on Ctrl-C
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            return
        event.clear()

    async def _submit(self, job: _Job) -> None:
        """Claim the ref in the ledger, look it up if an earlier batch may have sent it, POST.

        A ref another live batch is sending right now (another kernel, another dask
        partition) is not sent twice: this one waits for that batch's run id and follows it.
        """
        loop = asyncio.get_running_loop()
        claim = self._claim(job)
        pause = _BUSY_RECHECK_S
        while claim.outcome == "busy" and self.stop_reason is None:
            if self._deadline is not None and loop.time() + pause > self._deadline:
                break
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)
            claim = self._claim(job)
        run: Run | None = None
        if claim.outcome == "has_run":
            self._adopt(job, claim.entry.run_id)
        elif claim.outcome == "busy":
            job.status = NOT_SUBMITTED
            job.error = "being sent by another process right now; run again to pick up its run"
        else:
            try:
                if claim.resumed:
                    found = await self.client.find_by_client_ref(job.client_ref)
                    if found is not None and found.id is not None:
                        self.ledger.record_run(
                            job.client_ref,
                            run_id=found.id,
                            status=found.status,
                            created_at=_iso(found.created_at),
                        )
                        self._adopt(job, found.id)
                if job.run_id is None:
                    run = await self.client.submit(
                        job.url,
                        metadata=self.metadata,
                        callback_url=self.callback_url,
                        client_ref=job.client_ref,
                        idempotency_key=job.client_ref,
                    )
            except InsufficientCreditError as exc:
                self.ledger.drop_intent(job.client_ref, owner=self._owner)
                self.stop_reason = "credit"
                job.status, job.error = NOT_SUBMITTED, exc.message or "insufficient credit"
            except (APIConnectionError, ServerError, RateLimitError) as exc:
                # Unknown whether a run was created: the intent stays for the next call,
                # and the money stays reserved.
                job.status, job.error = SUBMIT_ERROR, f"{exc} (the next call checks again)"
                job.maybe_created = True
            except APIError as exc:
                self.ledger.drop_intent(job.client_ref, owner=self._owner)
                job.status, job.error = SUBMIT_ERROR, exc.message or str(exc)
            except RunflowError as exc:  # refused before sending (e.g. a bad argument)
                self.ledger.drop_intent(job.client_ref, owner=self._owner)
                job.status, job.error = SUBMIT_ERROR, str(exc)
        if run is not None and run.id is not None:
            self.ledger.record_run(
                job.client_ref,
                run_id=run.id,
                status=run.status,
                created_at=_iso(run.created_at),
                cost=_text(run.cost),
                duration_ms=run.duration_ms,
            )
            job.run_id, job.run, job.created_at = run.id, run, run.created_at
            job.status = run.status if run.is_terminal else None
        if job.run_id is not None and not job.finished:
            if self.wait:
                job.submitted_at = loop.time()
                job.next_check = job.submitted_at + self._first_check_after()
                self._follow(job)
            elif job.reserved:  # wait=False: the slot was only the POST
                self._in_flight -= 1
                self._slot_freed.set()
            return
        self._settle(job)

    def _claim(self, job: _Job) -> Claim:
        return self.ledger.claim(
            client_ref=job.client_ref,
            url_key=job.url_key,
            generation=job.generation,
            model=self.client.model,
            image_url=job.url,
            owner=self._owner,
        )

    def _adopt(self, job: _Job, run_id: str | None) -> None:
        """Follow a run this call did not create (another call made it): no slot, no charge."""
        job.run_id = run_id
        job.reused = True
        self.budget.release(job.reserved)
        job.reserved = Decimal(0)
        self._in_flight -= 1
        self._slot_freed.set()
        job.next_check = asyncio.get_running_loop().time()
        self._follow(job)

    def _follow(self, job: _Job) -> None:
        """Poll this run from now on; wake the poller only if it must look sooner than planned."""
        self._pending[str(job.run_id)] = job
        if job.next_check < self._poller_wakes_at:
            self._changed.set()

    def _settle(self, job: _Job) -> None:
        """A job is finished: book its cost, free its slot, move the progress bar."""
        self._pending.pop(str(job.run_id), None)
        actual = job.run.cost if job.run is not None and job.run.cost is not None else None
        if actual is None and job.run is not None and job.run.succeeded:
            actual = self.budget.price
        if job.reserved:
            if not job.maybe_created:  # else keep the reservation: never under-count
                self.budget.settle(job.reserved, actual or Decimal(0))
            self._in_flight -= 1
            job.reserved = Decimal(0)
            self._slot_freed.set()
        if job.status in {"failed", "canceled", SUBMIT_ERROR}:
            self._failed_rows += len(job.rows)
        self._progress.update(len(job.rows))
        self._progress.set_postfix_str(
            f"failed={self._failed_rows}, spent=${self.budget.spent:.2f}", refresh=False
        )
        self._changed.set()

    def _finish_unsent(self) -> None:
        for job in self.plan.jobs:
            if job.run_id is None and job.status is None and not job.reserved:
                job.status = NOT_SUBMITTED
                job.error = _STOP_MESSAGES.get(self.stop_reason or "", "not sent")
        self._changed.set()

    # -- polling ----------------------------------------------------------------------

    async def _poll_forever(self, deadline: float | None) -> None:
        """Look at pending runs when they are due, all of them in one listing when possible."""
        loop = asyncio.get_running_loop()
        last_poll = -math.inf
        while True:
            pending = list(self._pending.values())
            if not pending:
                if self._all_sent():
                    return
                await self._poller_wait(until=deadline)
                continue
            now = loop.time()
            if deadline is not None and now >= deadline:
                self.stop_reason = self.stop_reason or "timeout"
                return
            typical = self._durations.typical()
            min_gap = max(_MIN_POLL_GAP_S, (typical or 0.0) / 20)
            batching = _BATCHING * (typical or _FIRST_CHECK_S)
            due = max(_batched_due(pending, batching), last_poll + min_gap)
            if due > now:
                self._changed.clear()
                await self._poller_wait(until=due if deadline is None else min(due, deadline))
                continue
            last_poll = loop.time()
            await self._poll_once(pending)

    async def _poller_wait(self, *, until: float | None) -> None:
        """Wait for a change or for ``until`` (loop time); a new run due sooner wakes it."""
        self._poller_wakes_at = math.inf if until is None else until
        try:
            await self._wait_for_change(self._changed, until)
        finally:
            self._poller_wakes_at = -math.inf

    def _all_sent(self) -> bool:
        return all(job.run_id is not None or job.status is not None for job in self.plan.jobs)

    async def _poll_once(self, pending: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        created = [job.created_at for job in pending if job.created_at is not None]
        seen = await fetch_runs(
            self.client,
            [str(job.run_id) for job in pending],
            must=[str(job.run_id) for job in pending if job.next_check <= now],
            created_after=min(created) if created else None,
        )
        self._apply(pending, seen, now=loop.time())

    def _apply(self, pending: list[_Job], seen: Mapping[str, Run], *, now: float) -> None:
        updates: list[dict[str, object]] = []
        typical = self._durations.typical()
        # A run seen unfinished that was due a moment from now is not looked at again
        # straight away: that keeps POSTs sent a few ms apart from costing one poll each.
        window = _COALESCE * (typical or _FIRST_CHECK_S)
        for job in pending:
            run = seen.get(str(job.run_id))
            if run is None:
                if job.next_check <= now:
                    self._backoff(job, now, typical)
                continue
            job.run = run
            job.created_at = run.created_at or job.created_at
            if not run.is_terminal:
                if job.next_check <= now + window:
                    self._backoff(job, now, typical)
                continue
            job.status = run.status
            self._durations.add(_duration_s(run, job, now))
            updates.append(
                {
                    "run_id": job.run_id,
                    "status": run.status,
                    "cost": _text(run.cost),
                    "duration_ms": run.duration_ms,
                }
            )
            self._settle(job)
        self.ledger.update_statuses(updates)

    def _first_check_after(self) -> float:
        typical = self._durations.typical()
        if self._receiver is not None:
            return max(_CALLBACK_GRACE_S, 2 * (typical or 0.0))
        return typical or _FIRST_CHECK_S

    async def _listen(self, receiver: CallbackReceiver) -> None:
        """Take completions from the callback receiver as they arrive, all waiting at once."""
        loop = asyncio.get_running_loop()
        while True:
            arrived = await asyncio.to_thread(_next_events, receiver.events, 0.25)
            seen = {
                event.run_id: _billed(event.run)
                for event in arrived
                if event.run_id in self._pending and event.run.is_terminal
            }
            if seen:
                jobs = [self._pending[run_id] for run_id in seen]
                self._apply(jobs, seen, now=loop.time())

    def _backoff(self, job: _Job, now: float, typical: float | None) -> None:
        base = 0.1 * typical if typical else _FIRST_CHECK_S
        wait = base * _BACKOFF**job.misses
        job.misses += 1
        job.next_check = now + min(max(wait, _MIN_POLL_GAP_S), self.max_poll_interval)

    # -- progress ---------------------------------------------------------------------

    def _open_progress(self) -> _Progress:
        if not self.show_progress:
            return _NoProgress()
        from tqdm.auto import tqdm

        total = self.plan.size - len(self.plan.row_errors)
        bar: _Progress = tqdm(total=total, desc="skin-fix", unit="img", leave=True)
        return bar


_STOP_MESSAGES = {
    "max_cost": "not sent: max_cost reached (in-flight runs count as spent)",
    "credit": "not sent: Runflow answered 402 INSUFFICIENT_CREDIT; top up and run again",
    "timeout": "not sent: timeout reached before a slot was free",
    "interrupted": "not sent: interrupted; run again to send the rest",
}


def _batched_due(pending: Sequence[_Job], wait: float) -> float:
    """When to poll: the latest check due within ``wait`` of the earliest one.

    Runs sent in one burst fall due a few milliseconds apart. Waiting that long for the
    last of them lets one poll see them all, where polling at each due time would cost
    a request (and a listing to parse) per run and split the burst for good.
    """
    first = min(job.next_check for job in pending)
    return max(check for job in pending if (check := job.next_check) <= first + wait)


def _duration_s(run: Run, job: _Job, now: float) -> float:
    if run.created_at and run.completed_at:
        return (run.completed_at - run.created_at).total_seconds()
    duration_ms = run.duration_ms
    if duration_ms is not None:
        return duration_ms / 1000
    return now - job.submitted_at if job.submitted_at is not None else 0.0


def _next_events(events: queue.Queue[CallbackEvent], timeout: float) -> list[CallbackEvent]:
    """Every event waiting now, else the first to arrive within ``timeout`` (else none).

    Callbacks of runs sent together arrive together; taking them in one hop to the event
    loop costs one thread hand-over and one ledger write for all of them.
    """
    try:
        arrived = [events.get(timeout=timeout)]
    except queue.Empty:
        return []
    while True:
        try:
            arrived.append(events.get_nowait())
        except queue.Empty:
            return arrived


def _billed(run: Run) -> Run:
    """A callback carries no cost: fill in Runflow's price (failed runs are not billed)."""
    if run.cost is not None:
        return run
    return replace(run, cost=PRICE_PER_IMAGE_USD if run.succeeded else Decimal(0))


def _parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _text(cost: Decimal | None) -> str | None:
    return str(cost) if cost is not None else None


# -- frames ------------------------------------------------------------------------------


def _empty_columns(size: int) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {name: [None] * size for name in OUTPUT_COLUMNS}
    cols["cost"] = [math.nan] * size
    return cols


def _run_values(run: Run) -> dict[str, Any]:
    """One row's output values from a run."""
    error = None
    if run.status in {"failed", "canceled"}:
        error = run.failure_message or run.failure_code or f"run {run.status}"
    return {
        "run_id": run.id,
        "status": run.status,
        "output_url": run.output_url,
        "cost": float(run.cost) if run.cost is not None else math.nan,
        "error": error,
        "duration_ms": run.duration_ms,
    }


def _cell(value: object) -> Any:
    """A cell read back from a frame, with pandas' missing markers turned into None."""
    return None if value is None or _is_missing(value) else value


async def refresh_columns(
    frame: pd.DataFrame,
    *,
    client: RunsAPI,
    ledger: Ledger,
    wait: bool,
    timeout: float | None,
) -> dict[str, list[Any]]:
    """The output columns of ``frame`` with every unfinished run asked about again.

    Rows whose status is terminal or client-side are kept as they are. The ledger learns
    the new statuses. With ``wait`` the runs are polled until they finish or ``timeout``.
    """
    ledger = ledger.for_api(client.base_url)
    cols = _empty_columns(len(frame))
    for name in OUTPUT_COLUMNS:
        if name in frame.columns:
            cols[name] = [_cell(value) for value in frame[name].tolist()]
    cols["cost"] = [math.nan if value is None else value for value in cols["cost"]]
    rows_by_run: dict[str, list[int]] = {}
    for position, (run_id, status) in enumerate(zip(cols["run_id"], cols["status"], strict=True)):
        if isinstance(run_id, str) and run_id and status not in TERMINAL_STATUSES | CLIENT_STATUSES:
            rows_by_run.setdefault(run_id, []).append(position)
    created = [
        moment
        for entry in ledger.by_run_ids(rows_by_run).values()
        if (moment := _parse_iso(entry.created_at)) is not None
    ]
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    pause = _FIRST_CHECK_S
    while rows_by_run:
        runs = await fetch_runs(
            client, list(rows_by_run), created_after=min(created) if created else None
        )
        updates: list[dict[str, object]] = []
        for run_id, run in runs.items():
            for position in rows_by_run.get(run_id, []):
                for name, value in _run_values(run).items():
                    cols[name][position] = value
            if run.is_terminal:
                rows_by_run.pop(run_id, None)
                updates.append(
                    {
                        "run_id": run_id,
                        "status": run.status,
                        "cost": _text(run.cost),
                        "duration_ms": run.duration_ms,
                    }
                )
        ledger.update_statuses(updates)
        if not wait or (deadline is not None and loop.time() + pause > deadline):
            break
        await asyncio.sleep(pause)
        pause = min(pause * _BACKOFF, _MAX_POLL_GAP_S)
    return cols


_TEXT_DTYPE: Any = "str" if int(pd.__version__.split(".")[0]) >= 3 else object


def result_frame(columns: Mapping[str, list[Any]], index: pd.Index[Any]) -> pd.DataFrame:
    """Output columns on ``index``, built by position so duplicate labels stay in place."""
    data = {
        "run_id": pd.Series(columns["run_id"], index=index, dtype=_TEXT_DTYPE),
        "status": pd.Series(columns["status"], index=index, dtype=_TEXT_DTYPE),
        "output_url": pd.Series(columns["output_url"], index=index, dtype=_TEXT_DTYPE),
        "cost": pd.Series(columns["cost"], index=index, dtype="float64"),
        "error": pd.Series(columns["error"], index=index, dtype=_TEXT_DTYPE),
        "duration_ms": pd.Series(columns["duration_ms"], index=index, dtype="Int64"),
    }
    return pd.DataFrame(data, index=index)


def column_values(frame: pd.DataFrame, column: Hashable) -> list[object]:
    """The cells of ``frame[column]`` as Python objects, in row order."""
    if column not in frame.columns:
        names = ", ".join(repr(c) for c in list(frame.columns)[:20])
        raise KeyError(f"no column {column!r} in this DataFrame; its columns are: {names}")
    if sum(1 for name in frame.columns if name == column) > 1:
        raise ValueError(f"column label {column!r} is not unique: rename the duplicates first")
    return frame[column].tolist()
