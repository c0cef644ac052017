"""The error tree: mapping from responses, messages that help, nothing secret in them."""

from __future__ import annotations

import httpx
import pytest

from skinfix_nb import errors
from skinfix_nb.errors import APIError
from tests.conftest import FAKE_KEY


def _response(status: int, body: bytes, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, b'{"code": "BAD_REQUEST", "message": "nope"}', errors.BadRequestError),
        (401, b'{"code": "UNAUTHORIZED", "message": "bad key"}', errors.AuthenticationError),
        (402, b'{"code": "INSUFFICIENT_CREDIT", "message": "no"}', errors.InsufficientCreditError),
        (403, b'{"code": "PERMISSION_DENIED", "message": "no"}', errors.PermissionDeniedError),
        (404, b'{"code": "RUN_NOT_FOUND", "message": "gone"}', errors.NotFoundError),
        (409, b'{"code": "CONFLICT", "message": "key reused"}', errors.ConflictError),
        (
            422,
            b'{"code": "VALIDATION_ERROR", "message": "bad", "errors": []}',
            errors.ValidationError,
        ),
        (429, b'{"code": "RATE_LIMITED", "message": "slow down"}', errors.RateLimitError),
        (500, b'{"code": "INTERNAL", "message": "boom"}', errors.ServerError),
        (503, b"<html>Service Unavailable</html>", errors.ServerError),
        (418, b"{}", APIError),
    ],
)
def test_from_response_picks_the_class(status: int, body: bytes, expected: type) -> None:
    err = APIError.from_response(_response(status, body))
    assert type(err) is expected
    assert err.status_code == status
    assert isinstance(err, errors.RunflowError)


def test_validation_errors_are_listed_in_the_message() -> None:
    body = b'{"code": "VALIDATION_ERROR", "message": "invalid input", "errors": [{"loc": ["body", "input", "image_url"], "msg": "field required"}]}'
    err = APIError.from_response(_response(422, body, **{"runflow-request-id": "req-1"}))
    assert err.errors == [{"loc": ["body", "input", "image_url"], "msg": "field required"}]
    assert "body.input.image_url: field required" in str(err)
    assert "req-1" in str(err)


def test_fastapi_detail_bodies_are_understood() -> None:
    body = b'{"detail": [{"loc": ["body", "input"], "msg": "field required", "type": "missing"}]}'
    err = APIError.from_response(_response(422, body))
    assert isinstance(err, errors.ValidationError)
    assert "body.input: field required" in str(err)
    err = APIError.from_response(_response(404, b'{"detail": "Not Found"}'))
    assert err.message == "Not Found"


def test_nested_error_object_and_plain_string() -> None:
    err = APIError.from_response(
        _response(402, b'{"error": {"code": "INSUFFICIENT_CREDIT", "message": "top up"}}')
    )
    assert isinstance(err, errors.InsufficientCreditError)
    assert "Top up credit" in str(err)
    err = APIError.from_response(_response(502, b'{"error": "upstream failed"}'))
    assert err.message == "upstream failed"


def test_html_error_page_gives_a_readable_message() -> None:
    err = APIError.from_response(_response(502, b"<!doctype html><h1>Bad gateway</h1>"))
    assert "HTML page" in err.message


def test_retry_after_is_read_and_capped() -> None:
    err = APIError.from_response(
        _response(429, b'{"code": "RATE_LIMITED"}', **{"retry-after": "2"})
    )
    assert isinstance(err, errors.RateLimitError)
    assert err.retry_after == 2.0
    assert errors.parse_retry_after("99999") == 60.0
    assert errors.parse_retry_after("soon") is None
    assert errors.parse_retry_after("-1") is None
    assert errors.parse_retry_after("nan") is None


def test_messages_never_carry_a_bearer_token_and_are_short() -> None:
    body = (
        '{"message": "rejected Authorization: Bearer ' + FAKE_KEY + " " + "x" * 1000 + '"}'
    ).encode()
    err = APIError.from_response(_response(401, body))
    assert FAKE_KEY not in str(err)
    assert len(err.message) <= 300


def test_redact_url_drops_presigned_credentials() -> None:
    url = "https://bucket.example/a.jpg?X-Amz-Signature=abc&X-Amz-Credential=def"
    assert errors.redact_url(url) == "https://bucket.example/a.jpg?…"
    assert errors.redact_url("https://x.example/a.jpg") == "https://x.example/a.jpg"


def test_builtin_bases_for_misuse_errors() -> None:
    assert issubclass(errors.InvalidImageError, ValueError)
    assert issubclass(errors.ImageTooLargeError, errors.InvalidImageError)
    assert issubclass(errors.InvalidSignature, ValueError)
    assert issubclass(errors.ConfigurationError, ValueError)
    assert issubclass(errors.RunTimeoutError, TimeoutError)
    assert issubclass(errors.APITimeoutError, errors.APIConnectionError)


def test_run_timeout_error_names_the_run_and_what_to_do() -> None:
    err = errors.RunTimeoutError("run-123", elapsed=4.25)
    assert err.run_id == "run-123"
    assert "run-123" in str(err)
    assert "client.wait('run-123')" in str(err)
