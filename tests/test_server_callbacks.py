"""Callback delivery of the embedded server, against a real receiver on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

import httpx
import pytest

from skinfix_nb.local import LocalServer, serve
from tests.conftest import FAKE_KEY

CREATE = "/v1/models/runflow/skin-fix/runs"


class Delivery(NamedTuple):
    at: float
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A loopback HTTP server that answers callbacks with scripted statuses and keeps them.

    Status 0 means: close the connection without answering.
    """

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.deliveries: list[Delivery] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.arrived:
                    index = len(receiver.deliveries)
                    receiver.deliveries.append(
                        Delivery(time.monotonic(), dict(self.headers.items()), body)
                    )
                    receiver.arrived.notify_all()
                status = receiver.statuses[min(index, len(receiver.statuses) - 1)]
                if status == 0:  # hang up without an answer: a network error for the sender
                    self.close_connection = True
                    return
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Keep test output quiet."""

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/hook"
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def wait_for(self, count: int, timeout: float = 10) -> list[Delivery]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.deliveries) >= count, timeout=timeout)
            return list(self.deliveries)

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    receivers: list[Receiver] = []

    def make(statuses: list[int]) -> Receiver:
        receivers.append(Receiver(statuses))
        return receivers[-1]

    yield make
    for receiver in receivers:
        receiver.close()


@pytest.fixture
def bench() -> Iterator[LocalServer]:
    with serve(port=0, api_key=FAKE_KEY, engine=None) as srv:
        yield srv


def api(server: LocalServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {FAKE_KEY}"})


def new_secret(client: httpx.Client) -> str:
    response = client.post("/v1/callback-secrets", json={"label": "tests"})
    assert response.status_code == 201
    return str(response.json()["plain_secret"])


def test_retries_after_two_500s_with_1s_then_2s_backoff_signed_byte_for_byte(
    bench: LocalServer, receiver_factory: Any
) -> None:
    receiver = receiver_factory([500, 500, 200])
    with api(bench) as client:
        secret = new_secret(client)
        body = {
            "input": {"image_url": "https://example.com/face.jpg"},
            "callback_url": receiver.url,
            "metadata": {"row": 3, "note": "naïve ✓"},
        }
        run = client.post(CREATE, json=body).json()
        deliveries = receiver.wait_for(3)
        time.sleep(0.3)  # a fourth attempt would be a bug
        final = client.get(f"/v1/runs/{run['id']}").json()

    assert len(receiver.deliveries) == 3
    first, second, third = deliveries
    assert 0.9 <= second.at - first.at <= 1.6
    assert 1.9 <= third.at - second.at <= 2.6
    assert first.body == second.body == third.body  # frozen at delivery time

    for delivery in deliveries:
        expected = hmac.new(secret.encode(), delivery.body, hashlib.sha256).hexdigest()
        signature = delivery.headers["Runflow-Signature"]
        assert signature == expected
        assert signature == signature.lower()
        assert len(signature) == 64
        assert delivery.headers["Runflow-Request-Id"]
        assert delivery.headers["Content-Type"] == "application/json"

    event = json.loads(third.body)
    assert event == {
        "event": "run.completed",
        "run_id": run["id"],
        "status": "succeeded",
        "output": final["output"],
        "duration_ms": final["duration_ms"],
        "created_at": final["created_at"],
        "completed_at": final["completed_at"],
        "metadata": {"row": 3, "note": "naïve ✓"},
    }
    assert event["created_at"].endswith("+00:00")
    assert event["completed_at"].endswith("+00:00")


def test_a_400_is_not_retried(bench: LocalServer, receiver_factory: Any) -> None:
    receiver = receiver_factory([400])
    with api(bench) as client:
        body = {"input": {"image_url": "https://e.com/a.jpg"}, "callback_url": receiver.url}
        assert client.post(CREATE, json=body).status_code == 201
        [only] = receiver.wait_for(1)
        time.sleep(1.4)  # past the 1 s retry point
    assert len(receiver.deliveries) == 1
    assert "Runflow-Signature" not in only.headers  # no secret registered yet
    assert only.headers["Runflow-Request-Id"]


def test_network_errors_are_retried(receiver_factory: Any) -> None:
    receiver = receiver_factory([0, 0, 200])
    with (
        serve(port=0, api_key=FAKE_KEY, engine=None, callback_delays=(0.05, 0.05)) as srv,
        api(srv) as client,
    ):
        body = {"input": {"image_url": "https://e.com/a.jpg"}, "callback_url": receiver.url}
        client.post(CREATE, json=body)
        deliveries = receiver.wait_for(3)
        time.sleep(0.2)
    assert len(receiver.deliveries) == 3
    assert deliveries[0].body == deliveries[2].body


def test_delivery_stops_after_three_attempts(receiver_factory: Any) -> None:
    receiver = receiver_factory([503])
    with (
        serve(port=0, api_key=FAKE_KEY, engine=None, callback_delays=(0.05, 0.05)) as srv,
        api(srv) as client,
    ):
        body = {"input": {"image_url": "https://e.com/a.jpg"}, "callback_url": receiver.url}
        client.post(CREATE, json=body)
        receiver.wait_for(3)
        time.sleep(0.3)
        assert client.get("/v1/health").status_code == 200
    assert len(receiver.deliveries) == 3


def test_failed_and_canceled_runs_call_back_with_their_events(receiver_factory: Any) -> None:
    receiver = receiver_factory([200])
    with serve(port=0, api_key=FAKE_KEY, engine=None, failure_rate=1.0) as srv, api(srv) as client:
        secret = new_secret(client)
        body = {"input": {"image_url": "https://e.com/a.jpg"}, "callback_url": receiver.url}
        failed_id = client.post(CREATE, json=body).json()["id"]
        [failed] = receiver.wait_for(1)
        srv.set_faults(latency=30.0)
        canceled_id = client.post(CREATE, json=body).json()["id"]
        assert client.post(f"/v1/admin/runs/{canceled_id}/cancellation").status_code == 201
        canceled = receiver.wait_for(2)[1]
        assert client.post(f"/v1/admin/runs/{canceled_id}/cancellation").status_code == 200
        time.sleep(0.2)
    assert len(receiver.deliveries) == 2  # an already-terminal cancel does not re-fire

    failed_event = json.loads(failed.body)
    assert failed_event["event"] == "run.failed"
    assert failed_event["run_id"] == failed_id
    assert failed_event["status"] == "failed"
    assert failed_event["output"] == {
        "code": "PROVIDER_ERROR",
        "message": "simulated provider failure (failure_rate fault)",
    }
    canceled_event = json.loads(canceled.body)
    assert canceled_event["event"] == "run.cancelled"
    assert canceled_event["status"] == "canceled"
    assert canceled_event["output"] is None
    assert canceled_event["metadata"] is None
    for delivery in (failed, canceled):
        digest = hmac.new(secret.encode(), delivery.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(delivery.headers["Runflow-Signature"], digest)


def test_the_newest_secret_signs(bench: LocalServer, receiver_factory: Any) -> None:
    receiver = receiver_factory([200])
    with api(bench) as client:
        old, new = new_secret(client), new_secret(client)
        body = {"input": {"image_url": "https://e.com/a.jpg"}, "callback_url": receiver.url}
        client.post(CREATE, json=body)
        [delivery] = receiver.wait_for(1)
    signature = delivery.headers["Runflow-Signature"]
    assert signature == hmac.new(new.encode(), delivery.body, hashlib.sha256).hexdigest()
    assert signature != hmac.new(old.encode(), delivery.body, hashlib.sha256).hexdigest()
