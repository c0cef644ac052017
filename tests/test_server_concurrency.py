"""The embedded server under concurrent clients (functional checks; speed is in benchmarks/)."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path

import httpx

from skinfix_nb.local import serve
from tests.conftest import FAKE_KEY

CREATE = "/v1/models/runflow/skin-fix/runs"
HEADERS = {"Authorization": f"Bearer {FAKE_KEY}"}
PORTRAIT = Path(__file__).resolve().parents[1] / "skinfix_nb" / "samples" / "astronaut.png"


async def test_64_keep_alive_clients_at_once() -> None:
    tls = ssl.create_default_context()  # built once: loading CA files per client is slow
    with serve(port=0, api_key=FAKE_KEY, engine=None, latency=0.2) as srv:

        async def one_client(index: int) -> tuple[str, str, list[str]]:
            limits = httpx.Limits(max_connections=1)  # one keep-alive connection per client
            async with httpx.AsyncClient(
                base_url=srv.url, headers=HEADERS, limits=limits, verify=tls
            ) as c:
                ref = f"client-{index}"
                body = {"input": {"image_url": f"https://example.com/{index}.jpg"}}
                created = await c.post(CREATE, json={**body, "client_ref": ref})
                assert created.status_code == 201
                run_id = created.json()["id"]
                while (run := (await c.get(f"/v1/runs/{run_id}")).json())["status_code"] not in (
                    "succeeded",
                    "failed",
                ):
                    await asyncio.sleep(0.02)
                found = await c.get("/v1/runs", params={"q": f"client_ref.EQ:'{ref}'"})
                return run_id, run["status_code"], [item["id"] for item in found.json()["items"]]

        results = await asyncio.gather(*(one_client(i) for i in range(64)))
        runs = srv.runs()
        posts = [r for r in srv.requests if r.method == "POST"]

    assert len({run_id for run_id, _, _ in results}) == 64
    assert all(status == "succeeded" for _, status, _ in results)
    assert all(found == [run_id] for run_id, _, found in results)
    assert len(runs) == 64
    assert sorted(r.client_ref or "" for r in posts) == sorted(f"client-{i}" for i in range(64))
    assert all(r.status == 201 for r in posts)


def test_http_stays_responsive_while_the_bounded_pool_works() -> None:
    with (
        serve(port=0, api_key=FAKE_KEY, workers=1) as srv,
        httpx.Client(base_url=srv.url, headers=HEADERS) as client,
    ):
        image_url = srv.serve_file(PORTRAIT)
        ids = [
            client.post(CREATE, json={"input": {"image_url": image_url}}).json()["id"]
            for _ in range(6)
        ]
        answered_while_busy = 0
        most_in_progress = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert client.get("/v1/health").status_code == 200
            statuses = [item["status_code"] for item in client.get("/v1/runs").json()["items"]]
            most_in_progress = max(
                most_in_progress, sum(s in ("dispatching", "running") for s in statuses)
            )
            if all(s == "succeeded" for s in statuses):
                break
            answered_while_busy += 1
    assert len(statuses) == len(ids)
    assert all(s == "succeeded" for s in statuses)
    assert answered_while_busy >= 5  # the API answered many times while retouching went on
    assert most_in_progress == 1  # workers=1: never two images in the pool at once
