"""The client against the embedded server over real HTTP, sync and async through one body.

Every test body is ``async``; ``settle`` awaits the async client's coroutines and passes the
sync client's results through, so each behaviour is checked once for both twins.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import subprocess
import sys
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from PIL import Image

import skinfix_nb as sf
from skinfix_nb import errors
from skinfix_nb.client import LOCAL_NOTICE
from skinfix_nb.local import LocalServer, serve
from skinfix_nb.models import Run
from tests.conftest import FAKE_KEY

SAMPLES = Path(__file__).resolve().parents[1] / "skinfix_nb" / "samples"
FAST = sf.client.RetryPolicy(base_delay=0.01, max_delay=0.05, random=lambda: 1.0)
T = TypeVar("T")

Client = sf.SkinFix | sf.AsyncSkinFix


async def settle(value: Any) -> Any:
    """The value of a sync call, or the awaited result of an async one."""
    return await value if inspect.isawaitable(value) else value


async def collect(iterator: Iterable[T] | AsyncIterator[T]) -> list[T]:
    if isinstance(iterator, AsyncIterator):
        return [item async for item in iterator]
    return list(iterator)


@pytest.fixture(params=["sync", "async"])
async def make_client(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Client]]:
    """Builds clients of one kind for a server; closes them after the test."""
    made: list[Client] = []

    def make(server: LocalServer, **options: Any) -> Client:
        cls = sf.SkinFix if request.param == "sync" else sf.AsyncSkinFix
        options.setdefault("retry", FAST)
        base_url = options.pop("base_url", server.url)
        client = cls(options.pop("api_key", FAKE_KEY), base_url=base_url, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await settle(client.close())


@pytest.fixture(scope="module")
def portrait_url(server: LocalServer) -> str:
    return server.serve_file(SAMPLES / "grace_hopper.jpg")


def _gaps(server: LocalServer, method: str, path_start: str) -> list[float]:
    times = [r.at for r in server.requests if r.method == method and r.path.startswith(path_start)]
    return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]


# --- the happy path ----------------------------------------------------------------------


async def test_submit_wait_get_and_find(
    server: LocalServer, portrait_url: str, make_client: Callable[..., Client]
) -> None:
    client = make_client(server)
    submitted = await settle(client.submit(portrait_url, metadata={"row": 7}))
    assert submitted.status in {"queued", "dispatching", "running"}
    done = await settle(client.wait(submitted, timeout=60))
    assert done.status == "succeeded"
    assert done.cost == Decimal("0.12")
    assert done.metadata == {"row": 7}
    assert done.client_ref == submitted.client_ref
    image = httpx.get(done.output_url)
    assert image.status_code == 200
    assert image.headers["content-type"].startswith("image/")
    again = await settle(client.get(done.id))
    assert again == done
    assert await settle(client.find_by_client_ref(submitted.client_ref)) == done
    page = await settle(
        client.list_runs(client_ref=submitted.client_ref, fields=["id", "status_code"])
    )
    assert [r.id for r in page.items] == [done.id]
    assert page.items[0].status == "succeeded"
    assert await settle(client.health()) == {"status": "ok"}


async def test_run_raises_run_failed_error_with_the_run(
    fresh_server: LocalServer, portrait_url: str, make_client: Callable[..., Client]
) -> None:
    fresh_server.set_faults(failure_rate=1.0)
    client = make_client(fresh_server)
    url = fresh_server.serve_file(SAMPLES / "grace_hopper.jpg")
    with pytest.raises(errors.RunFailedError) as caught:
        await settle(client.run(url, timeout=60))
    assert caught.value.run.status == "failed"
    assert caught.value.run.failure_code
    assert caught.value.run.cost == Decimal("0")
    # wait itself returns a failed run instead of raising
    assert (await settle(client.wait(caught.value.run_id))).status == "failed"


async def test_iter_runs_walks_every_page(
    fresh_server: LocalServer, make_client: Callable[..., Client]
) -> None:
    fresh_server.set_faults(latency=30.0)
    client = make_client(fresh_server)
    url = fresh_server.serve_file(SAMPLES / "camera.png")
    ids = {(await settle(client.submit(url))).id for _ in range(5)}
    fresh_server.clear_requests()
    seen = await collect(client.iter_runs(page_size=2))
    assert {run.id for run in seen} == ids
    assert len(seen) == 5
    assert sum(r.path == "/v1/runs" for r in fresh_server.requests) == 3


# --- every error code, over real HTTP -----------------------------------------------------


async def test_401_wrong_key(server: LocalServer, make_client: Callable[..., Client]) -> None:
    client = make_client(server, api_key="rf_live_wrong")
    with pytest.raises(errors.AuthenticationError, match="RUNFLOW_API_KEY") as caught:
        await settle(client.get("anything"))
    assert caught.value.status_code == 401
    assert caught.value.code == "UNAUTHORIZED"


async def test_402_is_raised_at_once_and_never_retried(
    fresh_server: LocalServer, portrait_url: str, make_client: Callable[..., Client]
) -> None:
    fresh_server.set_faults(credit_runs=0)
    client = make_client(fresh_server)
    with pytest.raises(errors.InsufficientCreditError, match="Top up") as caught:
        await settle(client.submit(portrait_url))
    assert caught.value.code == "INSUFFICIENT_CREDIT"
    posts = [r for r in fresh_server.requests if r.method == "POST"]
    assert [r.status for r in posts] == [402]


async def test_404_unknown_run_carries_the_run_id(
    server: LocalServer, make_client: Callable[..., Client]
) -> None:
    client = make_client(server)
    with pytest.raises(errors.NotFoundError) as caught:
        await settle(client.get("no-such-run"))
    assert caught.value.run_id == "no-such-run"
    assert caught.value.code == "RUN_NOT_FOUND"
    with pytest.raises(errors.NotFoundError):
        await settle(client.cancel("no-such-run"))


async def test_cancel_on_a_server_without_the_admin_route_is_permission_denied(
    server: LocalServer, make_client: Callable[..., Client]
) -> None:
    """A key that may not see the admin route gets 404 from a real gateway: say why."""
    client = make_client(server, base_url=server.url + "/public-only")  # every route 404s
    with pytest.raises(errors.PermissionDeniedError, match="no public cancel") as caught:
        await settle(client.cancel("some-run"))
    assert caught.value.status_code == 404
    assert caught.value.run_id == "some-run"


async def test_cancel_moves_a_run_to_canceled_and_wait_ends_there(
    fresh_server: LocalServer, make_client: Callable[..., Client]
) -> None:
    fresh_server.set_faults(latency=30.0)
    client = make_client(fresh_server)
    run = await settle(client.submit(fresh_server.serve_file(SAMPLES / "camera.png")))
    canceled = await settle(client.cancel(run, reason="not needed any more"))
    assert canceled.status == "canceled"
    assert (await settle(client.wait(run, timeout=5))).status == "canceled"
    assert (await settle(client.cancel(run))).status == "canceled"  # already terminal: 200
    statuses = [r.status for r in fresh_server.requests if "cancellation" in r.path]
    assert statuses == [201, 200]


async def test_409_idempotency_key_reused_with_another_body(
    server: LocalServer, portrait_url: str, make_client: Callable[..., Client]
) -> None:
    client = make_client(server)
    key = f"test-409-{id(client)}"
    first = await settle(client.submit(portrait_url, idempotency_key=key, client_ref=key))
    replay = await settle(client.submit(portrait_url, idempotency_key=key, client_ref=key))
    assert replay.id == first.id
    with pytest.raises(errors.ConflictError, match="Idempotency-Key"):
        await settle(client.submit(portrait_url, idempotency_key=key, client_ref=key + "-other"))


async def test_422_validation_lists_the_fields(
    server: LocalServer, make_client: Callable[..., Client]
) -> None:
    client = make_client(server)
    with pytest.raises(errors.ValidationError) as caught:
        await settle(client.submit("http://example.com/not-https.jpg"))
    assert caught.value.status_code == 422
    assert caught.value.errors
    assert "image_url" in str(caught.value)


async def test_429_is_retried_five_times_then_raised(
    fresh_server: LocalServer, make_client: Callable[..., Client]
) -> None:
    fresh_server.set_faults(rate_limit_rate=1.0)
    client = make_client(fresh_server)
    with pytest.raises(errors.RateLimitError):
        await settle(client.get("any"))
    assert [r.status for r in fresh_server.requests] == [429] * 5


async def test_5xx_is_retried_with_exponential_spacing(
    fresh_server: LocalServer, make_client: Callable[..., Client]
) -> None:
    fresh_server.set_faults(error_rate=1.0)
    retry = sf.client.RetryPolicy(base_delay=0.05, max_delay=1.0, random=lambda: 1.0)
    client = make_client(fresh_server, retry=retry)
    with pytest.raises(errors.ServerError) as caught:
        await settle(client.get("any"))
    assert caught.value.status_code == 500
    assert [r.status for r in fresh_server.requests] == [500] * 5
    gaps = _gaps(fresh_server, "GET", "/v1/runs/")
    for gap, delay in zip(gaps, [0.05, 0.1, 0.2, 0.4], strict=True):
        assert delay <= gap < delay + 0.25, gaps


async def test_retry_after_is_honoured_from_the_server(
    fresh_server: LocalServer, make_client: Callable[..., Client]
) -> None:
    fresh_server.set_faults(rate_limit_rate=1.0, retry_after=0.3)
    retry = sf.client.RetryPolicy(max_attempts=3, base_delay=0.01, random=lambda: 1.0)
    client = make_client(fresh_server, retry=retry)
    with pytest.raises(errors.RateLimitError) as caught:
        await settle(client.get("x"))
    assert caught.value.retry_after == 0.3
    gaps = _gaps(fresh_server, "GET", "/v1/runs/")
    assert len(gaps) == 2
    assert all(0.3 <= gap < 0.55 for gap in gaps), gaps


async def test_retry_after_is_capped(
    fresh_server: LocalServer, make_client: Callable[..., Client]
) -> None:
    fresh_server.set_faults(rate_limit_rate=1.0, retry_after=30)
    retry = sf.client.RetryPolicy(max_attempts=2, max_retry_after=0.2, random=lambda: 1.0)
    client = make_client(fresh_server, retry=retry)
    with pytest.raises(errors.RateLimitError):
        await settle(client.get("x"))
    (gap,) = _gaps(fresh_server, "GET", "/v1/runs/")
    assert 0.2 <= gap < 0.45


async def test_a_transient_outage_is_ridden_out(make_client: Callable[..., Client]) -> None:
    # seed 1: the first draw (the create) is a 500, so the outage is certain to be met
    with serve(port=0, api_key=FAKE_KEY, error_rate=0.4, seed=1) as flaky:
        client = make_client(
            flaky,
            retry=sf.client.RetryPolicy(max_attempts=10, base_delay=0.01, random=lambda: 1.0),
        )
        url = flaky.serve_file(SAMPLES / "grace_hopper.jpg")
        run = await settle(client.run(url, timeout=60))
        await settle(client.close())
    assert run.status == "succeeded"
    assert flaky.requests[0].status == 500
    creates = [r for r in flaky.requests if r.method == "POST" and r.status == 201]
    assert len(creates) == 1


async def test_connection_refused_is_an_api_connection_error(
    make_client: Callable[..., Client],
) -> None:
    with serve(port=0, api_key=FAKE_KEY) as gone:
        client = make_client(gone, retry=sf.client.RetryPolicy(max_attempts=2, base_delay=0.01))
    with pytest.raises(errors.APIConnectionError, match="got no answer"):
        await settle(client.get("x"))


# --- never pay twice ----------------------------------------------------------------------


async def test_no_duplicate_runs_in_200_submissions_with_dropped_connections(
    make_client: Callable[..., Client],
) -> None:
    with serve(
        port=0, api_key=FAKE_KEY, engine=None, latency=0.0, drop_after_post_rate=0.05, seed=4
    ) as srv:
        client = make_client(srv, max_connections=16)
        refs = [f"dup-check-{n}" for n in range(200)]
        gate = asyncio.Semaphore(16)

        async def one(ref: str) -> Run:
            async with gate:
                return await settle(client.submit(f"{srv.url}/img/{ref}.jpg", client_ref=ref))

        if isinstance(client, sf.AsyncSkinFix):
            runs = await asyncio.gather(*(one(ref) for ref in refs))
        else:
            runs = [client.submit(f"{srv.url}/img/{ref}.jpg", client_ref=ref) for ref in refs]
        dropped = [r for r in srv.requests if r.method == "POST" and r.status == 0]
        per_ref = Counter(run["client_ref"] for run in srv.runs())
    assert len(dropped) >= 3  # the fault really fired (about 10 expected)
    assert per_ref == dict.fromkeys(refs, 1)  # every ref exactly once: zero duplicates
    assert [run.client_ref for run in runs] == refs
    assert len({run.id for run in runs}) == 200


async def test_an_unanswered_post_is_looked_up_before_posting_again(
    make_client: Callable[..., Client],
) -> None:
    with serve(port=0, api_key=FAKE_KEY, engine=None, drop_after_post_rate=1.0) as srv:
        client = make_client(srv)
        run = await settle(client.submit(f"{srv.url}/img/a.jpg", client_ref="ambiguous-1"))
        log = [(r.method, r.path, r.status) for r in srv.requests]
    assert run.client_ref == "ambiguous-1"
    assert log == [
        ("POST", "/v1/models/runflow/skin-fix/runs", 0),
        ("GET", "/v1/runs", 200),
    ]


# --- waiting ------------------------------------------------------------------------------


async def test_wait_deadline_raises_run_timeout_error_with_the_run_id(
    fresh_server: LocalServer, make_client: Callable[..., Client]
) -> None:
    fresh_server.set_faults(latency=30.0)
    client = make_client(
        fresh_server, poll=sf.client.PollPolicy(first=0.05, factor=2.0, max_interval=0.2)
    )
    run = await settle(client.submit(fresh_server.serve_file(SAMPLES / "camera.png")))
    fresh_server.clear_requests()
    with pytest.raises(errors.RunTimeoutError) as caught:
        await settle(client.wait(run.id, timeout=0.6))
    assert caught.value.run_id == run.id
    assert caught.value.run is not None
    assert not caught.value.run.is_terminal
    assert "keeps running server-side" in str(caught.value)
    assert 0.6 <= caught.value.elapsed < 5.0  # stops at the deadline (loose: shared CI cores)
    polls = _gaps(fresh_server, "GET", "/v1/runs/")
    assert polls[0] < max(polls)  # a short first interval ...
    assert max(polls) >= 0.2  # ... growing to the cap
    await settle(client.cancel(run))


# --- uploads ------------------------------------------------------------------------------


class RecordingTransport(httpx.HTTPTransport):
    """The real HTTP transport, noting which requests carried an Authorization header."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, bool]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path, "authorization" in request.headers))
        return super().handle_request(request)


