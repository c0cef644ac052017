"""Pure client logic: retry timing, request building, key resolution, argument checks.

Retry *spacing* is read here from an injected sleep over ``httpx.MockTransport`` (no real
waiting); the same behaviour against the real embedded server is in test_client.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import skinfix_nb as sf
from skinfix_nb import errors
from skinfix_nb._core import (
    PollPolicy,
    RetryPolicy,
    create_body,
    idempotency_key_for,
    is_retryable,
    model_path,
    runs_query,
)
from skinfix_nb.client import resolve_api_key
from tests.conftest import FAKE_KEY

RUN = {"id": "run-1", "status_code": "queued", "client_ref": "ref-1"}


class Script:
    """Answers requests from a list, one per request, and keeps what was asked."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _json(status: int, body: Any, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)


def _client(script: Script, sleeps: list[float], **options: Any) -> sf.SkinFix:
    return sf.SkinFix(
        FAKE_KEY,
        base_url="https://api.example",
        transport=httpx.MockTransport(script),
        retry=options.pop("retry", RetryPolicy(random=lambda: 1.0)),
        sleep=sleeps.append,
        **options,
    )


def test_backoff_doubles_to_the_cap_with_full_jitter() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0, random=lambda: 1.0)
    assert [policy.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert RetryPolicy(random=lambda: 0.25).backoff(3) == 0.5


def test_server_errors_are_retried_with_backoff_until_the_fifth_attempt() -> None:
    script = Script(*[_json(503, {"code": "UNAVAILABLE", "message": "busy"})] * 5)
    sleeps: list[float] = []
    with _client(script, sleeps) as client, pytest.raises(errors.ServerError, match="HTTP 503"):
        client.get("run-1")
    assert len(script.requests) == 5
    assert sleeps == [0.5, 1.0, 2.0, 4.0]


def test_retry_after_is_honoured_and_capped() -> None:
    script = Script(
        _json(429, {"code": "RATE_LIMITED", "message": "slow"}, **{"Retry-After": "7"}),
        _json(429, {"code": "RATE_LIMITED", "message": "slow"}, **{"Retry-After": "50"}),
        _json(200, RUN),
    )
    sleeps: list[float] = []
    retry = RetryPolicy(max_retry_after=10.0, random=lambda: 1.0)
    with _client(script, sleeps, retry=retry) as client:
        assert client.get("run-1").id == "run-1"
    assert sleeps == [7.0, 10.0]


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 409, 422])
def test_client_errors_are_never_retried(status: int) -> None:
    script = Script(_json(status, {"code": "NOPE", "message": "no"}))
    sleeps: list[float] = []
    with _client(script, sleeps) as client, pytest.raises(errors.APIError) as caught:
        client.get("run-1")
    assert caught.value.status_code == status
    assert (len(script.requests), sleeps) == (1, [])


def test_network_errors_are_retried_then_reported_without_the_query() -> None:
    script = Script(*[httpx.ConnectError("refused")] * 5)
    sleeps: list[float] = []
    retry = RetryPolicy(max_attempts=5, random=lambda: 1.0)
    with (
        _client(script, sleeps, retry=retry) as client,
        pytest.raises(errors.APIConnectionError) as caught,
    ):
        client.get("run-1")
    assert len(script.requests) == 5
    assert "GET https://api.example/v1/runs/run-1 got no answer (ConnectError" in str(caught.value)


def test_a_timeout_is_an_api_timeout_error() -> None:
    script = Script(httpx.ReadTimeout("slow"))
    with (
        _client(script, [], retry=RetryPolicy(max_attempts=1)) as client,
        pytest.raises(errors.APITimeoutError, match="may or may not have acted"),
    ):
        client.health()


def test_max_elapsed_stops_retrying_early() -> None:
    script = Script(*[_json(500, {"message": "x"})] * 5)
    sleeps: list[float] = []
    retry = RetryPolicy(max_elapsed=2.0, random=lambda: 1.0)
    with (
        _client(script, sleeps, retry=retry, clock=lambda: sum(sleeps)) as client,
        pytest.raises(errors.ServerError),
    ):
        client.get("run-1")
    assert sleeps == [0.5, 1.0]  # a further 2.0 s would end past 2.0 s in total


def test_retryable_errors() -> None:
    assert is_retryable(errors.APIConnectionError("x"))
    assert is_retryable(errors.RateLimitError("x", status_code=429))
    assert is_retryable(errors.ServerError("x", status_code=502))
    assert not is_retryable(errors.InsufficientCreditError("x", status_code=402))
    assert not is_retryable(errors.ConflictError("x", status_code=409))


