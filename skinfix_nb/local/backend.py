"""The embedded server's brain: run lifecycle, image fetching, retouching and callbacks.

Everything here runs on the server's event loop, except the retouch itself, which goes
to a bounded thread pool so the HTTP side stays responsive. The HTTP handlers
(:mod:`skinfix_nb.local.api`) only validate requests and call into :class:`Backend`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote

import httpx

from skinfix_nb.errors import InvalidImageError, redact_url
from skinfix_nb.local.faults import FaultDice, Faults
from skinfix_nb.local.store import RUN_PRICE_USD, Blob, Store

__all__ = ["MAX_IMAGE_BYTES", "MODEL", "TERMINAL", "Backend", "now_iso", "uuid7"]

log = logging.getLogger("skinfix_nb.local")

MODEL = "runflow/skin-fix"
MODEL_ID = "5f1c2a0e-7d1b-4c3e-9a8f-2b6d0e4c9a11"  # Runflow's run objects carry a UUID model_id
ORG_ID = "00000000-0000-4000-8000-00000000c0de"
MAX_IMAGE_BYTES = 52_428_800  # Runflow's 50 MiB upload limit, also applied to fetched images
TERMINAL = frozenset({"succeeded", "failed", "canceled"})
EVENT_FOR_STATUS = {
    "succeeded": "run.completed",
    "failed": "run.failed",
    "canceled": "run.cancelled",
}
_FETCH_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
_CALLBACK_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def now_iso() -> str:
    """UTC now as Runflow writes it: milliseconds and a ``+00:00`` offset."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


_last_uuid7 = [0, 0]  # [milliseconds, sequence]: ids stay ordered within one millisecond
_uuid7_lock = threading.Lock()


def uuid7() -> str:
    """A time-ordered UUIDv7, the kind Runflow uses for run ids; monotonic in this process."""
    with _uuid7_lock:
        millis = time.time_ns() // 1_000_000
        if millis <= _last_uuid7[0]:
            millis, sequence = _last_uuid7[0], _last_uuid7[1] + 1
            if sequence > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                millis, sequence = millis + 1, 0
        else:
            sequence = 0
        _last_uuid7[:] = [millis, sequence]
    random_tail = int.from_bytes(os.urandom(8)) & ((1 << 62) - 1)
    value = millis << 80 | 0x7 << 76 | sequence << 64 | 0b10 << 62 | random_tail
    return str(uuid.UUID(int=value))