async def test_upload_three_steps_then_retouch(
    server: LocalServer, make_client: Callable[..., Client]
) -> None:
    client = make_client(server)
    url = await settle(client.upload(SAMPLES / "luispedro.jpg"))
    assert url.startswith(server.url)
    run = await settle(client.run(url, timeout=60))
    assert run.status == "succeeded"
    from_pil = await settle(client.upload(Image.new("RGB", (64, 48), "salmon")))
    assert httpx.get(from_pil).content.startswith(b"\x89PNG")
    with (SAMPLES / "camera.png").open("rb") as handle:
        from_file = await settle(client.upload(handle))
    assert "/camera.png?" in from_file


def test_upload_put_goes_without_authorization(server: LocalServer) -> None:
    transport = RecordingTransport()
    with sf.SkinFix(FAKE_KEY, base_url=server.url, transport=transport) as client:
        client.upload((SAMPLES / "camera.png").read_bytes())
    assert [(m, auth) for m, _, auth in transport.seen] == [
        ("POST", True),
        ("PUT", False),
        ("POST", True),
    ]
    assert transport.seen[1][1].startswith("/uploads/")


@pytest.mark.parametrize(
    ("make_source", "error", "message"),
    [
        (lambda: b"\xff\xd8\xff" + bytes(50 * 1024 * 1024), errors.ImageTooLargeError, "50 MiB"),
        (lambda: b"%PDF-1.4 not an image", errors.InvalidImageError, "application/pdf"),
        (lambda: b"", errors.InvalidImageError, "empty"),
        (lambda: Path("/nonexistent/face.jpg"), errors.InvalidImageError, "no file"),
        (lambda: 12, errors.InvalidImageError, "cannot upload a int"),
    ],
    ids=["over-50-MiB", "pdf", "empty", "missing-file", "not-a-source"],
)
async def test_upload_checks_before_sending(
    fresh_server: LocalServer,
    make_client: Callable[..., Client],
    make_source: Callable[[], object],
    error: type[Exception],
    message: str,
) -> None:
    client = make_client(fresh_server)
    with pytest.raises(error, match=message):
        await settle(client.upload(make_source()))  # type: ignore[arg-type]
    assert fresh_server.requests == []


