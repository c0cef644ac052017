"""In-memory state of the embedded server, safe to read from any thread.

The server's event loop writes; tests and notebooks read snapshots through
:class:`~skinfix_nb.local.LocalServer`. Run dicts are replaced field by field, never
mutated in place below the top level, so a shallow copy is a consistent snapshot.
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

__all__ = ["RUN_PRICE_USD", "Blob", "Idempotent", "RequestRecord", "Store", "Upload"]

RUN_PRICE_USD = Decimal("0.12")


class RequestRecord(NamedTuple):
    """One HTTP request as the server answered it.

    ``status`` is 0 when the connection was dropped on purpose without an answer
    (``drop_after_post_rate``); ``client_ref`` is set for run creations that carried one;
    ``at`` is the wall-clock time (``time.time()``) the answer was sent.
    """

    method: str
    path: str
    status: int
    idempotency_key: str | None
    client_ref: str | None
    at: float


class Idempotent(NamedTuple):
    """The first answer to an ``Idempotency-Key``, replayed byte for byte."""

    fingerprint: str
    status: int
    body: bytes


class Blob(NamedTuple):
    """A file the server hosts: a run output, a confirmed upload or a served local file."""

    data: bytes
    mime_type: str
    name: str


@dataclasses.dataclass
class Upload:
    """A presigned upload session (step 1 of 3) and what was PUT to it."""

    asset_id: str
    filename: str
    mime_type: str
    size_bytes: int
    data: bytes | None = None
    confirmed: bool = False


@dataclasses.dataclass
class _Credit:
    balance: Decimal | None = None
    runs_left: int | None = None


class Store:
    """Runs, assets, uploads, files, secrets, idempotency answers and the request log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Runs arrive in creation order with increasing UUIDv7 ids and a created_at taken
        # from the id, so _order is sorted by (created_at, id) and by id alike: listings
        # newest or oldest first, and cursors, need no sort.
        self._runs: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []
        self._by_client_ref: dict[str, list[str]] = {}
        self._by_status: dict[str, set[str]] = {}
        self._idempotent: dict[str, Idempotent] = {}
        self._uploads: dict[str, Upload] = {}
        self._assets: dict[str, dict[str, Any]] = {}
        self._blobs: dict[str, Blob] = {}
        self._secrets: list[dict[str, Any]] = []
        self._current_secret: str | None = None
        self._requests: list[RequestRecord] = []
        self._credit = _Credit()

    # runs -------------------------------------------------------------------------------

    def add_run(self, run: dict[str, Any]) -> None:
        """Keep a new run; its id must be greater than every id stored before (UUIDv7)."""
        run_id = run["id"]
        with self._lock:
            if self._order and run_id <= self._order[-1]:
                raise ValueError(f"run ids must increase: {run_id} after {self._order[-1]}")
            self._runs[run_id] = run
            self._order.append(run_id)
            if run["client_ref"] is not None:
                self._by_client_ref.setdefault(run["client_ref"], []).append(run_id)
            self._by_status.setdefault(run["status_code"], set()).add(run_id)

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            run = self._runs.get(run_id)
            return dict(run) if run is not None else None

    def update_run(self, run_id: str, **fields: Any) -> dict[str, Any]:
        """Set top-level fields of a run and return a snapshot of it."""
        with self._lock:
            run = self._runs[run_id]
            old_status = run["status_code"]
            run.update(fields)
            if run["status_code"] != old_status:
                self._by_status[old_status].discard(run_id)
                self._by_status.setdefault(run["status_code"], set()).add(run_id)
            return dict(run)

    def runs_in_creation_order(
        self,
        *,
        keep: Callable[[dict[str, Any]], bool],
        newest_first: bool,
        after: tuple[str, str] | None,
        limit: int,
        client_ref: str | None = None,
        status: str | None = None,
        ids: Sequence[str] | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` snapshots of runs that ``keep`` accepts, in creation order.

        ``after`` is the ``(created_at, id)`` of the last run already seen: the walk starts
        just past it. ``client_ref``, ``status`` and ``ids`` narrow the walk to the runs
        with that ref, that status or those ids (an index, no scan); ``created_from`` and
        ``created_to`` (inclusive) narrow it to a creation window by bisection, so a
        poll for recent runs does not walk every older one. ``keep`` still sees every
        run returned.
        """
        with self._lock:
            candidates: Sequence[str] = self._order
            if client_ref is not None:
                candidates = self._by_client_ref.get(client_ref, ())
            if status is not None:
                narrowed = self._by_status.get(status, set())
                if len(narrowed) < len(candidates):
                    candidates = sorted(narrowed)
            if ids is not None and len(ids) < len(candidates):
                candidates = sorted(set(ids) & self._runs.keys())

            def created(run_id: str) -> datetime:
                return datetime.fromisoformat(self._runs[run_id]["created_at"])

            def position(run_id: str) -> tuple[str, str]:
                return (self._runs[run_id]["created_at"], run_id)

            low, high = 0, len(candidates)
            if created_from is not None:
                low = bisect.bisect_left(candidates, created_from, key=created)
            if created_to is not None:
                high = bisect.bisect_right(candidates, created_to, key=created)
            if after is not None and newest_first:
                high = min(high, bisect.bisect_left(candidates, after, key=position))
            elif after is not None:
                low = max(low, bisect.bisect_right(candidates, after, key=position))
            walk = range(high - 1, low - 1, -1) if newest_first else range(low, high)
            found: list[dict[str, Any]] = []
            for index in walk:
                run = self._runs[candidates[index]]
                if keep(run):
                    found.append(dict(run))
                    if len(found) == limit:
                        break
            return found

    def all_runs(self) -> list[dict[str, Any]]:
        """Shallow snapshots of every run, oldest first."""
        with self._lock:
            return [dict(run) for run in self._runs.values()]

    def runs_snapshot(self) -> list[dict[str, Any]]:
        """Deep copies, safe to hand to callers who may mutate them."""
        with self._lock:
            return copy.deepcopy(list(self._runs.values()))

    def billed_usd(self) -> Decimal:
        with self._lock:
            return sum(
                (Decimal(run["cost"]) for run in self._runs.values() if run["cost"] is not None),
                Decimal(0),
            )

    # credit -----------------------------------------------------------------------------

    def set_credit_balance(self, balance: Decimal | None) -> None:
        with self._lock:
            self._credit.balance = balance

    def set_credit_runs(self, runs_left: int | None) -> None:
        with self._lock:
            self._credit.runs_left = runs_left

    def reserve_credit(self, price: Decimal) -> bool:
        """Take one run's price and one run from the allowances; False if either is spent."""
        with self._lock:
            credit = self._credit
            if credit.runs_left is not None and credit.runs_left <= 0:
                return False
            if credit.balance is not None and credit.balance < price:
                return False
            if credit.runs_left is not None:
                credit.runs_left -= 1
            if credit.balance is not None:
                credit.balance -= price
            return True

    def refund_credit(self, price: Decimal) -> None:
        """Give back the price of a run that ended unbilled (the run allowance stays spent)."""
        with self._lock:
            if self._credit.balance is not None:
                self._credit.balance += price

    # idempotency ------------------------------------------------------------------------

    def idempotent_answer(self, key: str) -> Idempotent | None:
        with self._lock:
            return self._idempotent.get(key)

    def remember_answer(self, key: str, answer: Idempotent) -> None:
        with self._lock:
            self._idempotent.setdefault(key, answer)

    # uploads, assets, files -------------------------------------------------------------

    def add_upload(self, upload_id: str, upload: Upload) -> None:
        with self._lock:
            self._uploads[upload_id] = upload

    def get_upload(self, upload_id: str) -> Upload | None:
        with self._lock:
            return self._uploads.get(upload_id)

    def add_asset(self, asset: dict[str, Any]) -> None:
        with self._lock:
            self._assets[asset["id"]] = asset

    def get_asset(self, asset_id: str) -> dict[str, Any] | None:
        with self._lock:
            asset = self._assets.get(asset_id)
            return dict(asset) if asset is not None else None

    def add_blob(self, blob_id: str, blob: Blob) -> None:
        with self._lock:
            self._blobs[blob_id] = blob

    def get_blob(self, blob_id: str) -> Blob | None:
        with self._lock:
            return self._blobs.get(blob_id)

    # callback secrets -------------------------------------------------------------------

    def add_secret(self, record: dict[str, Any], plain_secret: str) -> None:
        """Store a secret's public record; the new secret signs every later callback."""
        with self._lock:
            for other in self._secrets:
                other["is_current"] = False
            self._secrets.append(record)
            self._current_secret = plain_secret

    def current_secret(self) -> str | None:
        with self._lock:
            return self._current_secret

    # request log ------------------------------------------------------------------------

    def log_request(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()
