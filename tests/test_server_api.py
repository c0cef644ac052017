"""The embedded server over real HTTP: every endpoint, status code and error envelope."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from skinfix_nb.errors import ConfigurationError
from skinfix_nb.local import LocalServer, RequestRecord, serve
from skinfix_nb.local.query import page, parse_q, parse_sort
from tests.conftest import FAKE_KEY

SAMPLES = Path(__file__).resolve().parents[1] / "skinfix_nb" / "samples"
CREATE = "/v1/models/runflow/skin-fix/runs"
TERMINAL = {"succeeded", "failed", "canceled"}


def api(server: LocalServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=30
    )


def wait_terminal(client: httpx.Client, run_id: str, *, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"/v1/runs/{run_id}").json()
        if run["status_code"] in TERMINAL:
            return run
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s")


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "errors"}
    assert body["code"] == code
    assert isinstance(body["message"], str)
    assert body["message"]
    return body


@pytest.fixture
def bench() -> Iterator[LocalServer]:
    """Benchmark mode (engine=None): runs finish at once, output = input."""
    with serve(port=0, api_key=FAKE_KEY, engine=None, seed=1) as srv:
        yield srv


@pytest.fixture
def client(bench: LocalServer) -> Iterator[httpx.Client]:
    with api(bench) as c:
        yield c


def create(
    client: httpx.Client, image_url: str = "https://example.com/face.jpg", **body: Any
) -> httpx.Response:
    return client.post(CREATE, json={"input": {"image_url": image_url}, **body})


# health and auth --------------------------------------------------------------------------


def test_health_needs_no_key(bench: LocalServer) -> None:
    response = httpx.get(f"{bench.url}/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", CREATE),
        ("GET", "/v1/runs"),
        ("GET", "/v1/runs/some-id"),
        ("POST", "/v1/admin/runs/some-id/cancellation"),
        ("POST", "/v1/asset-uploads"),
        ("POST", "/v1/asset-uploads/some-id/confirmations"),
        ("GET", "/v1/assets/some-id"),
        ("POST", "/v1/callback-secrets"),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", "Basic abc", "Bearer"])
def test_api_routes_need_the_bearer_key(
    bench: LocalServer, method: str, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.request(method, bench.url + path, headers=headers, json={})
    body = assert_envelope(response, 401, "UNAUTHORIZED")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert FAKE_KEY not in response.text
    assert "Authorization" in body["message"]


def test_without_api_key_any_token_is_accepted() -> None:
    with serve(port=0, engine=None) as srv:
        assert srv.api_key == "local"
        response = httpx.get(f"{srv.url}/v1/runs", headers={"Authorization": "Bearer anything"})
        assert response.status_code == 200
        assert httpx.get(f"{srv.url}/v1/runs").status_code == 401


def test_unknown_route_and_method_use_the_envelope(client: httpx.Client) -> None:
    assert_envelope(client.get("/v1/nothing-here"), 404, "NOT_FOUND")
    assert_envelope(client.get(CREATE), 405, "METHOD_NOT_ALLOWED")
    assert_envelope(client.delete("/v1/runs/x"), 405, "METHOD_NOT_ALLOWED")


# create -----------------------------------------------------------------------------------


def test_create_returns_a_queued_run(client: httpx.Client, bench: LocalServer) -> None:
    response = create(client, client_ref="row-1", metadata={"batch": 7, "tags": ["a"]})
    assert response.status_code == 201
    run = response.json()
    assert run["status_code"] == "queued"
    assert run["input"] == {"image_url": "https://example.com/face.jpg"}
    assert run["client_ref"] == "row-1"
    assert run["metadata"] == {"batch": 7, "tags": ["a"]}
    assert run["cost"] is None
    assert run["output"] is None
    assert run["created_at"].endswith("+00:00")
    assert run["id"][14] == "7"  # UUIDv7, like Runflow's run ids
    assert "Runflow-Request-Id" in response.headers
    assert [stored["id"] for stored in bench.runs()] == [run["id"]]


def test_unknown_model_is_404_and_bare_slug_is_405(client: httpx.Client) -> None:
    body = {"input": {"image_url": "https://example.com/a.jpg"}}
    assert_envelope(client.post("/v1/models/runflow/other/runs", json=body), 404, "MODEL_NOT_FOUND")
    assert_envelope(client.post("/v1/models/a/b/c/runs", json=body), 404, "MODEL_NOT_FOUND")
    bare = assert_envelope(
        client.post("/v1/models/skin-fix/runs", json=body), 405, "METHOD_NOT_ALLOWED"
    )
    assert "runflow/skin-fix" in bare["message"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body", "input"]),
        ({"input": "https://example.com/a.jpg"}, ["body", "input"]),
        ({"input": {}}, ["body", "input", "image_url"]),
        ({"input": {"image_url": 5}}, ["body", "input", "image_url"]),
        ({"input": {"image_url": ""}}, ["body", "input", "image_url"]),
        ({"input": {"image_url": "https://e.com/" + "a" * 9000}}, ["body", "input", "image_url"]),
        ({"input": {"image_url": "ftp://example.com/a.jpg"}}, ["body", "input", "image_url"]),
        ({"input": {"image_url": "http://example.com/a.jpg"}}, ["body", "input", "image_url"]),
        ({"input": {"image_url": "data:image/png;base64,AAAA"}}, ["body", "input", "image_url"]),
        ({"input": {"image_url": "https:///nohost"}}, ["body", "input", "image_url"]),
        (
            {"input": {"image_url": "https://e.com/a.jpg", "strength": 1}},
            ["body", "input", "strength"],
        ),
        (
            {"input": {"image_url": "https://e.com/a"}, "client_ref": "x" * 256},
            ["body", "client_ref"],
        ),
        ({"input": {"image_url": "https://e.com/a"}, "client_ref": 12}, ["body", "client_ref"]),
        ({"input": {"image_url": "https://e.com/a"}, "metadata": [1]}, ["body", "metadata"]),
        (
            {"input": {"image_url": "https://e.com/a"}, "metadata": {"x": "y" * 70_000}},
            ["body", "metadata"],
        ),
        (
            {"input": {"image_url": "https://e.com/a"}, "callback_url": "mailto:a@b"},
            ["body", "callback_url"],
        ),
        ([1, 2], ["body"]),
    ],
)
def test_invalid_create_bodies_get_422_with_field_errors(
    client: httpx.Client, bench: LocalServer, body: Any, loc: list[str]
) -> None:
    answer = assert_envelope(client.post(CREATE, json=body), 422, "VALIDATION_ERROR")
    assert answer["errors"][0]["loc"] == loc
    assert answer["errors"][0]["msg"]
    assert bench.runs() == []


def test_http_image_url_on_loopback_is_accepted_unless_strict(bench: LocalServer) -> None:
    with api(bench) as client:
        assert create(client, "http://127.0.0.1:9/a.jpg").status_code == 201
        assert create(client, "http://localhost:9/a.jpg").status_code == 201
    with (
        serve(port=0, api_key=FAKE_KEY, engine=None, strict_https=True) as strict,
        api(strict) as client,
    ):
        body = assert_envelope(create(client, "http://127.0.0.1:9/a.jpg"), 422, "VALIDATION_ERROR")
        assert "HTTPS" in body["message"]
        assert create(client, "https://example.com/a.jpg").status_code == 201


@pytest.mark.parametrize(
    "raw",
    [b"", b"   ", b"{", b"{'input': 1}", b"NaN", b'{"a": Infinity}', b"\xff\xfe", b"[" * 5000],
)
def test_unreadable_json_is_400(client: httpx.Client, raw: bytes) -> None:
    response = client.post(CREATE, content=raw, headers={"Content-Type": "application/json"})
    assert_envelope(response, 400, "INVALID_JSON")


def test_oversized_body_is_413(client: httpx.Client) -> None:
    huge = b'{"input": {"image_url": "https://e.com/a"}, "metadata": {"x": "' + b"a" * 1_100_000
    response = client.post(CREATE, content=huge + b'"}}')
    assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")


# get, state machine, benchmark mode -------------------------------------------------------


def test_get_unknown_run_is_404(client: httpx.Client) -> None:
    body = assert_envelope(client.get("/v1/runs/no-such-run"), 404, "RUN_NOT_FOUND")
    assert "no-such-run" in body["message"]


def test_benchmark_mode_output_is_input_and_time_is_latency() -> None:
    with serve(port=0, api_key=FAKE_KEY, engine=None, latency=0.3) as srv, api(srv) as client:
        run_id = create(client).json()["id"]
        seen = []
        while not seen or seen[-1] not in TERMINAL:
            status = client.get(f"/v1/runs/{run_id}").json()["status_code"]
            if not seen or seen[-1] != status:
                seen.append(status)
            time.sleep(0.01)
        run = client.get(f"/v1/runs/{run_id}").json()
    order = ["queued", "dispatching", "running", "succeeded"]
    assert seen[-1] == "succeeded"
    assert "running" in seen
    assert [s for s in order if s in seen] == seen  # never out of order
    assert run["output"]["outputs"] == [{"url": "https://example.com/face.jpg", "type": "image"}]
    assert run["output"]["timing"] == {"inference_ms": 300.0}
    assert run["duration_ms"] >= 300
    assert run["cost"] == "0.12"
    assert srv.billed_usd() == Decimal("0.12")


def test_real_engine_retouches_a_served_portrait(server: LocalServer) -> None:
    original = (SAMPLES / "astronaut.png").read_bytes()
    image_url = server.serve_file(original, name="astronaut.png")
    with api(server) as client:
        run = wait_terminal(client, create(client, image_url).json()["id"])
        assert run["status_code"] == "succeeded", run["failure_message"]
        assert run["cost"] == "0.12"
        assert run["completed_at"].endswith("+00:00")
        assert isinstance(run["duration_ms"], int)
        assert run["failure_code"] is None
        output = run["output"]
        assert output["seed"] is None
        assert output["nsfw_detected"] is False
        assert output["timing"]["inference_ms"] > 0
        [item] = output["outputs"]
        assert item["type"] == "image"
        fetched = httpx.get(item["url"])  # presigned style: no bearer token needed
    assert fetched.status_code == 200
    before = Image.open(io.BytesIO(original)).convert("RGB")
    after = Image.open(io.BytesIO(fetched.content)).convert("RGB")
    assert after.size == before.size
    assert after.tobytes() != before.tobytes()


def test_unfetchable_image_url_fails_the_run_clearly(server: LocalServer) -> None:
    with api(server) as client:
        missing = server.url + "/files/0000/none.png?sig=bad"
        run = wait_terminal(client, create(client, missing).json()["id"])
        assert run["status_code"] == "failed"
        assert run["failure_code"] == "INPUT_FETCH_FAILED"
        assert "HTTP 403" in run["failure_message"]
        assert "sig=bad" not in run["failure_message"]  # presigned query strings are redacted
        assert run["cost"] == "0"
        assert run["output"] is None

        closed = wait_terminal(client, create(client, "http://127.0.0.1:9/a.png").json()["id"])
        assert closed["failure_code"] == "INPUT_FETCH_FAILED"
        assert "ConnectError" in closed["failure_message"]


def test_undecodable_image_fails_the_run_clearly(server: LocalServer) -> None:
    not_an_image = server.serve_file(b"<html>sorry</html>", name="page.html")
    with api(server) as client:
        run = wait_terminal(client, create(client, not_an_image).json()["id"])
    assert run["status_code"] == "failed"
    assert run["failure_code"] == "INPUT_VALIDATION_FAILED"
    assert "not a usable image" in run["failure_message"]
    assert run["cost"] == "0"


# list -------------------------------------------------------------------------------------


def test_list_filters_by_client_ref_status_and_time(client: httpx.Client) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    ids = {ref: create(client, client_ref=ref).json()["id"] for ref in ("a", "b", "it's")}
    for run_id in ids.values():
        wait_terminal(client, run_id)

    def search(**params: Any) -> list[str]:
        response = client.get("/v1/runs", params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert search(q="client_ref.EQ:'a'") == [ids["a"]]
    assert search(q="client_ref.EQ:'it''s'") == [ids["it's"]]
    assert search(q="client_ref:b") == [ids["b"]]
    assert sorted(search(q="status_code:succeeded")) == sorted(ids.values())
    assert search(q="status_code:failed") == []
    since = before.isoformat()
    assert sorted(search(q=f"created_at>{since} AND status_code:succeeded")) == sorted(ids.values())
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert search(q=f"created_at>{future}") == []
    assert len(search(q="created_at>2000-01-01 AND created_at<2999-12-31T00:00:00Z")) == 3
    assert search(q=f"id.IN:('{ids['a']}','{ids['b']}')", sort_by="client_ref:asc") == [
        ids["a"],
        ids["b"],
    ]
    assert search(q=f"client_ref.EQ:'a' AND id.EQ:'{ids['b']}'") == []


def test_list_sorts_projects_and_pages_without_duplicates(client: httpx.Client) -> None:
    created = [create(client, client_ref=f"r{i}").json()["id"] for i in range(7)]
    newest_first = client.get("/v1/runs").json()["items"]
    assert [run["id"] for run in newest_first] == created[::-1]
    oldest_first = client.get("/v1/runs", params={"sort_by": "created_at:asc"}).json()["items"]
    assert [run["id"] for run in oldest_first] == created

    projected = client.get("/v1/runs", params={"fields": "id,status_code", "limit": 2}).json()
    assert all(set(item) == {"id", "status_code"} for item in projected["items"])

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 3, "sort_by": "created_at:asc"}
    while True:
        page = client.get("/v1/runs", params=params).json()
        seen += [item["id"] for item in page["items"]]
        if len(seen) == 3:
            create(client)  # a run created mid-walk must not shift the pages
        if page["next"] is None:
            break
        params["pq"] = page["next"]
    assert seen[:7] == created
    assert len(seen) == len(set(seen)) == 8


def test_indexed_creation_order_listing_matches_a_full_sort() -> None:
    with serve(port=0, api_key=FAKE_KEY, engine=None, latency=30) as slow, api(slow) as client:
        made = [create(client, client_ref=f"r{i % 4}").json()["id"] for i in range(40)]
        for run_id in made[::5]:
            client.post(f"/v1/admin/runs/{run_id}/cancellation", json={})
        deadline = time.monotonic() + 30
        while {run["status_code"] for run in slow.runs()} != {"running", "canceled"}:
            assert time.monotonic() < deadline, "runs never settled into running"
            time.sleep(0.01)
        stored = slow.runs()  # the reference (sorted by query.page); ids break created_at ties
        assert [run["id"] for run in stored] == made
        some = f"id.IN:('{made[3]}','{made[17]}','{made[30]}','nope')"
        for q in (
            "",
            "client_ref.EQ:'r1'",
            "status_code:canceled",
            "client_ref:r2 AND status_code:canceled",
            "status_code:running",
            some,
            f"created_at>={stored[20]['created_at']}",
            # creation windows are bisected, not scanned: strict and inclusive bounds,
            # both ends, an exact time (runs made in one millisecond share it), with an index
            f"created_at>{stored[20]['created_at']}",
            f"created_at<={stored[25]['created_at']}",
            f"created_at<{stored[25]['created_at']}",
            f"created_at>{stored[5]['created_at']} AND created_at<={stored[33]['created_at']}",
            f"created_at={stored[12]['created_at']}",
            f"client_ref:r3 AND created_at>={stored[10]['created_at']}",
        ):
            filters = parse_q(q)
            for direction in ("desc", "asc"):
                sort = parse_sort(f"created_at:{direction}")
                keep = [run for run in stored if all(f.matches(run) for f in filters)]
                expected, _ = page(keep, sort=sort, limit=500, after=None)
                params: dict[str, Any] = {"q": q, "sort_by": f"created_at:{direction}", "limit": 3}
                seen: list[str] = []
                while True:
                    answer = client.get("/v1/runs", params=params).json()
                    seen += [item["id"] for item in answer["items"]]
                    if answer["next"] is None:
                        break
                    params["pq"] = answer["next"]
                assert seen == [run["id"] for run in expected], (q, direction)
                assert seen, (q, direction)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"sort_by": "cost:desc"}, "sort_by"),
        ({"sort_by": "created_at:sideways"}, "sort_by"),
        ({"fields": "id,password"}, "fields"),
        ({"pq": "not-a-cursor!"}, "pq"),
        ({"q": "client_ref.EQ:'unterminated"}, "q"),
        ({"q": "cost:0.12"}, "q"),
        ({"q": "created_at>yesterday"}, "q"),
        ({"q": "created_at>2026-13-01"}, "q"),
        ({"q": "status_code:('a','b')"}, "q"),
    ],
)
def test_bad_list_parameters_are_422(
    client: httpx.Client, params: dict[str, Any], param: str
) -> None:
    body = assert_envelope(client.get("/v1/runs", params=params), 422, "VALIDATION_ERROR")
    assert body["errors"][0]["loc"] == ["query", param]


def test_list_limit_bounds_are_inclusive(client: httpx.Client) -> None:
    for _ in range(2):
        create(client)
    assert len(client.get("/v1/runs", params={"limit": 1}).json()["items"]) == 1
    assert len(client.get("/v1/runs", params={"limit": 500}).json()["items"]) == 2


# cancel -----------------------------------------------------------------------------------


def test_cancel_is_201_then_200_and_not_billed() -> None:
    with serve(port=0, api_key=FAKE_KEY, engine=None, latency=30) as srv, api(srv) as client:
        run_id = create(client).json()["id"]
        first = client.post(
            f"/v1/admin/runs/{run_id}/cancellation", json={"reason": "changed mind"}
        )
        assert first.status_code == 201
        assert first.json()["status_code"] == "canceled"
        assert first.json()["cost"] == "0"
        again = client.post(f"/v1/admin/runs/{run_id}/cancellation")
        assert again.status_code == 200
        assert again.json()["completed_at"] == first.json()["completed_at"]
        assert srv.billed_usd() == 0
        assert_envelope(client.post("/v1/admin/runs/nope/cancellation"), 404, "RUN_NOT_FOUND")
        short = client.post(f"/v1/admin/runs/{run_id}/cancellation", json={"reason": "no"})
        assert_envelope(short, 422, "VALIDATION_ERROR")


def test_cancel_of_a_finished_run_is_200_unchanged(client: httpx.Client) -> None:
    run = wait_terminal(client, create(client).json()["id"])
    response = client.post(f"/v1/admin/runs/{run['id']}/cancellation")
    assert response.status_code == 200
    assert response.json()["status_code"] == "succeeded"
    assert response.json()["cost"] == "0.12"


# uploads and assets -----------------------------------------------------------------------


def upload(client: httpx.Client, data: bytes, mime: str, name: str = "face.png") -> dict[str, Any]:
    session = client.post(
        "/v1/asset-uploads", json={"filename": name, "mime_type": mime, "size_bytes": len(data)}
    )
    assert session.status_code == 201, session.text
    return session.json()  # type: ignore[no-any-return]


def test_three_step_upload_gives_a_url_the_engine_can_use(server: LocalServer) -> None:
    data = (SAMPLES / "astronaut.png").read_bytes()
    with api(server) as client:
        session = upload(client, data, "image/png")
        assert set(session) == {"asset_id", "upload_url"}
        put = httpx.put(session["upload_url"], content=data, headers={"Content-Type": "image/png"})
        assert put.status_code == 200
        assert put.headers["ETag"]
        confirmed = client.post(f"/v1/asset-uploads/{session['asset_id']}/confirmations", json={})
        assert confirmed.status_code == 201
        asset = confirmed.json()
        assert asset["id"] == session["asset_id"]
        assert asset["mime_type"] == "image/png"
        assert asset["size_bytes"] == len(data)
        assert httpx.get(asset["url"]).content == data
        again = client.post(f"/v1/asset-uploads/{session['asset_id']}/confirmations")
        assert again.status_code == 200
        assert again.json() == asset
        fetched = client.get(f"/v1/assets/{asset['id']}")
        assert fetched.status_code == 200
        assert fetched.json()["url"] == asset["url"]
        run = wait_terminal(client, create(client, asset["url"]).json()["id"])
        assert run["status_code"] == "succeeded", run["failure_message"]
        late_put = httpx.put(
            session["upload_url"], content=data, headers={"Content-Type": "image/png"}
        )
        assert_envelope(late_put, 409, "CONFLICT")


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"filename": "a.png", "mime_type": "image/png", "size_bytes": 52_428_801}, "size_bytes"),
        ({"filename": "a.png", "mime_type": "image/png", "size_bytes": 0}, "size_bytes"),
        ({"filename": "a.png", "mime_type": "image/png", "size_bytes": "10"}, "size_bytes"),
        ({"filename": "a.png", "mime_type": "image/png", "size_bytes": True}, "size_bytes"),
        ({"filename": "a.svg", "mime_type": "image/svg+xml", "size_bytes": 10}, "mime_type"),
        ({"filename": "a.pdf", "mime_type": "application/pdf", "size_bytes": 10}, "mime_type"),
        ({"mime_type": "image/png", "size_bytes": 10}, "filename"),
        ({"filename": "", "mime_type": "image/png", "size_bytes": 10}, "filename"),
        ({"filename": "a.png", "size_bytes": 10}, "mime_type"),
    ],
)
def test_upload_sessions_check_size_and_mime(
    client: httpx.Client, body: dict[str, Any], loc: str
) -> None:
    answer = assert_envelope(client.post("/v1/asset-uploads", json=body), 422, "VALIDATION_ERROR")
    assert ["body", loc] in [error["loc"] for error in answer["errors"]]


def test_upload_put_and_confirm_errors(client: httpx.Client) -> None:
    png = (SAMPLES / "astronaut.png").read_bytes()
    session = upload(client, png, "image/png")
    url, asset_id = session["upload_url"], session["asset_id"]
    confirm = f"/v1/asset-uploads/{asset_id}/confirmations"

    assert_envelope(client.post(confirm), 422, "VALIDATION_ERROR")  # nothing PUT yet
    wrong_type = httpx.put(url, content=png, headers={"Content-Type": "image/jpeg"})
    assert_envelope(wrong_type, 422, "VALIDATION_ERROR")
    forged = httpx.put(
        url.replace("sig=", "sig=0"), content=png, headers={"Content-Type": "image/png"}
    )
    assert_envelope(forged, 403, "SIGNATURE_MISMATCH")
    unknown = httpx.put(client.base_url.join("/uploads/nope?sig=x"), content=png)
    assert_envelope(unknown, 403, "SIGNATURE_MISMATCH")

    lie = httpx.put(url, content=b"just some text", headers={"Content-Type": "image/png"})
    assert lie.status_code == 200
    body = assert_envelope(client.post(confirm), 422, "VALIDATION_ERROR")
    assert "text/plain" in body["message"]
    bad_folder = client.post(confirm, json={"folder_id": "not-a-uuid"})
    assert_envelope(bad_folder, 422, "VALIDATION_ERROR")
    assert_envelope(
        client.post("/v1/asset-uploads/nope/confirmations"), 404, "ASSET_UPLOAD_NOT_FOUND"
    )
    assert_envelope(client.get("/v1/assets/nope"), 404, "ASSET_NOT_FOUND")


def test_upload_over_50_mib_is_refused(client: httpx.Client) -> None:
    session = upload(client, b"x", "image/png")
    too_big = httpx.put(
        session["upload_url"], content=b"\0" * 52_428_801, headers={"Content-Type": "image/png"}
    )
    body = assert_envelope(too_big, 422, "VALIDATION_ERROR")
    assert "50 MiB" in body["message"]


def test_served_files_need_their_signature(bench: LocalServer) -> None:
    url = bench.serve_file(SAMPLES / "grace_hopper.jpg")
    good = httpx.get(url)
    assert good.status_code == 200
    assert good.headers["Content-Type"] == "image/jpeg"
    assert good.content == (SAMPLES / "grace_hopper.jpg").read_bytes()
    assert_envelope(httpx.get(url.split("?")[0]), 403, "SIGNATURE_MISMATCH")
    with pytest.raises(ConfigurationError, match="cannot read"):
        bench.serve_file(SAMPLES / "missing.png")


# callback secrets -------------------------------------------------------------------------


def test_callback_secret_is_shown_once(client: httpx.Client) -> None:
    response = client.post("/v1/callback-secrets", json={"label": "notebook"})
    assert response.status_code == 201
    secret = response.json()
    assert secret["plain_secret"].startswith("whsec_")
    assert secret["is_current"] is True
    assert secret["label"] == "notebook"
    assert secret["key_prefix"] == secret["plain_secret"][:10]
    assert client.post("/v1/callback-secrets").status_code == 201  # label is optional
    long_label = client.post("/v1/callback-secrets", json={"label": "x" * 256})
    assert_envelope(long_label, 422, "VALIDATION_ERROR")


# idempotency ------------------------------------------------------------------------------


def test_idempotency_key_replays_the_first_answer(client: httpx.Client, bench: LocalServer) -> None:
    headers = {"Idempotency-Key": "row-17-attempt"}
    body = {"input": {"image_url": "https://example.com/a.jpg"}, "client_ref": "row-17"}
    first = client.post(CREATE, json=body, headers=headers)
    reordered = {"client_ref": "row-17", "input": {"image_url": "https://example.com/a.jpg"}}
    second = client.post(CREATE, json=reordered, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.content == first.content  # the cached 201, byte for byte
    assert len(bench.runs()) == 1

    other = dict(body, client_ref="row-18")
    conflict = assert_envelope(client.post(CREATE, json=other, headers=headers), 409, "CONFLICT")
    assert "Idempotency-Key" in conflict["message"]
    assert len(bench.runs()) == 1
    assert create(client).status_code == 201  # no key: a new run each time
    assert len(bench.runs()) == 2


def test_dropped_post_creates_the_run_and_the_key_recovers_it() -> None:
    with serve(port=0, api_key=FAKE_KEY, engine=None, drop_after_post_rate=1.0) as srv:
        with api(srv) as client:
            headers = {"Idempotency-Key": "k-1"}
            body = {"input": {"image_url": "https://example.com/a.jpg"}, "client_ref": "c-1"}
            with pytest.raises(httpx.RemoteProtocolError):
                client.post(CREATE, json=body, headers=headers)
            [run] = srv.runs()
            assert run["client_ref"] == "c-1"
            srv.set_faults(drop_after_post_rate=0.0)
            retry = client.post(CREATE, json=body, headers=headers)
            assert retry.status_code == 201
            assert retry.json()["id"] == run["id"]
            assert len(srv.runs()) == 1
            found = client.get("/v1/runs", params={"q": "client_ref.EQ:'c-1'"}).json()["items"]
            assert [item["id"] for item in found] == [run["id"]]
        posts = [r for r in srv.requests if r.method == "POST"]
        assert [(r.status, r.idempotency_key, r.client_ref) for r in posts] == [
            (0, "k-1", "c-1"),
            (201, "k-1", "c-1"),
        ]


# faults -----------------------------------------------------------------------------------


def test_rate_limit_without_and_with_retry_after() -> None:
    with serve(port=0, api_key=FAKE_KEY, engine=None, rate_limit_rate=1.0) as srv, api(srv) as c:
        response = c.get("/v1/runs")
        assert_envelope(response, 429, "RATE_LIMITED")
        assert "Retry-After" not in response.headers
        assert c.get("/v1/health").status_code == 200  # probes are never faulted
        srv.set_faults(retry_after=2)
        assert c.get("/v1/runs").headers["Retry-After"] == "2"
        srv.set_faults(retry_after=0.5, retry_after_fraction=0.5)
        headers = [c.get("/v1/runs").headers.get("Retry-After") for _ in range(40)]
        assert set(headers) == {None, "0.5"}
        srv.set_faults(rate_limit_rate=0.0)
        assert c.get("/v1/runs").status_code == 200


def test_error_rate_gives_500_envelopes_but_not_on_files() -> None:
    with serve(port=0, api_key=FAKE_KEY, engine=None, error_rate=1.0) as srv, api(srv) as c:
        assert_envelope(create(c), 500, "INTERNAL_ERROR")
        assert srv.runs() == []
        url = srv.serve_file(SAMPLES / "camera.png")
        assert httpx.get(url).status_code == 200
        srv.set_faults(faults_on_files=True)
        assert_envelope(httpx.get(url), 500, "INTERNAL_ERROR")


def test_mixed_rates_follow_the_seed() -> None:
    def statuses() -> list[int]:
        with (
            serve(port=0, api_key=FAKE_KEY, engine=None, error_rate=0.3, seed=7) as srv,
            api(srv) as c,
        ):
            return [c.get("/v1/runs").status_code for _ in range(40)]

    first = statuses()
    assert first == statuses()
    assert set(first) == {200, 500}


def test_failure_rate_fails_runs_without_billing() -> None:
    with serve(port=0, api_key=FAKE_KEY, engine=None, failure_rate=1.0) as srv, api(srv) as c:
        run = wait_terminal(c, create(c).json()["id"])
        assert run["status_code"] == "failed"
        assert run["failure_code"] == "PROVIDER_ERROR"
        assert run["cost"] == "0"
        assert srv.billed_usd() == 0


def test_credit_runs_out_with_402() -> None:
    with serve(port=0, api_key=FAKE_KEY, engine=None, credit_runs=2) as srv, api(srv) as c:
        assert [create(c).status_code for _ in range(2)] == [201, 201]
        body = assert_envelope(create(c), 402, "INSUFFICIENT_CREDIT")
        assert "top up" in body["message"]
        assert len(srv.runs()) == 2
        srv.set_faults(credit_runs=1)
        assert [create(c).status_code for _ in range(2)] == [201, 402]


def test_usd_credit_reserves_the_price_and_refunds_failures() -> None:
    options: dict[str, Any] = {"credit": "0.24", "failure_rate": 1.0, "latency": 0.3}
    with serve(port=0, api_key=FAKE_KEY, engine=None, **options) as srv, api(srv) as c:
        first = create(c).json()["id"]
        assert create(c).status_code == 201
        assert_envelope(create(c), 402, "INSUFFICIENT_CREDIT")  # both in flight: reserved
        wait_terminal(c, first)
        srv.set_faults(failure_rate=0.0)
        assert create(c).status_code == 201  # the failed run gave its $0.12 back


def test_request_log_records_and_clears(client: httpx.Client, bench: LocalServer) -> None:
    bench.clear_requests()
    create(client, client_ref="ref-9")
    client.get("/v1/runs/nope")
    log = bench.requests
    assert all(isinstance(record, RequestRecord) for record in log)
    assert [(r.method, r.path, r.status, r.client_ref) for r in log] == [
        ("POST", CREATE, 201, "ref-9"),
        ("GET", "/v1/runs/nope", 404, None),
    ]
    assert log[0].at <= log[1].at
    bench.clear_requests()
    assert bench.requests == []


# configuration and lifecycle --------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"engine": "gpu"},
        {"workers": 0},
        {"latency": -1},
        {"latency": (2, 1)},
        {"failure_rate": 1.5},
        {"rate_limit_rate": float("nan")},
        {"retry_after": -3},
        {"credit": "lots"},
        {"credit": -1},
        {"credit_runs": -1},
        {"api_key": ""},
        {"callback_delays": (-1.0,)},
    ],
)
def test_bad_options_are_refused_clearly(options: dict[str, Any]) -> None:
    name = next(iter(options))
    with pytest.raises(ConfigurationError, match=name):
        serve(port=0, **options)


def test_set_faults_refuses_unknown_names(bench: LocalServer) -> None:
    with pytest.raises(ConfigurationError, match="valid: "):
        bench.set_faults(latncy=1)
    with pytest.raises(ConfigurationError, match="error_rate"):
        bench.set_faults(error_rate=2)


def test_busy_port_and_stop(bench: LocalServer) -> None:
    port = int(bench.url.rsplit(":", 1)[1])
    with pytest.raises(ConfigurationError, match="port=0"):
        serve(port=port)
    other = serve(port=0, engine=None)
    assert "running" in repr(other)
    other.stop()
    other.stop()  # idempotent
    assert "stopped" in repr(other)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{other.url}/v1/health")


def test_python_dash_m_starts_a_server_and_prints_its_url() -> None:
    command = [sys.executable, "-m", "skinfix_nb.local", "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().split()[-1]
            key_line = process.stdout.readline()
            assert url.startswith("http://127.0.0.1:")
            assert "'local'" in key_line
            response = httpx.get(f"{url}/v1/runs", headers={"Authorization": "Bearer local"})
            assert response.status_code == 200
        finally:
            process.terminate()


def test_imports_stay_light() -> None:
    """Starting a server loads no image code; the engine loads no HTTP code."""
    check = (
        "import sys\n"
        "from skinfix_nb.local import serve\n"
        "with serve(port=0, engine=None) as server:\n"
        "    pass\n"
        "assert 'cv2' not in sys.modules and 'skinfix_nb.local.engine' not in sys.modules\n"
        "import skinfix_nb.local.engine\n"
    )
    subprocess.run([sys.executable, "-c", check], check=True, timeout=60)
    engine_only = "import sys, skinfix_nb.local.engine; assert 'aiohttp' not in sys.modules"
    subprocess.run([sys.executable, "-c", engine_only], check=True, timeout=60)