def test_submit_sends_a_stable_idempotency_key_client_ref_and_headers() -> None:
    script = Script(_json(201, RUN), _json(201, RUN))
    with _client(script, []) as client:
        client.submit("https://img.example/a.jpg", client_ref="ref-1", metadata={"row": 1})
        client.submit("https://img.example/a.jpg", client_ref="ref-1", metadata={"row": 1})
    first, second = script.requests
    assert first.url == "https://api.example/v1/models/runflow/skin-fix/runs"
    assert json.loads(first.content) == {
        "input": {"image_url": "https://img.example/a.jpg"},
        "client_ref": "ref-1",
        "metadata": {"row": 1},
    }
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert first.headers["Authorization"] == f"Bearer {FAKE_KEY}"
    assert first.headers["User-Agent"] == f"skinfix-nb/{sf.__version__}"


def test_submit_without_client_ref_makes_a_fresh_one_per_call() -> None:
    script = Script(_json(201, RUN), _json(201, RUN))
    with _client(script, []) as client:
        client.submit("https://img.example/a.jpg")
        client.submit("https://img.example/a.jpg")
    refs = [json.loads(r.content)["client_ref"] for r in script.requests]
    keys = [r.headers["Idempotency-Key"] for r in script.requests]
    assert refs[0] != refs[1]
    assert keys[0] != keys[1]
    assert all(ref.startswith("sfnb-") for ref in refs)


def test_idempotency_key_depends_on_model_and_body() -> None:
    body = create_body("https://a/b.jpg", metadata=None, callback_url=None, client_ref="r")
    assert idempotency_key_for("runflow/skin-fix", body) == idempotency_key_for(
        "runflow/skin-fix", dict(body)
    )
    assert idempotency_key_for("runflow/skin-fix", body) != idempotency_key_for("other/model", body)


def test_cancel_403_says_the_key_may_not_cancel() -> None:
    script = Script(
        _json(403, {"code": "PERMISSION_DENIED", "message": "missing scope runs:admin"})
    )
    with _client(script, []) as client, pytest.raises(errors.PermissionDeniedError) as caught:
        client.cancel("run-1", reason="not needed")
    message = str(caught.value)
    assert "admin endpoint" in message
    assert "no public cancel" in message
    assert caught.value.run_id == "run-1"
    assert json.loads(script.requests[0].content) == {"reason": "not needed"}


def test_list_runs_builds_the_filter_and_reads_the_cursor() -> None:
    script = Script(_json(200, {"items": [RUN], "next": "cur-2"}))
    with _client(script, []) as client:
        page = client.list_runs(
            limit=5,
            client_ref="ref-1",
            status="succeeded",
            created_after="2026-01-01T00:00:00+00:00",
            fields=["id", "status_code"],
            cursor="cur-1",
        )
    params = script.requests[0].url.params
    assert params["q"] == (
        "client_ref.EQ:'ref-1' AND status_code:succeeded AND created_at>2026-01-01T00:00:00+00:00"
    )
    assert (params["limit"], params["fields"], params["pq"]) == ("5", "id,status_code", "cur-1")
    assert page.next == "cur-2"
    assert page.items[0].id == "run-1"


def test_find_by_client_ref_ignores_runs_of_other_refs() -> None:
    """Even a server that ignored the filter cannot make us adopt someone else's run."""
    script = Script(_json(200, {"items": [{"id": "other", "client_ref": "elsewhere"}]}))
    with _client(script, []) as client:
        assert client.find_by_client_ref("ref-1") is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.submit("face.jpg"), "call client.upload"),
        (lambda c: c.submit(""), "image_url must be a URL string"),
        (lambda c: c.submit("https://a/b.jpg", client_ref="it's"), "quote"),
        (lambda c: c.submit("https://a/b.jpg", client_ref="x" * 256), "at most 255"),
        (lambda c: c.submit("https://a/b.jpg", metadata={"t": object()}), "JSON-serialisable"),
        (lambda c: c.submit("https://a/b.jpg", callback_url="ftp://x"), "callback_url"),
        (lambda c: c.get(""), "run id"),
        (lambda c: c.wait("r", timeout=0), "positive"),
        (lambda c: c.list_runs(limit=0), "1 to 500"),
        (lambda c: c.cancel("r", reason="no"), "3 to 500"),
    ],
)
def test_bad_arguments_fail_before_any_request(
    call: Callable[[sf.SkinFix], Any], message: str
) -> None:
    script = Script()
    with _client(script, []) as client, pytest.raises(errors.ConfigurationError, match=message):
        call(client)
    assert script.requests == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": "skin-fix"}, "owner/slug"),
        ({"model": "runflow/../x"}, "owner/slug"),
        ({"base_url": "api.runflow.io"}, "base_url must be an http"),
        ({"max_connections": 0}, "max_connections"),
    ],
)
def test_bad_client_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.ConfigurationError, match=message):
        sf.SkinFix(FAKE_KEY, **options)


