"""Forged callbacks and hostile images, with the measurements the proof reports.

``callback_cases`` builds forged, truncated, re-ordered and replayed deliveries from real
signed events; ``measure_callbacks`` runs them through ``verify_signature``,
``parse_callback`` and a live ``CallbackReceiver`` over HTTP. ``image_cases`` builds
decompression bombs, truncated and empty files, non-images and extreme sizes;
``measure_images`` sends each through ``sf.compare``, the QA metrics and the engine.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import random
import struct
import threading
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from PIL import Image

import skinfix_nb as sf
from skinfix_nb.callbacks import CallbackEvent, CallbackReceiver, parse_callback
from skinfix_nb.errors import InvalidCallback, InvalidImageError, InvalidSignature, RunflowError
from skinfix_nb.local import LocalServer

__all__ = [
    "Delivery",
    "callback_cases",
    "image_cases",
    "measure_callbacks",
    "measure_images",
    "measure_images_over_http",
]

SECRET = "whsec_reliability_0123456789"
OTHER_SECRET = "whsec_someone_else_987654321"


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _event(run_id: str, status: str = "succeeded") -> bytes:
    payload = {
        "event": "run.completed" if status == "succeeded" else "run.failed",
        "run_id": run_id,
        "status": status,
        "output": {"outputs": [{"url": f"https://cdn.example.test/{run_id}.png"}]},
        "duration_ms": 1200,
        "created_at": "2026-01-01T00:00:00Z",
        "completed_at": "2026-01-01T00:00:01Z",
    }
    return json.dumps(payload, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Delivery:
    """One callback POST: its body, signature header, and whether it is genuine."""

    kind: str
    body: bytes
    signature: str | None
    run_id: str

    @property
    def genuine(self) -> bool:
        return self.kind in {"genuine", "replayed", "replayed-upper-hex"}


def callback_cases(genuine_runs: int = 20, *, seed: int = 0) -> list[Delivery]:
    """Genuine deliveries plus forged, truncated, re-ordered and replayed ones (>= 200)."""
    rng = random.Random(seed)
    cases: list[Delivery] = []
    for n in range(genuine_runs):
        run_id = f"run_{n:04d}"
        body = _event(run_id)
        good = sign(body)
        cases.append(Delivery("genuine", body, good, run_id))
        cases.append(Delivery("replayed", body, good, run_id))
        cases.append(Delivery("replayed-upper-hex", body, good.upper(), run_id))
        forged_body = _event(run_id, "failed")
        cases += [
            Delivery("forged:random-hex", body, f"{rng.getrandbits(256):064x}", run_id),
            Delivery("forged:other-secret", body, sign(body, OTHER_SECRET), run_id),
            Delivery("forged:other-body", forged_body, good, run_id),
            Delivery("forged:no-signature", body, None, run_id),
            Delivery("forged:empty", body, "", run_id),
            Delivery("forged:sha256-prefixed-wrong", body, "sha256=" + "0" * 64, run_id),
            Delivery("forged:non-hex", body, "z" * 64, run_id),
            Delivery("forged:unicode", body, "é" * 64, run_id),
            Delivery("forged:secret-as-signature", body, SECRET, run_id),
            Delivery("forged:signed-empty-body", body, sign(b""), run_id),
            Delivery("truncated:signature", body, good[:-1], run_id),
            Delivery("truncated:signature-half", body, good[:32], run_id),
            Delivery("truncated:body", body[:-7], good, run_id),
            Delivery("malformed:signed-truncated-body", body[:-7], sign(body[:-7]), run_id),
            Delivery("extended:signature", body, good + "0", run_id),
            Delivery("extended:body", body + b" ", good, run_id),
            Delivery("reordered:signature", body, good[32:] + good[:32], run_id),
            Delivery("reordered:keys", _reordered(body), good, run_id),
            Delivery("reordered:spacing", json.dumps(json.loads(body)).encode(), good, run_id),
        ]  # fmt: skip
    return cases


def _reordered(body: bytes) -> bytes:
    payload = json.loads(body)
    return json.dumps(dict(reversed(list(payload.items()))), separators=(",", ":")).encode()


def measure_callbacks(cases: list[Delivery]) -> dict[str, Any]:
    """Forged deliveries accepted by each layer, and duplicates the handler saw.

    The receiver gets every forged delivery first, then the genuine ones, then the
    replays, so a forged event it accepted could not hide behind de-duplication.
    """
    forged = [case for case in cases if not case.genuine]
    # A correctly signed but truncated body passes the HMAC by design; parsing refuses it.
    hmac_forged = [case for case in forged if not case.kind.startswith("malformed:")]
    verified = sum(
        1 for case in hmac_forged if sf.verify_signature(case.body, case.signature, SECRET)
    )
    parsed = 0
    unexpected: Counter[str] = Counter()
    for case in forged:
        headers = {} if case.signature is None else {"Runflow-Signature": case.signature}
        try:
            parse_callback(case.body, headers, SECRET)
        except (InvalidSignature, InvalidCallback):
            continue
        except Exception as exc:  # counted: anything else escaped
            unexpected[type(exc).__name__] += 1
            continue
        parsed += 1
    delivered: list[CallbackEvent] = []
    lock = threading.Lock()

    def handler(event: CallbackEvent) -> None:
        with lock:
            delivered.append(event)

    forged_statuses: Counter[int] = Counter()
    rank = {"genuine": 1}
    order = sorted(cases, key=lambda case: 0 if not case.genuine else rank.get(case.kind, 2))
    with CallbackReceiver(secret=SECRET, handler=handler) as receiver, httpx.Client() as http:
        for case in order:
            headers: dict[str, bytes] = {"Content-Type": b"application/json"}
            if case.signature is not None:
                headers["Runflow-Signature"] = case.signature.encode("utf-8")
            try:
                response = http.post(receiver.url, content=case.body, headers=headers)
            except httpx.HTTPError as exc:
                unexpected[type(exc).__name__] += 1
                continue
            if not case.genuine:
                forged_statuses[response.status_code] += 1
    genuine = {case.run_id: json.loads(case.body) for case in cases if case.kind == "genuine"}
    per_run = Counter(event.run_id for event in delivered)
    return {
        "cases": len(cases),
        "forged_cases": len(forged),
        "forged_verified": verified,
        "forged_parsed": parsed,
        "forged_accepted_by_receiver": sum(
            n for status, n in forged_statuses.items() if 200 <= status < 300
        ),
        "forged_delivered": sum(
            1 for event in delivered if dict(event.raw) != genuine.get(event.run_id)
        ),
        "handler_calls": len(delivered),
        "genuine_runs": len(genuine),
        "duplicates_delivered": sum(n - 1 for n in per_run.values()),
        "forged_receiver_statuses": dict(forged_statuses),
        "unexpected_exceptions": dict(unexpected),
    }


# -- images -------------------------------------------------------------------------------


def _encoded(width: int, height: int, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (201, 152, 121)).save(buffer, fmt)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int, *, lie: bool) -> bytes:
    """A greyscale PNG of ``width`` x ``height`` zeros: a few hundred KB that inflate to GBs.

    ``lie`` writes only one row of pixel data under the big header (a header bomb).
    """
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    packer = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    pixels = packer.compress(row) if lie else b""
    if not lie:
        pixels = b"".join(packer.compress(row) for _ in range(height))
    pixels += packer.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )


def image_cases(*, near_limit: bool = False) -> dict[str, bytes]:
    """Hostile and extreme image files, by name.

    ``near_limit`` adds a real 9,999 x 9,999 image (just under the pixel limit): it must be
    processed, which takes seconds, so only the benchmark asks for it.
    """
    jpeg, png = _encoded(320, 240, "JPEG"), _encoded(320, 240, "PNG")
    cases = {
        "bomb: 12000x12000 PNG of zeros": png_bomb(12_000, 12_000, lie=False),
        "bomb: 60000x60000 PNG header": png_bomb(60_000, 60_000, lie=True),
        "truncated JPEG (half)": jpeg[: len(jpeg) // 2],
        "truncated JPEG (header only)": jpeg[:200],
        "truncated PNG (half)": png[: len(png) // 2],
        "truncated PNG (signature only)": png[:8],
        "zero bytes": b"",
        "HTML error page": b"<!DOCTYPE html><html><body><h1>403 Forbidden</h1></body></html>",
        "JSON": b'{"error": "not found"}',
        "PDF": b"%PDF-1.7\n1 0 obj <<>> endobj\n",
        "ZIP": b"PK\x03\x04" + b"\x00" * 40,
        "SVG": b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>",
        "random bytes": random.Random(1).randbytes(4096),
        "1x1 PNG": _encoded(1, 1, "PNG"),
        "1x1 JPEG": _encoded(1, 1, "JPEG"),
        "20000x1 PNG": _encoded(20_000, 1, "PNG"),
        "20000x8 JPEG": _encoded(20_000, 8, "JPEG"),
    }
    if near_limit:
        cases["9999x9999 PNG of zeros (just under the limit)"] = png_bomb(9_999, 9_999, lie=False)
    return cases


def _entry_points(reference: bytes) -> dict[str, Callable[[bytes], object]]:
    from skinfix_nb.quality import pair_metrics

    return {
        "compare": lambda data: sf.compare(data, reference)._repr_html_(),
        "qa": lambda data: pair_metrics(data, reference),
        "engine": sf.retouch,
    }


def measure_images(cases: dict[str, bytes]) -> dict[str, Any]:
    """Each case through each entry point: a result, a clear InvalidImageError, or a crash."""
    reference = _encoded(64, 64, "JPEG")
    outcomes: dict[str, dict[str, str]] = {}
    crashes = 0
    unclear = 0
    for name, data in cases.items():
        outcomes[name] = {}
        for where, call in _entry_points(reference).items():
            try:
                call(data)
            except InvalidImageError as exc:
                message = str(exc)
                if len(message) < 20:
                    unclear += 1
                outcomes[name][where] = f"{type(exc).__name__}: {message[:90]}"
            except Exception as exc:  # a crash is what is measured
                crashes += 1
                outcomes[name][where] = f"CRASH {type(exc).__name__}: {str(exc)[:90]}"
            else:
                outcomes[name][where] = "ok"
    return {
        "cases": len(cases),
        "calls": len(cases) * 3,
        "crashes": crashes,
        "unclear_errors": unclear,
        "outcomes": outcomes,
    }


def measure_images_over_http(server: LocalServer, cases: dict[str, bytes]) -> dict[str, Any]:
    """Each case hosted on ``server`` and run through its engine: a failed run that says why.

    ``server`` must run the real engine. Valid images must succeed; the rest must end
    ``failed`` with a failure message, and the server must still answer afterwards.
    """
    outcomes: dict[str, str] = {}
    unclear = 0
    with sf.connect(api_key=server.api_key, base_url=server.url) as client:
        for name, data in cases.items():
            url = server.serve_file(data, name=f"case-{len(outcomes)}.bin")
            try:
                run = client.wait(client.submit(url), timeout=120)
            except RunflowError as exc:
                outcomes[name] = f"{type(exc).__name__}: {str(exc)[:90]}"
                continue
            message = run.failure_message or ""
            if run.status != "succeeded" and len(message) < 20:
                unclear += 1
            outcomes[name] = f"{run.status}: {message[:90]}" if message else run.status
        healthy = bool(client.health())
    return {"cases": len(cases), "unclear": unclear, "healthy": healthy, "outcomes": outcomes}