def uuid7_time_iso(run_id: str) -> str:
    """The creation time a UUIDv7 carries, written like :func:`now_iso`."""
    millis = uuid.UUID(run_id).int >> 80
    moment = datetime.fromtimestamp(millis // 1000, UTC)
    return moment.replace(microsecond=millis % 1000 * 1000).isoformat(timespec="milliseconds")


class RunFailure(Exception):
    """Why a run could not succeed, in Runflow's ``failure_*`` terms."""

    def __init__(self, code: str, message: str, *, stage: str = "preprocess") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.stage = stage


def _retouch_bytes(data: bytes) -> tuple[bytes, str, dict[str, float]]:
    """Decode, retouch and re-encode one image with the local engine (in the worker pool).

    The only place the server touches the engine; imported here so that starting a
    server (or importing this module) never loads OpenCV.
    """
    from skinfix_nb.images import encode_image, open_image
    from skinfix_nb.local.engine import retouch_with_info

    retouched, info = retouch_with_info(open_image(data))
    if retouched.mode == "RGBA":
        return encode_image(retouched, "PNG"), "image/png", dict(info.timing)
    return encode_image(retouched, "JPEG", quality=92), "image/jpeg", dict(info.timing)


class Backend:
    """State and behaviour shared by all requests of one server.

    Parameters
    ----------
    api_key : str or None
        The accepted bearer token; None accepts any non-empty token.
    engine : "default" or None
        ``"default"`` retouches with the local engine; None is benchmark mode: no fetch, the
        output is the input URL and processing takes exactly the configured latency.
    faults : Faults
        Initial fault settings (see :class:`~skinfix_nb.local.faults.Faults`).
    seed : int or None
        Seed of the fault dice.
    workers : int or None
        Size of the retouch thread pool (default: CPU count, at most 4).
    callback_delays : tuple of float
        Seconds to wait before each callback retry; Runflow's schedule is ``(1.0, 2.0)``.
    """

    def __init__(
        self,
        *,
        api_key: str | None,
        engine: Literal["default"] | None,
        faults: Faults,
        seed: int | None,
        workers: int,
        callback_delays: tuple[float, ...],
    ) -> None:
        self.store = Store()
        self.faults = faults
        self.dice = FaultDice(seed)
        self.api_key = api_key
        self.engine = engine
        self.callback_delays = callback_delays
        self.base_url = ""
        self._url_key = secrets.token_bytes(32)
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="skinfix-retouch"
        )
        self._slots = asyncio.Semaphore(workers)
        self._http: httpx.AsyncClient | None = None
        self._run_tasks: dict[str, asyncio.Task[None]] = {}
        self._other_tasks: set[asyncio.Task[None]] = set()
        self.store.set_credit_balance(faults.credit)
        self.store.set_credit_runs(faults.credit_runs)

    async def start(self, base_url: str) -> None:
        """Bind to the listening address; called on the server loop once the port is known."""
        self.base_url = base_url
        # trust_env=False: a proxy from the environment must never see loopback traffic
        self._http = httpx.AsyncClient(
            trust_env=False,
            follow_redirects=True,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )

    async def close(self) -> None:
        """Cancel work in flight and release the HTTP client and the worker pool."""
        tasks = [*self._run_tasks.values(), *self._other_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # signed URLs ------------------------------------------------------------------------

    def sign(self, kind: str, object_id: str) -> str:
        message = f"{kind}:{object_id}".encode()
        return hmac.new(self._url_key, message, hashlib.sha256).hexdigest()[:32]

    def signature_ok(self, kind: str, object_id: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(kind, object_id), signature)

    def file_url(self, blob_id: str, name: str) -> str:
        """A presigned-style URL of a hosted file: no bearer token needed, only the signature."""
        return f"{self.base_url}/files/{blob_id}/{quote(name)}?sig={self.sign('file', blob_id)}"

    def upload_url(self, upload_id: str) -> str:
        return f"{self.base_url}/uploads/{upload_id}?sig={self.sign('upload', upload_id)}"

    def host_blob(self, data: bytes, mime_type: str, name: str) -> str:
        """Keep ``data`` and return the URL it is served at."""
        blob_id = uuid.uuid4().hex
        self.store.add_blob(blob_id, Blob(data, mime_type, name))
        return self.file_url(blob_id, name)

    # runs -------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        image_url: str,
        callback_url: str | None,
        metadata: dict[str, Any] | None,
        client_ref: str | None,
    ) -> dict[str, Any]:
        """Store a queued run and start processing it; returns the Run object."""
        run_id = uuid7()
        run: dict[str, Any] = {
            "id": run_id,
            "org_id": ORG_ID,
            "model_id": MODEL_ID,
            "target_type": "model",
            "target_version": "local",
            "status_code": "queued",
            "source_code": "api",
            "input": {"image_url": image_url},
            "output": None,
            "context": {},
            "duration_ms": None,
            "cost": None,
            "cost_breakdown": None,
            "batch_id": None,
            "client_ref": client_ref,
            "request_id": uuid.uuid4().hex,
            "callback_url": callback_url,
            "metadata": metadata,
            "created_at": uuid7_time_iso(run_id),  # so creation order is id order
            "started_at": None,
            "completed_at": None,
            "failure_code": None,
            "failure_message": None,
            "failure_stage_code": None,
            "has_logs": False,
            "has_node_runs": False,
            "links": {"self": f"{self.base_url}/v1/runs/{run_id}"},
        }
        self.store.add_run(run)
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._process(run_id, created=loop.time()))
        self._run_tasks[run_id] = task
        task.add_done_callback(lambda _: self._run_tasks.pop(run_id, None))
        return dict(run)

    def cancel_run(self, run_id: str) -> tuple[dict[str, Any], bool]:
        """Cancel a run; returns it and whether this call changed its state."""
        run = self.store.get_run(run_id)
        if run is None:
            raise KeyError(run_id)
        if run["status_code"] in TERMINAL:
            return run, False
        task = self._run_tasks.pop(run_id, None)
        if task is not None:
            task.cancel()
        return self._finish(run_id, "canceled"), True

    async def _process(self, run_id: str, *, created: float) -> None:
        try:
            output = await self._execute(run_id, created=created)
        except RunFailure as failure:
            self._finish(
                run_id,
                "failed",
                failure_code=failure.code,
                failure_message=failure.message,
                failure_stage_code=failure.stage,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in the engine must fail the run, not the server
            log.exception("run %s crashed", run_id)
            self._finish(
                run_id,
                "failed",
                failure_code="INTERNAL_ERROR",
                failure_message=f"the local engine crashed: {type(exc).__name__}: {exc}",
                failure_stage_code="inference",
            )
        else:
            if self.dice.hits(self.faults.failure_rate):
                self._finish(
                    run_id,
                    "failed",
                    failure_code="PROVIDER_ERROR",
                    failure_message="simulated provider failure (failure_rate fault)",
                    failure_stage_code="inference",
                )
            else:
                self._finish(run_id, "succeeded", output=output)

    async def _execute(self, run_id: str, *, created: float) -> dict[str, Any]:
        """queued -> dispatching -> running; the output object of a successful run.

        In benchmark mode the run ends ``latency`` after ``created`` (the loop time it was
        stored at), not after its task first runs: a burst of POSTs handled back to back
        would otherwise make the first runs of the burst last longer than the latency.
        """
        run = self.store.get_run(run_id)
        assert run is not None
        image_url: str = run["input"]["image_url"]
        latency = self.dice.latency(self.faults.latency)
        if self.engine is None:
            self.store.update_run(run_id, status_code="dispatching", started_at=now_iso())
            self.store.update_run(run_id, status_code="running")
            loop = asyncio.get_running_loop()
            await asyncio.sleep(max(0.0, created + latency - loop.time()))
            outputs = [{"url": image_url, "type": "image"}]
            timing = {"inference_ms": round(latency * 1000, 3)}
            return {"outputs": outputs, "seed": None, "timing": timing, "nsfw_detected": False}
        async with self._slot():
            self.store.update_run(run_id, status_code="dispatching", started_at=now_iso())
            started = time.perf_counter()
            data = await self._fetch(image_url)
            fetched = time.perf_counter()
            self.store.update_run(run_id, status_code="running")
            loop = asyncio.get_running_loop()
            try:
                image, mime_type, stages = await loop.run_in_executor(
                    self._executor, _retouch_bytes, data
                )
            except InvalidImageError as exc:
                raise RunFailure(
                    "INPUT_VALIDATION_FAILED", f"image_url is not a usable image: {exc}"
                ) from None
            retouched = time.perf_counter()
        await asyncio.sleep(latency)
        extension = "png" if mime_type == "image/png" else "jpg"
        url = self.host_blob(image, mime_type, f"{run_id}.{extension}")
        timing = {
            "fetch_ms": round((fetched - started) * 1000, 3),
            "inference_ms": round((retouched - fetched) * 1000, 3),
            **{f"engine_{stage}_ms": round(ms, 3) for stage, ms in stages.items()},
        }
        return {
            "outputs": [{"url": url, "type": "image"}],
            "seed": None,
            "timing": timing,
            "nsfw_detected": False,
        }

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        async with self._slots:
            yield

    async def _fetch(self, url: str) -> bytes:
        """Download an input image, as Runflow does, within the 50 MiB limit."""
        assert self._http is not None
        shown = redact_url(url)
        try:
            async with self._http.stream("GET", url, timeout=_FETCH_TIMEOUT) as response:
                if response.status_code != 200:
                    raise RunFailure(
                        "INPUT_FETCH_FAILED",
                        f"could not fetch image_url {shown}: HTTP {response.status_code}; "
                        "check that the URL is reachable and not expired",
                    )
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_IMAGE_BYTES:
                        raise RunFailure(
                            "INPUT_TOO_LARGE",
                            f"image_url {shown} is larger than 50 MiB; send a smaller image",
                        )
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise RunFailure(
                "INPUT_FETCH_FAILED",
                f"could not fetch image_url {shown}: {type(exc).__name__} "
                f"({redact_url(str(exc)) or 'no detail'})",
            ) from None
        return b"".join(chunks)

    def _finish(self, run_id: str, status: str, **fields: Any) -> dict[str, Any]:
        """Move a run to a terminal state (once), bill or refund it, and send its callback."""
        run = self.store.get_run(run_id)
        assert run is not None
        if run["status_code"] in TERMINAL:
            return run
        completed = now_iso()
        started = run["started_at"] or run["created_at"]
        duration = datetime.fromisoformat(completed) - datetime.fromisoformat(started)
        cost = RUN_PRICE_USD if status == "succeeded" else Decimal(0)
        run = self.store.update_run(
            run_id,
            status_code=status,
            completed_at=completed,
            duration_ms=int(duration.total_seconds() * 1000),
            cost=str(cost),
            **fields,
        )
        if status != "succeeded":
            self.store.refund_credit(RUN_PRICE_USD)
        if run["callback_url"]:
            self._spawn(self._deliver_callback(run))
        return run

    # callbacks --------------------------------------------------------------------------

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._other_tasks.add(task)
        task.add_done_callback(self._other_tasks.discard)

    async def _deliver_callback(self, run: dict[str, Any]) -> None:
        """POST the terminal event: up to 3 attempts, retrying on 5xx and network errors."""
        assert self._http is not None
        status = run["status_code"]
        if status == "succeeded":
            output = run["output"]
        elif status == "failed":
            output = {"code": run["failure_code"], "message": run["failure_message"]}
        else:
            output = None
        payload = {
            "event": EVENT_FOR_STATUS[status],
            "run_id": run["id"],
            "status": status,
            "output": output,
            "duration_ms": run["duration_ms"],
            "created_at": run["created_at"],
            "completed_at": run["completed_at"],
            "metadata": run["metadata"],
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Runflow-Request-Id": uuid.uuid4().hex}
        secret = self.store.current_secret()
        if secret is not None:
            digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers["Runflow-Signature"] = digest
        delays = [0.0, *self.callback_delays]
        for attempt, delay in enumerate(delays, start=1):
            await asyncio.sleep(delay)
            try:
                response = await self._http.post(
                    run["callback_url"], content=body, headers=headers, timeout=_CALLBACK_TIMEOUT
                )
            except httpx.HTTPError as exc:
                log.info("callback for %s, attempt %d: %s", run["id"], attempt, type(exc).__name__)
                continue
            if response.status_code < 500:
                return  # delivered (2xx) or refused by the receiver (4xx): no retry either way
        log.warning("callback for run %s not delivered after %d attempts", run["id"], len(delays))
