"""Bad input never crashes the embedded server: fuzzed bodies always get a 4xx envelope."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skinfix_nb.local import LocalServer, serve
from tests.conftest import FAKE_KEY

CREATE = "/v1/models/runflow/skin-fix/runs"
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**30, max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
huge_strings = st.integers(min_value=8_193, max_value=60_000).map(lambda n: "x" * n)
bad_urls = (
    huge_strings.map(lambda s: "https://example.com/" + s)
    | st.sampled_from(["", "ftp://e.com/a.jpg", "http://example.com/a.jpg", "data:,x", "https://"])
    | st.text(max_size=40).filter(lambda s: not s.startswith("https://"))
)
junk_lists = st.lists(json_values, max_size=4)
junk_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=4)
not_objects = scalars | junk_lists  # anything JSON but an object
not_strings = (
    st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | junk_lists
    | junk_objects
)
deep_nesting = st.integers(min_value=1, max_value=100_000).map(lambda n: "[" * n + "]" * n)

invalid_create_bodies = st.one_of(
    not_objects,
    st.fixed_dictionaries({}, optional={"metadata": json_values, "client_ref": json_values}),
    st.fixed_dictionaries({"input": not_objects}),
    st.fixed_dictionaries({"input": st.fixed_dictionaries({"image_url": not_strings | bad_urls})}),
    st.fixed_dictionaries(
        {
            "input": st.just({"image_url": "https://example.com/a.jpg"}),
            "client_ref": not_strings | huge_strings.map(lambda s: s[:256] + s),
        }
    ),
    st.fixed_dictionaries(
        {
            "input": st.just({"image_url": "https://example.com/a.jpg"}),
            "metadata": not_strings.filter(lambda v: not isinstance(v, dict)) | st.text(),
        }
    ),
    st.fixed_dictionaries(
        {
            "input": st.just({"image_url": "https://example.com/a.jpg"}),
            "callback_url": not_strings | bad_urls.filter(lambda u: not u.startswith("http://")),
        }
    ),
    st.fixed_dictionaries(
        {
            "input": st.dictionaries(
                st.text(min_size=1, max_size=10).map(lambda k: "x_" + k), json_values, min_size=1
            )
        }
    ),
)


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[LocalServer]:
    with serve(port=0, api_key=FAKE_KEY, engine=None) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(fuzzed: LocalServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {FAKE_KEY}", "Content-Type": "application/json"}
    with httpx.Client(base_url=fuzzed.url, headers=headers, timeout=30) as c:
        yield c


def assert_envelope_4xx(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == {"code", "message", "errors"}
    assert isinstance(body["code"], str)
    assert isinstance(body["message"], str)
    assert body["errors"] is None or isinstance(body["errors"], list)


@FUZZ
@given(raw=st.binary(max_size=2_000) | deep_nesting.map(str.encode))
def test_malformed_bytes_get_4xx(client: httpx.Client, raw: bytes) -> None:
    assert_envelope_4xx(client.post(CREATE, content=raw))
    assert_envelope_4xx(client.post("/v1/asset-uploads", content=raw))


@FUZZ
@given(body=invalid_create_bodies)
def test_wrong_types_huge_strings_and_junk_get_4xx(client: httpx.Client, body: Any) -> None:
    assert_envelope_4xx(client.post(CREATE, content=json.dumps(body)))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(
        [
            CREATE,
            "/v1/asset-uploads",
            "/v1/asset-uploads/00000000-0000-0000-0000-000000000000/confirmations",
            "/v1/admin/runs/nope/cancellation",
            "/v1/callback-secrets",
        ]
    ),
    body=json_values,
)
def test_any_json_on_any_route_is_never_5xx(client: httpx.Client, path: str, body: Any) -> None:
    response = client.post(path, content=json.dumps(body))
    assert response.status_code < 500
    if response.status_code >= 400:
        assert_envelope_4xx(response)


@settings(max_examples=100, deadline=None)
@given(
    q=st.text(max_size=80) | st.sampled_from(["client_ref.EQ:'", "id.IN:(", "created_at>"]),
    limit=st.text(max_size=5),
    sort_by=st.text(max_size=20),
    fields=st.text(max_size=20),
    pq=st.text(max_size=20),
)
def test_fuzzed_list_queries_are_200_or_422(
    client: httpx.Client, q: str, limit: str, sort_by: str, fields: str, pq: str
) -> None:
    params = {"q": q, "limit": limit, "sort_by": sort_by, "fields": fields, "pq": pq}
    response = client.get("/v1/runs", params=params)
    assert response.status_code in (200, 422), response.text[:300]
    if response.status_code == 422:
        assert_envelope_4xx(response)


def test_server_is_healthy_after_the_fuzzing(client: httpx.Client, fuzzed: LocalServer) -> None:
    """Runs last in this module, on the server the fuzzing above hammered."""
    assert client.get("/v1/health").json() == {"status": "ok"}
    body = {"input": {"image_url": "https://example.com/a.jpg"}}
    assert client.post(CREATE, json=body).status_code == 201
    assert max(record.status for record in fuzzed.requests) < 500
