"""Callback signatures, parsing, and the receiver fed by the embedded server over real HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

import skinfix_nb as sf
from skinfix_nb import errors
from skinfix_nb.callbacks import CallbackEvent, CallbackReceiver, parse_callback, verify_signature
from skinfix_nb.local import LocalServer
from tests.conftest import FAKE_KEY

SAMPLES = Path(__file__).resolve().parents[1] / "skinfix_nb" / "samples"
BODY = b'{"event":"run.completed","run_id":"r1"}'
# HMAC-SHA256(key=b"whsec_test", msg=BODY), computed independently once
SIGNATURE = "0635f3a821cc47d7bd318bf3b6dc4be9921d6328b30b3f0e1b619b57caabba64"


def _sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _event(run_id: str = "r1", status: str = "succeeded", **extra: Any) -> bytes:
    payload = {
        "event": "run.completed",
        "run_id": run_id,
        "status": status,
        "output": {"outputs": [{"url": "https://cdn.example/out.webp", "type": "image"}]},
        "duration_ms": 900,
        "created_at": "2026-05-06T10:00:00.000+00:00",
        "completed_at": "2026-05-06T10:00:01.000+00:00",
        "metadata": {"row": 1},
        **extra,
    }
    return json.dumps(payload).encode()


# --- verify_signature ---------------------------------------------------------------------


def test_a_known_signature_verifies() -> None:
    assert verify_signature(BODY, SIGNATURE, "whsec_test")
    assert verify_signature(BODY, SIGNATURE.upper(), "whsec_test")
    assert verify_signature(bytearray(BODY), f"  {SIGNATURE}\n", "whsec_test")


@pytest.mark.parametrize(
    ("body", "signature", "secret"),
    [
        (BODY.replace(b"r1", b"r2"), SIGNATURE, "whsec_test"),  # one byte changed
        (BODY + b" ", SIGNATURE, "whsec_test"),  # re-serialised
        (BODY, SIGNATURE, "whsec_other"),
        (BODY, SIGNATURE[:-1], "whsec_test"),
        (BODY, "sha256=" + SIGNATURE, "whsec_test"),
        (BODY, None, "whsec_test"),
        (BODY, "", "whsec_test"),
    ],
)
def test_anything_else_does_not(body: bytes, signature: str | None, secret: str) -> None:
    assert not verify_signature(body, signature, secret)


def test_any_of_several_secrets_verifies_during_rotation() -> None:
    assert verify_signature(BODY, SIGNATURE, ["whsec_new", "whsec_test"])
    assert not verify_signature(BODY, SIGNATURE, ["whsec_new", "whsec_newer"])


def test_misuse_is_an_error_not_false() -> None:
    with pytest.raises(TypeError, match="raw request bytes"):
        verify_signature(BODY.decode(), SIGNATURE, "whsec_test")  # type: ignore[arg-type]
    with pytest.raises(errors.ConfigurationError, match="secret"):
        verify_signature(BODY, SIGNATURE, [])
    with pytest.raises(errors.ConfigurationError, match="secret"):
        verify_signature(BODY, SIGNATURE, "")


# --- parse_callback -----------------------------------------------------------------------


def test_parse_a_signed_event() -> None:
    body = _event(status="cancelled", event="run.cancelled")
    headers = {"runflow-signature": _sign(body, "whsec_s"), "RUNFLOW-REQUEST-ID": "req-9"}
    event = parse_callback(body, headers, secret="whsec_s")
    assert isinstance(event, CallbackEvent)
    assert (event.event, event.run_id, event.status) == ("run.cancelled", "r1", "canceled")
    assert event.request_id == "req-9"
    assert event.duration_ms == 900
    assert event.metadata == {"row": 1}
    assert event.completed_at is not None
    assert event.completed_at.isoformat() == "2026-05-06T10:00:01+00:00"
    assert event.run.output_url == "https://cdn.example/out.webp"
    assert event.run.is_terminal
    assert repr(event) == "CallbackEvent('run.cancelled', run_id='r1', status='canceled')"


def test_failed_event_carries_its_error_on_the_run() -> None:
    body = _event(status="failed", output={"code": "PROVIDER_ERROR", "message": "down"})
    event = parse_callback(body, {})
    assert event.run.failure_code == "PROVIDER_ERROR"
    assert event.run.output_url is None


def test_a_missing_or_wrong_signature_raises_invalid_signature() -> None:
    body = _event()
    with pytest.raises(errors.InvalidSignature, match="callback secret exists"):
        parse_callback(body, {}, secret="whsec_s")
    with pytest.raises(errors.InvalidSignature, match="does not match"):
        parse_callback(body, {"Runflow-Signature": _sign(body, "whsec_x")}, secret="whsec_s")


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"not json", "not JSON"), (b"[1, 2]", "JSON object"), (b'{"event": "x"}', "no run_id")],
)
def test_bodies_that_are_not_run_events(body: bytes, message: str) -> None:
    with pytest.raises(errors.InvalidCallback, match=message):
        parse_callback(body, {})


# --- the receiver, fed by the embedded server --------------------------------------------


def _new_secret(server: LocalServer) -> str:
    response = httpx.post(
        f"{server.url}/v1/callback-secrets",
        json={"label": "tests"},
        headers={"Authorization": f"Bearer {FAKE_KEY}"},
    )
    response.raise_for_status()
    secret: str = response.json()["plain_secret"]
    return secret


def test_receiver_gets_the_servers_signed_callback(fresh_server: LocalServer) -> None:
    secret = _new_secret(fresh_server)
    with (
        CallbackReceiver(secret=secret) as receiver,
        sf.SkinFix(FAKE_KEY, base_url=fresh_server.url) as client,
    ):
        url = fresh_server.serve_file(SAMPLES / "camera.png")
        run = client.submit(url, callback_url=receiver.url, metadata={"batch": "b1"})
        event = receiver.events.get(timeout=60)
    assert event.run_id == run.id
    assert event.event == "run.completed"
    assert event.status == "succeeded"
    assert event.metadata == {"batch": "b1"}
    assert event.request_id
    assert event.run.output_url
    assert httpx.get(event.run.output_url).status_code == 200
    assert receiver.events.empty()


def test_receiver_refuses_bad_signatures_and_drops_duplicates() -> None:
    body = _event("dup-1")
    good = {"Runflow-Signature": _sign(body, "whsec_r"), "Content-Type": "application/json"}
    with CallbackReceiver(secret=["whsec_old", "whsec_r"]) as receiver:
        forged = httpx.post(receiver.url, content=body, headers={"Runflow-Signature": "0" * 64})
        unsigned = httpx.post(receiver.url, content=body)
        first = httpx.post(receiver.url, content=body, headers=good)
        again = httpx.post(receiver.url, content=body, headers=good)
        garbage = httpx.post(
            receiver.url, content=b"[]", headers={"Runflow-Signature": _sign(b"[]", "whsec_r")}
        )
        assert receiver.events.get(timeout=5).run_id == "dup-1"
        assert receiver.events.empty()
        assert "received=1" in repr(receiver)
    assert (forged.status_code, forged.json()["code"]) == (401, "INVALID_SIGNATURE")
    assert unsigned.status_code == 401
    assert first.status_code == 200
    assert (again.status_code, again.json()["code"]) == (200, "DUPLICATE")
    assert garbage.status_code == 400


def test_a_failing_handler_gets_the_delivery_retried() -> None:
    calls: list[str] = []
    done = threading.Event()

    def handler(event: CallbackEvent) -> None:
        calls.append(event.run_id)
        if len(calls) == 1:
            raise RuntimeError("database down")
        done.set()

    body = _event("h-1")
    with CallbackReceiver(secret=None, handler=handler) as receiver:
        failed = httpx.post(receiver.url, content=body)
        retried = httpx.post(receiver.url, content=body)
        duplicate = httpx.post(receiver.url, content=body)
        assert done.wait(5)
    assert [failed.status_code, retried.status_code, duplicate.status_code] == [500, 200, 200]
    assert calls == ["h-1", "h-1"]
    assert receiver.events.empty()  # with a handler, nothing is queued


def test_receiver_url_needs_a_started_receiver_and_stop_is_idempotent() -> None:
    receiver = CallbackReceiver(secret="whsec_x", path="hooks")
    with pytest.raises(errors.ConfigurationError, match="not running"):
        _ = receiver.url
    receiver.start()
    assert receiver.url.startswith("http://127.0.0.1:")
    assert receiver.url.endswith("/hooks")
    receiver.stop()
    receiver.stop()
    assert repr(receiver) == "CallbackReceiver(stopped, received=0)"


def test_a_busy_port_is_a_clear_error() -> None:
    with CallbackReceiver(secret=None) as first:
        port = int(first.url.split(":")[2].split("/")[0])
        with pytest.raises(errors.ConfigurationError, match="cannot listen"):
            CallbackReceiver(secret=None, port=port).start()