# --- connecting ---------------------------------------------------------------------------


@pytest.mark.parametrize("connector", [sf.connect, sf.connect_async])
async def test_connect_without_a_key_uses_the_shared_local_backend(
    connector: Callable[..., Client],
) -> None:
    first = connector(_environ={})
    second = connector(_environ={})
    shared = sf.local.shared_server()
    assert first.base_url == second.base_url == shared.url
    assert first.base_url.startswith("http://127.0.0.1:")
    run = await settle(first.submit(shared.serve_file(SAMPLES / "grace_hopper.jpg")))
    await settle(first.close())  # closing a client leaves the shared server running
    assert (await settle(second.get(run.id))).id == run.id
    await settle(second.close())
    third = connector(local=True)
    assert (await settle(third.get(run.id))).id == run.id
    await settle(third.close())


def test_the_local_notice_is_printed_once_and_the_shared_server_stops_at_exit() -> None:
    script = """
import sys, skinfix_nb as sf
first = sf.connect(_environ={})
first.close()
second = sf.connect(local=True)
async_client = sf.connect_async(_environ={})
assert first.base_url == second.base_url == async_client.base_url
print(first.base_url)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RUNFLOW_API_KEY": ""},
        check=True,
    )
    url = done.stdout.strip()
    assert done.stderr.count("embedded local backend") == 1
    assert LOCAL_NOTICE.format(url=url) in done.stderr
    with pytest.raises(httpx.ConnectError):  # stopped when that interpreter exited
        httpx.get(url + "/v1/health")


def test_an_explicit_server_is_the_callers_own(server: LocalServer) -> None:
    with sf.connect(local=True) as shared_client, serve(port=0) as own:
        assert own.url not in (shared_client.base_url, server.url)
        own.stop()
        assert shared_client.health() == {"status": "ok"}
    with pytest.raises(httpx.ConnectError):
        httpx.get(own.url + "/v1/health")
    assert not sf.local.shared_server().stopped


def test_connect_local_true_and_with_a_key(
    server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with sf.connect(local=True) as local:
        assert local.base_url == sf.local.shared_server().url != server.url
    capsys.readouterr()  # the local notice, if this test started the shared server
    with sf.connect(FAKE_KEY, base_url=server.url) as remote:
        assert remote.health() == {"status": "ok"}
    with sf.connect(base_url=server.url, _environ={"RUNFLOW_API_KEY": FAKE_KEY}) as from_env:
        assert from_env.get  # built without a notice
    assert capsys.readouterr().err == ""
    with pytest.raises(errors.ConfigurationError, match="local=True"):
        sf.connect(FAKE_KEY, local=True)


# --- notebooks: the sync client inside a running event loop ------------------------------


async def test_to_async_is_the_same_client_for_await_and_hides_the_key(
    fresh_server: LocalServer,
) -> None:
    timeout = httpx.Timeout(7.0, connect=3.0)
    retry = sf.client.RetryPolicy(max_attempts=2, base_delay=0.01, random=lambda: 1.0)
    with sf.SkinFix(
        FAKE_KEY, base_url=fresh_server.url + "/", timeout=timeout, retry=retry, max_connections=3
    ) as blocking:
        twin = blocking.to_async()
        assert isinstance(twin, sf.AsyncSkinFix)
        assert (twin.base_url, twin.model) == (blocking.base_url, blocking.model)
        assert twin._http.timeout == timeout
        assert FAKE_KEY not in repr(twin) + repr(vars(twin))
        async with twin:
            assert (await twin.get((await twin.submit(f"{fresh_server.url}/x.jpg")).id)).id
            fresh_server.set_faults(error_rate=1.0)
            fresh_server.clear_requests()
            with pytest.raises(errors.ServerError):
                await twin.get("no-such-run")
        tries = [r for r in fresh_server.requests if r.path == "/v1/runs/no-such-run"]
        assert len(tries) == retry.max_attempts  # the retry policy came along
        fresh_server.set_faults(error_rate=0.0)
        assert blocking.health() == {"status": "ok"}  # closing the twin left this one open


async def test_sync_client_works_inside_a_running_event_loop(
    server: LocalServer, portrait_url: str
) -> None:
    asyncio.get_running_loop()  # we are inside a loop, as in a Jupyter cell
    with sf.SkinFix(FAKE_KEY, base_url=server.url) as client:
        run = client.run(portrait_url, timeout=60)
    assert run.status == "succeeded"


async def test_async_client_runs_submissions_concurrently(
    server: LocalServer, portrait_url: str
) -> None:
    async with sf.AsyncSkinFix(FAKE_KEY, base_url=server.url, max_connections=8) as client:
        runs = await asyncio.gather(*(client.submit(portrait_url) for _ in range(6)))
        done = await asyncio.gather(*(client.wait(run, timeout=120) for run in runs))
    assert {run.status for run in done} == {"succeeded"}
    assert len({run.id for run in done}) == 6


# --- the key never shows ------------------------------------------------------------------


async def test_the_api_key_never_appears_in_reprs_logs_or_errors(
    fresh_server: LocalServer,
    make_client: Callable[..., Client],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    failures: list[BaseException] = []

    async def expect_failure(call: Any) -> None:
        try:
            await settle(call())
        except errors.RunflowError as exc:
            failures.append(exc)
        else:
            raise AssertionError("expected an error")

    client = make_client(fresh_server)
    url = fresh_server.serve_file(SAMPLES / "camera.png")
    run = await settle(client.run(url, timeout=60))
    texts += [repr(client), repr(vars(client)), repr(run), repr(run.raw), run._repr_html_()]
    texts.append(await settle(client.upload(SAMPLES / "camera.png")))
    await expect_failure(lambda: client.get("missing"))
    await expect_failure(lambda: client.submit("http://example.com/x.jpg"))
    fresh_server.set_faults(error_rate=1.0)
    await expect_failure(lambda: client.submit(url))
    fresh_server.set_faults(error_rate=0.0, rate_limit_rate=1.0)
    await expect_failure(lambda: client.list_runs())
    fresh_server.set_faults(rate_limit_rate=0.0, credit_runs=0)
    await expect_failure(lambda: client.run(url))
    with serve(port=0, api_key="rf_live_a_different_key") as other:
        stranger = make_client(other)  # sends FAKE_KEY, which this server refuses
        await expect_failure(lambda: stranger.get("x"))
    await expect_failure(lambda: stranger.get("x"))  # stopped: no answer at all
    for exc in failures:
        texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    captured = capsys.readouterr()
    texts += [caplog.text, captured.out, captured.err]
    assert {type(exc).__name__ for exc in failures} >= {
        "NotFoundError",
        "ValidationError",
        "ServerError",
        "RateLimitError",
        "InsufficientCreditError",
        "AuthenticationError",
        "APIConnectionError",
    }
    assert any(r.name.startswith("httpx") for r in caplog.records)
    assert any("retrying in" in r.getMessage() for r in caplog.records)
    assert FAKE_KEY not in "\n".join(texts)
