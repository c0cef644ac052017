"""The batch engine against the embedded server over real HTTP: money, faults, resumption."""

from __future__ import annotations

import math
import queue
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skinfix_nb._urls import is_loopback_url
from skinfix_nb.batch import (
    INVALID,
    NOT_SUBMITTED,
    SUBMIT_ERROR,
    Batch,
    _batched_due,
    _Job,
    _next_events,
    check_image_url,
)
from skinfix_nb.callbacks import CallbackEvent
from skinfix_nb.client import AsyncSkinFix, RetryPolicy
from skinfix_nb.ledger import Ledger, client_ref_for
from skinfix_nb.local import LocalServer, serve
from tests.conftest import FAKE_KEY

MODEL = "runflow/skin-fix"
FAST_RETRY = RetryPolicy(max_attempts=12, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def fast_server() -> Iterator[LocalServer]:
    """Benchmark-mode server (no image work): each run takes 20 ms."""
    with serve(port=0, api_key=FAKE_KEY, engine=None, latency=0.02, seed=7) as srv:
        yield srv


@pytest.fixture
async def client(fast_server: LocalServer) -> AsyncIterator[AsyncSkinFix]:
    async with AsyncSkinFix(FAKE_KEY, base_url=fast_server.url, retry=FAST_RETRY) as api:
        yield api


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with Ledger(":memory:") as book:
        yield book


def urls(server: LocalServer, count: int, *, prefix: str = "img") -> list[str]:
    return [f"{server.url}/{prefix}/{i}.jpg" for i in range(count)]


def posts(server: LocalServer) -> list[Any]:
    return [r for r in server.requests if r.method == "POST" and r.path.endswith("/runs")]


def created_refs(server: LocalServer) -> Counter[str]:
    return Counter(run["client_ref"] for run in server.runs())


async def run_batch(values: Sequence[object], **options: Any) -> dict[str, list[Any]]:
    batch = Batch(values, progress=False, **options)
    await batch.run()
    return batch.columns()


# -- row checks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (None, "missing value"),
        (math.nan, "missing value"),
        (Decimal("sNaN"), "missing value"),
        (Decimal("NaN"), "missing value"),
        ("", "empty string"),
        ("   \t", "empty string"),
        (42, "got int"),
        (b"https://x.test/a.jpg", "got bytes"),
        ("not a url", "whitespace"),
        ("face.jpg", "file path"),
        ("C:\\photos\\face.jpg", "file path"),
        ("file:///tmp/face.jpg", "file path"),
        ("data:image/png;base64,AAAA", "data: URIs"),
        ("ftp://x.test/a.jpg", "unsupported URL scheme 'ftp'"),
        ("https:///a.jpg", "no host"),
        ("https://x.test:99999/a.jpg", "malformed"),
        ("http://x.test/a.jpg", "https:// image URLs only"),
    ],
)
def test_bad_cells_are_invalid_with_a_reason(value: object, fragment: str) -> None:
    check = check_image_url(value, https_only=True)
    assert check.url is None
    assert fragment in str(check.error)


def test_good_cells_are_kept_stripped() -> None:
    assert check_image_url(" https://x.test/a.jpg\n", https_only=True).url == "https://x.test/a.jpg"
    assert check_image_url("http://127.0.0.1:8/a.jpg", https_only=False).url is not None


def test_presigned_query_never_appears_in_an_error() -> None:
    check = check_image_url("ftp://x.test/a.jpg?X-Amz-Signature=SECRET", https_only=True)
    assert "SECRET" not in str(check.error)


def test_loopback_detection() -> None:
    assert is_loopback_url("http://127.0.0.1:8123")
    assert is_loopback_url("http://localhost:1")
    assert is_loopback_url("http://[::1]:1")
    assert not is_loopback_url("https://api.runflow.io")


