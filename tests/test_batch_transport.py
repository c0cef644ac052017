"""The aiohttp transport the batch's own client uses: same answers, errors that retries trust."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from skinfix_nb.aiohttp_transport import AiohttpTransport
from skinfix_nb.batch import Batch
from skinfix_nb.client import AsyncSkinFix, RetryPolicy
from skinfix_nb.ledger import Ledger
from skinfix_nb.local import LocalServer, serve
from tests.conftest import FAKE_KEY

CREATE = "/v1/models/runflow/skin-fix/runs"


@pytest.fixture
def fast_server() -> Iterator[LocalServer]:
    with serve(port=0, api_key=FAKE_KEY, engine=None, latency=0.02, seed=3) as srv:
        yield srv


def http(server_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server_url,
        headers={"Authorization": f"Bearer {FAKE_KEY}"},
        transport=AiohttpTransport(max_connections=4),
    )


async def test_requests_and_answers_pass_through(fast_server: LocalServer) -> None:
    async with http(fast_server.url) as client:
        created = await client.post(
            CREATE,
            json={"input": {"image_url": f"{fast_server.url}/a.jpg"}, "client_ref": "ref-1"},
            headers={"Idempotency-Key": "key-1"},
        )
        assert created.status_code == 201
        run = created.json()
        listed = await client.get("/v1/runs", params={"q": "client_ref.EQ:'ref-1'"})
        missing = await client.get("/v1/runs/nope")
    assert [item["id"] for item in listed.json()["items"]] == [run["id"]]
    assert missing.status_code == 404
    assert missing.json()["code"]
    (record,) = [r for r in fast_server.requests if r.method == "POST"]
    assert (record.idempotency_key, record.client_ref) == ("key-1", "ref-1")


async def test_a_dropped_answer_is_a_read_error_and_a_refused_connection_a_connect_error(
    fast_server: LocalServer,
) -> None:
    fast_server.set_faults(drop_after_post_rate=1.0)
    async with http(fast_server.url) as client:
        with pytest.raises(httpx.ReadError):  # sent, maybe carried out: look it up first
            await client.post(CREATE, json={"input": {"image_url": f"{fast_server.url}/a.jpg"}})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    async with http(f"http://127.0.0.1:{closed_port}") as client:
        with pytest.raises(httpx.ConnectError):  # never reached the server: safe to resend
            await client.get("/v1/health")


async def test_flaky_api_through_aiohttp_makes_no_duplicate_run(fast_server: LocalServer) -> None:
    # 15 % drops: at 60 creates the chance that none is dropped is below 1e-4
    fast_server.set_faults(error_rate=0.2, rate_limit_rate=0.1, drop_after_post_rate=0.15)
    retry = RetryPolicy(max_attempts=12, base_delay=0.01, max_delay=0.05)
    urls = [f"{fast_server.url}/img/{i}.jpg" for i in range(60)]
    async with AsyncSkinFix(
        FAKE_KEY, base_url=fast_server.url, retry=retry, transport=AiohttpTransport()
    ) as client:
        with Ledger(":memory:") as ledger:
            batch = Batch(urls, client=client, ledger=ledger, progress=False)
            await batch.run()
    assert batch.columns()["status"] == ["succeeded"] * 60
    refs = Counter(run["client_ref"] for run in fast_server.runs())
    assert len(refs) == 60
    assert set(refs.values()) == {1}
    assert 0 in {r.status for r in fast_server.requests}  # answers were really dropped