def test_bad_policies_are_refused() -> None:
    with pytest.raises(errors.ConfigurationError, match="poll intervals"):
        PollPolicy(first=0)
    with pytest.raises(errors.ConfigurationError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_model_path_encodes_each_segment() -> None:
    assert (
        model_path("bytedance/seedance/2.0/fast") == "/v1/models/bytedance/seedance/2.0/fast/runs"
    )
    assert model_path("a b/c") == "/v1/models/a%20b/c/runs"


def test_runs_query_joins_conditions_with_and() -> None:
    assert runs_query(client_ref=None, status=None, created_after=None, q=None) is None
    assert (
        runs_query(client_ref="r", status=None, created_after=None, q="x:1")
        == "client_ref.EQ:'r' AND x:1"
    )


def test_pool_limits_timeouts_and_auth_repr() -> None:
    client = sf.SkinFix(FAKE_KEY, max_connections=32, timeout=httpx.Timeout(5.0, connect=2.0))
    pool = client._http._transport._pool  # type: ignore[attr-defined]
    assert pool._max_connections == 32
    assert pool._max_keepalive_connections == 32
    assert client._http.timeout.connect == 2.0
    assert client._http.timeout.read == 5.0
    assert FAKE_KEY not in repr(client) + repr(client._http.auth) + repr(client._http.headers)
    client.close()


# --- key resolution ---------------------------------------------------------------------


def test_key_order_argument_then_environment() -> None:
    assert resolve_api_key("rf_arg", environ={"RUNFLOW_API_KEY": "rf_env"}) == "rf_arg"
    assert resolve_api_key(None, environ={"RUNFLOW_API_KEY": " rf_env "}) == "rf_env"
    assert resolve_api_key(None, environ={}) is None


def test_a_malformed_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(errors.ConfigurationError) as caught:
        resolve_api_key(FAKE_KEY + "\n")
    assert FAKE_KEY not in str(caught.value)


class SecretNotFoundError(Exception):
    pass


class NotebookAccessError(Exception):
    pass


class TimeoutException(Exception):
    pass


@pytest.fixture
def colab(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """A stand-in for ``google.colab.userdata``, put where the import finds it."""
    state = types.SimpleNamespace(value=None, raises=None, calls=0)

    def get(name: str) -> str | None:
        state.calls += 1
        assert name == "RUNFLOW_API_KEY"
        if state.raises is not None:
            raise state.raises
        return state.value  # type: ignore[no-any-return]

    userdata = types.ModuleType("google.colab.userdata")
    userdata.get = get  # type: ignore[attr-defined]
    userdata.SecretNotFoundError = SecretNotFoundError  # type: ignore[attr-defined]
    userdata.NotebookAccessError = NotebookAccessError  # type: ignore[attr-defined]
    userdata.TimeoutException = TimeoutException  # type: ignore[attr-defined]
    google = types.ModuleType("google")
    colab_module = types.ModuleType("google.colab")
    colab_module.userdata = userdata  # type: ignore[attr-defined]
    google.colab = colab_module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab_module)
    monkeypatch.setitem(sys.modules, "google.colab.userdata", userdata)
    return state


def test_colab_secret_comes_after_the_environment(colab: types.SimpleNamespace) -> None:
    colab.value = "rf_colab"
    assert resolve_api_key(None, environ={"RUNFLOW_API_KEY": "rf_env"}) == "rf_env"
    assert colab.calls == 0  # read lazily, only when needed
    assert resolve_api_key(None, environ={}) == "rf_colab"
    assert colab.calls == 1


@pytest.mark.parametrize("exc", [SecretNotFoundError, NotebookAccessError, TimeoutException])
def test_colab_secret_errors_mean_no_key(
    colab: types.SimpleNamespace, exc: type[Exception]
) -> None:
    colab.raises = exc("nope")
    assert resolve_api_key(None, environ={}) is None


def test_other_colab_errors_are_not_swallowed(colab: types.SimpleNamespace) -> None:
    colab.raises = RuntimeError("kernel broke")
    with pytest.raises(RuntimeError, match="kernel broke"):
        resolve_api_key(None, environ={})


def test_no_key_for_a_chosen_server_says_what_to_do() -> None:
    with pytest.raises(errors.ConfigurationError, match="RUNFLOW_API_KEY"):
        sf.connect(base_url="https://proxy.example", _environ={})
    with pytest.raises(errors.ConfigurationError, match="no API key"):
        sf.SkinFix(base_url="https://proxy.example")


def test_importing_the_client_reads_no_secret_and_starts_nothing() -> None:
    code = (
        "import sys, threading, skinfix_nb.client, skinfix_nb.loops, skinfix_nb.callbacks; "
        "assert 'google.colab' not in sys.modules; "
        "assert threading.active_count() == 1, threading.enumerate()"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, timeout=60)


def test_help_texts_are_written() -> None:
    for cls in (sf.SkinFix, sf.AsyncSkinFix):
        for name in (
            "submit",
            "get",
            "wait",
            "run",
            "upload",
            "list_runs",
            "iter_runs",
            "find_by_client_ref",
            "cancel",
            "health",
            "close",
        ):
            doc = getattr(cls, name).__doc__ or ""
            assert len(doc.strip()) > 20, (cls.__name__, name)
    for obj in (sf.connect, sf.connect_async, sf.Run, RetryPolicy, PollPolicy):
        assert obj.__doc__
        assert len(obj.__doc__) > 60


def test_twins_have_the_same_methods_in_the_same_order() -> None:
    def public(cls: type) -> list[str]:
        return [n for n in vars(cls) if not n.startswith("_")]

    assert public(sf.SkinFix) == [*public(sf.AsyncSkinFix), "to_async"]  # the one way across


PRESIGNED = "https://storage.example/bucket/face.png?X-Amz-Signature=TOPSECRETSIG"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


@pytest.mark.parametrize(
    "put_answer",
    [
        _json(403, {"code": "SIGNATURE_MISMATCH", "message": "expired"}),
        httpx.ConnectError("refused"),
    ],
    ids=["403", "no-answer"],
)
def test_upload_errors_never_show_the_presigned_query(put_answer: Any) -> None:
    script = Script(
        _json(201, {"asset_id": "a1", "upload_url": PRESIGNED}),
        put_answer,
    )
    with (
        _client(script, [], retry=RetryPolicy(max_attempts=1)) as client,
        pytest.raises(errors.RunflowError) as caught,
    ):
        client.upload(PNG)
    text = f"{caught.value}\n{caught.value!r}\n{caught.value.__cause__}"
    assert "TOPSECRETSIG" not in text
    assert "X-Amz" not in text
    put = script.requests[1]
    assert put.method == "PUT"
    assert "authorization" not in put.headers
    assert put.headers["content-type"] == "image/png"
    assert json.loads(script.requests[0].content) == {
        "filename": "image.png",
        "mime_type": "image/png",
        "size_bytes": len(PNG),
    }


def test_upload_refuses_a_plain_http_upload_url_off_loopback() -> None:
    script = Script(
        _json(201, {"asset_id": "a1", "upload_url": "http://storage.example/u?sig=TOPSECRETSIG"})
    )
    with _client(script, []) as client, pytest.raises(errors.ConfigurationError) as caught:
        client.upload(PNG)
    assert "must be HTTPS" in str(caught.value)
    assert "TOPSECRETSIG" not in str(caught.value)
    assert len(script.requests) == 1


def test_create_after_a_5xx_looks_up_then_posts_again() -> None:
    script = Script(
        _json(502, {"message": "bad gateway"}),
        _json(200, {"items": [], "next": None}),
        _json(201, RUN),
    )
    sleeps: list[float] = []
    with _client(script, sleeps) as client:
        run = client.submit("https://img.example/a.jpg", client_ref="ref-1")
    assert run.id == "run-1"
    assert [(r.method, r.url.path) for r in script.requests] == [
        ("POST", "/v1/models/runflow/skin-fix/runs"),
        ("GET", "/v1/runs"),
        ("POST", "/v1/models/runflow/skin-fix/runs"),
    ]
    assert sleeps == [0.5]


def test_create_that_never_connected_posts_again_without_a_lookup() -> None:
    script = Script(httpx.ConnectError("refused"), _json(201, RUN))
    with _client(script, []) as client:
        client.submit("https://img.example/a.jpg", client_ref="ref-1")
    assert [r.method for r in script.requests] == ["POST", "POST"]


@pytest.mark.parametrize(
    ("status", "content", "headers"),
    [
        (200, b"[" * 100_000, {}),
        (500, b"[" * 100_000, {}),
        (200, b"not gzip at all", {"Content-Encoding": "gzip"}),
        (200, b"<html>login page</html>", {}),
    ],
    ids=["deep-json-200", "deep-json-500", "gzip-lie", "html"],
)
def test_hostile_answers_become_documented_errors(
    status: int, content: bytes, headers: dict[str, str]
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, stream=httpx.ByteStream(content), headers=headers)

    with (
        sf.SkinFix(
            FAKE_KEY,
            base_url="https://api.example",
            transport=httpx.MockTransport(answer),
            retry=RetryPolicy(max_attempts=1),
        ) as client,
        pytest.raises(errors.RunflowError),
    ):
        client.get("run-1")