cells = st.one_of(
    st.none(),
    st.floats(allow_nan=True),
    st.integers(),
    st.binary(max_size=20),
    st.text(max_size=40),
    st.from_regex(r"\A(https?|ftp|data|file)://[a-z0-9.\-:@\[\]%?#/ ]{0,30}\Z"),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(value=cells, https_only=st.booleans())
def test_row_check_never_raises(value: object, *, https_only: bool) -> None:
    check = check_image_url(value, https_only=https_only)
    assert (check.url is None) != (check.error is None)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(values=st.lists(cells, min_size=90, max_size=110))
def test_generated_columns_never_raise_and_never_send_an_invalid_row(
    fast_server: LocalServer, values: list[object]
) -> None:
    """12 examples x 90-110 cells: over 1,000 generated values end to end."""
    import asyncio

    # Mix in some good rows so every example also sends something.
    column = [*values, *urls(fast_server, 3, prefix="gen")]
    before = len(posts(fast_server))

    async def go() -> dict[str, list[Any]]:
        async with AsyncSkinFix(FAKE_KEY, base_url=fast_server.url, retry=FAST_RETRY) as api:
            with Ledger(":memory:") as book:
                return await run_batch(column, client=api, ledger=book, concurrency=8)

    out = asyncio.run(go())
    for value, status, error in zip(column, out["status"], out["error"], strict=True):
        if check_image_url(value, https_only=False).url is None:
            assert status == INVALID
            assert error
        else:  # sent: done, or refused by the API with its reason (e.g. "http://0")
            assert status in {"succeeded", SUBMIT_ERROR}
            assert (status == SUBMIT_ERROR) == bool(error)
    valid = {check_image_url(v, https_only=False).url for v in column} - {None}
    posted_refs = [r.client_ref for r in posts(fast_server)[before:]]
    assert sorted(posted_refs) == sorted(client_ref_for(url, MODEL) for url in valid)


# -- the engine ------------------------------------------------------------------------


async def test_same_url_twice_is_sent_once_and_rows_keep_their_order(
    fast_server: LocalServer, client: AsyncSkinFix, ledger: Ledger
) -> None:
    a, b = urls(fast_server, 2)
    out = await run_batch([a, None, b, a, " "], client=client, ledger=ledger)
    assert out["status"] == ["succeeded", INVALID, "succeeded", "succeeded", INVALID]
    assert out["run_id"][0] == out["run_id"][3] != out["run_id"][2]
    assert out["cost"][0] == pytest.approx(0.12)
    assert out["output_url"][2] == b  # benchmark mode echoes the input
    assert isinstance(out["duration_ms"][0], int)
    assert len(posts(fast_server)) == 2


async def test_three_reruns_make_no_duplicate_post(
    fast_server: LocalServer, client: AsyncSkinFix, ledger: Ledger
) -> None:
    column = urls(fast_server, 30)
    outs = [await run_batch(column, client=client, ledger=ledger) for _ in range(3)]
    assert len(posts(fast_server)) == 30
    assert set(created_refs(fast_server).values()) == {1}
    assert outs[0]["run_id"] == outs[1]["run_id"] == outs[2]["run_id"]
    assert outs[2]["status"] == ["succeeded"] * 30
    assert outs[2]["output_url"] == column  # re-used runs are read back, output URLs included


async def test_force_sends_again_under_a_new_ref(
    fast_server: LocalServer, client: AsyncSkinFix, ledger: Ledger
) -> None:
    column = urls(fast_server, 3)
    first = await run_batch(column, client=client, ledger=ledger)
    second = await run_batch(column, client=client, ledger=ledger, force=True)
    assert len(posts(fast_server)) == 6
    assert set(first["run_id"]).isdisjoint(second["run_id"])
    assert set(created_refs(fast_server).values()) == {1}


@pytest.mark.parametrize("concurrency", [1, 8])
async def test_402_stops_submitting_and_leaves_the_rest_not_submitted(
    fast_server: LocalServer, client: AsyncSkinFix, ledger: Ledger, concurrency: int
) -> None:
    fast_server.set_faults(credit_runs=50)
    out = await run_batch(
        urls(fast_server, 120), client=client, ledger=ledger, concurrency=concurrency
    )
    assert Counter(out["status"]) == {"succeeded": 50, NOT_SUBMITTED: 70}
    refused = [i for i, status in enumerate(out["status"]) if status == NOT_SUBMITTED]
    if concurrency == 1:
        assert refused == list(range(50, 120))
    assert all("402" in str(out["error"][i]) or "credit" in str(out["error"][i]) for i in refused)
    requests = posts(fast_server)
    first_402 = next(i for i, r in enumerate(requests) if r.status == 402)
    # Nothing was posted after the 402 came back, except POSTs already on the wire then.
    assert len(requests) - first_402 - 1 <= concurrency - 1
    assert all(r.status == 402 for r in requests[first_402:])
    # Unsent rows left no intent behind: a later call sends them without a lookup.
    assert len(ledger.for_api(fast_server.url)) == 50


@pytest.mark.parametrize(("max_cost", "failure_rate"), [(1.0, 0.0), (0.6, 0.5), (0.11, 0.0)])
async def test_budget_cap_is_never_exceeded(
    fast_server: LocalServer,
    client: AsyncSkinFix,
    ledger: Ledger,
    max_cost: float,
    failure_rate: float,
) -> None:
    fast_server.set_faults(failure_rate=failure_rate)
    out = await run_batch(
        urls(fast_server, 40), client=client, ledger=ledger, concurrency=8, max_cost=max_cost
    )
    assert fast_server.billed_usd() <= Decimal(str(max_cost))
    affordable = int(Decimal(str(max_cost)) / Decimal("0.12"))
    assert Counter(out["status"])["succeeded"] == affordable
    if failure_rate == 0:
        assert len(posts(fast_server)) == affordable  # in-flight runs counted as spent
    assert NOT_SUBMITTED in out["status"]
    assert "max_cost" in str(out["error"][out["status"].index(NOT_SUBMITTED)])


async def test_flaky_api_completes_with_no_duplicate_run(
    fast_server: LocalServer, client: AsyncSkinFix, ledger: Ledger
) -> None:
    fast_server.set_faults(error_rate=0.2, rate_limit_rate=0.1, drop_after_post_rate=0.05)
    # 200 creates: the chance that 5 % drops never fire is below 1e-4
    column = urls(fast_server, 200)
    out = await run_batch(column, client=client, ledger=ledger, concurrency=16)
    assert out["status"] == ["succeeded"] * 200
    refs = created_refs(fast_server)
    assert len(refs) == 200
    assert set(refs.values()) == {1}
    assert {r.status for r in fast_server.requests} >= {0, 429, 500}  # the faults did happen
    assert set(out["run_id"]) == {run["id"] for run in fast_server.runs()}


async def test_api_rejection_is_an_error_row_with_the_api_message(
    client: AsyncSkinFix, ledger: Ledger, fast_server: LocalServer
) -> None:
    fast_server.set_faults(strict_https=True)  # the local server refuses http:// like Runflow
    good = "https://images.test/a.jpg"
    out = await run_batch([f"{fast_server.url}/a.jpg", good], client=client, ledger=ledger)
    assert out["status"] == [SUBMIT_ERROR, "succeeded"]
    assert "https" in str(out["error"][0]).lower()
    assert out["run_id"][0] is None
    assert len(ledger.for_api(fast_server.url)) == 1  # the refused row left no intent


async def test_wait_false_returns_queued_runs(
    fast_server: LocalServer, client: AsyncSkinFix, ledger: Ledger
) -> None:
    fast_server.set_faults(latency=5.0)
    out = await run_batch(urls(fast_server, 5), client=client, ledger=ledger, wait=False)
    assert all(run_id for run_id in out["run_id"])
    assert set(out["status"]) <= {"queued", "dispatching", "running"}


async def test_timeout_keeps_running_rows_and_marks_unsent_rows(
    fast_server: LocalServer, client: AsyncSkinFix, ledger: Ledger
) -> None:
    fast_server.set_faults(latency=5.0)
    out = await run_batch(
        urls(fast_server, 6), client=client, ledger=ledger, concurrency=2, timeout=0.5
    )
    assert Counter(out["status"])[NOT_SUBMITTED] == 4
    assert sum(1 for run_id in out["run_id"] if run_id) == 2
    assert len(posts(fast_server)) == 2


async def test_failed_runs_carry_the_failure_and_free_their_budget(
    fast_server: LocalServer, client: AsyncSkinFix, ledger: Ledger
) -> None:
    fast_server.set_faults(failure_rate=1.0)
    out = await run_batch(
        urls(fast_server, 6), client=client, ledger=ledger, concurrency=2, max_cost=0.12
    )
    assert out["status"] == ["failed"] * 6  # unbilled failures never exhaust the cap
    assert all(error for error in out["error"])
    assert out["cost"] == [0.0] * 6


async def test_polling_uses_few_requests(
    fast_server: LocalServer, client: AsyncSkinFix, ledger: Ledger
) -> None:
    fast_server.set_faults(latency=0.3)
    await run_batch(urls(fast_server, 64), client=client, ledger=ledger, concurrency=64)
    gets = [r for r in fast_server.requests if r.method == "GET"]
    listings = [r for r in gets if r.path == "/v1/runs"]
    assert len(gets) <= 12  # 64 runs followed for a handful of requests
    assert len(listings) >= len(gets) - 3  # GET /v1/runs/{id} only for the last few


async def test_callback_receiver_replaces_polling(
    fast_server: LocalServer, client: AsyncSkinFix, ledger: Ledger
) -> None:
    from skinfix_nb.callbacks import CallbackReceiver

    fast_server.set_faults(latency=0.2)
    with CallbackReceiver(secret=None) as receiver:
        callback_url = receiver.url
        out = await run_batch(
            urls(fast_server, 20), client=client, ledger=ledger, callback_url=receiver
        )
    assert out["status"] == ["succeeded"] * 20
    assert out["cost"] == [pytest.approx(0.12)] * 20  # Runflow's price: callbacks carry none
    assert all(run["callback_url"] == callback_url for run in fast_server.runs())
    assert not [r for r in fast_server.requests if r.method == "GET"]  # nothing was late


def test_a_poll_waits_briefly_for_runs_sent_in_the_same_burst() -> None:
    def job(next_check: float) -> _Job:
        return _Job(
            url="u", url_key="k", client_ref="r", generation=0, rows=[0], next_check=next_check
        )

    burst = [job(10.000), job(10.001), job(10.003), job(10.030)]
    assert _batched_due(burst, wait=0.005) == 10.003  # the burst, not the run due later
    assert _batched_due(burst, wait=0.0) == 10.000  # no waiting: the first due run
    assert _batched_due(burst[::-1], wait=0.05) == 10.030  # order does not matter


def test_callbacks_waiting_together_reach_the_batch_in_one_hand_over() -> None:
    events: queue.Queue[CallbackEvent] = queue.Queue()
    for number in range(3):
        events.put(CallbackEvent.from_json({"run_id": f"run-{number}", "status": "succeeded"}))
    assert [event.run_id for event in _next_events(events, 1.0)] == ["run-0", "run-1", "run-2"]
    assert _next_events(events, 0.01) == []  # nothing waiting: back empty-handed after timeout
