"""Run parsing: lenient about absent fields, both status spellings, Decimal cost, the HTML card."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from skinfix_nb import _run_html
from skinfix_nb.models import MAX_DURATION_MS, TERMINAL_STATUSES, Run, RunPage, normalize_status

if TYPE_CHECKING:
    from skinfix_nb.local import LocalServer

SAMPLES = Path(__file__).resolve().parents[1] / "skinfix_nb" / "samples"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("canceled", "canceled"),
        ("cancelled", "canceled"),
        ("CANCELLED", "canceled"),
        ("errored", "failed"),
        ("failed", "failed"),
        ("partial_succeeded", "partial_succeeded"),
        ("running", "running"),
        ("something_new", "something_new"),
        (None, "unknown"),
        (7, "unknown"),
    ],
)
def test_normalize_status_accepts_every_spelling(given: object, expected: str) -> None:
    assert normalize_status(given) == expected


@pytest.mark.parametrize("spelling", ["canceled", "cancelled"])
def test_both_cancel_spellings_are_terminal_and_failed(spelling: str) -> None:
    run = Run.from_json({"id": "r1", "status_code": spelling})
    assert run.status == "canceled"
    assert run.is_terminal
    assert not run.succeeded


def test_errored_is_failed_and_partial_succeeded_is_terminal_success() -> None:
    assert Run.from_json({"id": "a", "status": "errored"}).status == "failed"
    partial = Run.from_json({"id": "b", "status_code": "partial_succeeded"})
    assert partial.is_terminal
    assert partial.succeeded
    assert {"succeeded", "failed", "canceled", "partial_succeeded"} == TERMINAL_STATUSES


def test_a_full_run_is_read_field_by_field() -> None:
    run = Run.from_json(
        {
            "id": "0190-abc",
            "status_code": "succeeded",
            "model": "runflow/skin-fix",
            "input": {"image_url": "https://cdn.example/in.jpg"},
            "output": {
                "outputs": [
                    {"url": "https://s3.example/out.webp?X-Amz-Signature=abc", "type": "image"}
                ],
                "seed": 42,
                "timing": {"inference_ms": 900},
                "nsfw_detected": False,
            },
            "cost": "0.12",
            "duration_ms": 1234,
            "metadata": {"row": 3},
            "client_ref": "ref-1",
            "callback_url": "https://hooks.example/cb",
            "created_at": "2026-05-06T10:00:00.000+00:00",
            "started_at": "2026-05-06T10:00:01Z",
            "completed_at": "2026-05-06T10:00:02.1234567Z",
            "brand_new_field": {"kept": True},
        }
    )
    assert run.cost == Decimal("0.12")
    assert isinstance(run.cost, Decimal)
    assert run.output_url == "https://s3.example/out.webp?X-Amz-Signature=abc"
    assert run.image_url == "https://cdn.example/in.jpg"
    assert (run.seed, run.timing, run.nsfw_detected) == (42, {"inference_ms": 900}, False)
    assert run.duration_ms == 1234
    assert run.metadata == {"row": 3}
    assert run.client_ref == "ref-1"
    assert run.created_at == datetime(2026, 5, 6, 10, 0, tzinfo=UTC)
    assert run.started_at == datetime(2026, 5, 6, 10, 0, 1, tzinfo=UTC)
    assert run.completed_at is not None
    assert run.completed_at.microsecond == 123456
    assert run.raw["brand_new_field"] == {"kept": True}


def test_output_url_falls_back_to_image_urls() -> None:
    run = Run.from_json(
        {"id": "x", "status": "succeeded", "output": {"image_urls": ["https://a/b.png"]}}
    )
    assert run.output_url == "https://a/b.png"
    assert run.outputs == []


@pytest.mark.parametrize(
    ("duration", "kept"),
    [
        (1234, 1234),
        ("2500", 2500),
        (0, 0),
        (MAX_DURATION_MS, MAX_DURATION_MS),
        (MAX_DURATION_MS + 1, None),
        (1e308, None),
        (10**30, None),
        (float("inf"), None),
        (float("nan"), None),
        ("Infinity", None),
        (-5, None),
        (True, None),
    ],
)
def test_absurd_durations_become_unknown(duration: object, kept: int | None) -> None:
    assert Run.from_json({"id": "r", "duration_ms": duration}).duration_ms == kept


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"id": None, "status_code": None, "output": None, "cost": None, "input": None},
        {"id": "r", "output": "not an object", "cost": "n/a", "duration_ms": "soon"},
        {"id": "r", "output": {"outputs": "nope", "image_urls": []}, "metadata": [1, 2]},
        {"id": "r", "created_at": "yesterday", "completed_at": 12, "cost": True},
        {"id": "r", "cost": "NaN", "seed": "12", "nsfw_detected": "no"},
    ],
)
def test_absent_null_or_odd_fields_never_raise(payload: dict[str, Any]) -> None:
    run = Run.from_json(payload)
    assert run.cost is None or run.cost.is_finite()
    assert run.output_url is None
    assert isinstance(run.metadata, dict)
    assert isinstance(run.input, dict)
    assert run.raw == payload


def test_numbers_and_epoch_timestamps_are_accepted() -> None:
    run = Run.from_json({"id": "r", "cost": 0.12, "completed_at": 0, "output": {"seed": "12"}})
    assert run.cost == Decimal("0.12")
    assert run.completed_at == datetime(1970, 1, 1, tzinfo=UTC)
    assert run.seed == 12


def test_failure_fields_and_their_fallbacks() -> None:
    direct = Run.from_json(
        {"id": "a", "status_code": "failed", "failure_code": "X", "failure_message": "m"}
    )
    assert (direct.failure_code, direct.failure_message) == ("X", "m")
    sdk_style = Run.from_json(
        {"id": "b", "status": "failed", "error": {"code": "E", "message": "boom"}}
    )
    assert (sdk_style.failure_code, sdk_style.failure_message) == ("E", "boom")
    callback_style = Run.from_json(
        {"id": "c", "status": "failed", "output": {"code": "PROVIDER_ERROR", "message": "down"}}
    )
    assert callback_style.failure_code == "PROVIDER_ERROR"


def test_runs_can_be_set_members() -> None:
    first = Run.from_json({"id": "a", "status_code": "queued", "metadata": {"k": 1}})
    same = Run.from_json({"id": "a", "status_code": "queued", "metadata": {"k": 1}})
    later = Run.from_json({"id": "a", "status_code": "succeeded"})
    assert len({first, same, later}) == 2


def test_a_run_must_be_a_mapping() -> None:
    with pytest.raises(TypeError, match="JSON object; got list"):
        Run.from_json([1, 2])  # type: ignore[arg-type]


def test_repr_is_short_and_hides_presigned_queries() -> None:
    run = Run.from_json(
        {
            "id": "r9",
            "status_code": "succeeded",
            "cost": "0.12",
            "output": {"outputs": [{"url": "https://s3.example/o.webp?X-Amz-Credential=SECRET"}]},
        }
    )
    text = repr(run)
    assert "SECRET" not in text
    assert text.startswith("Run(id='r9', status='succeeded', cost=0.12")


def test_run_page_reads_next_and_next_pq_and_bare_lists() -> None:
    page = RunPage.from_json({"items": [{"id": "a"}, "junk"], "next": "c1"})
    assert [r.id for r in page] == ["a"]
    assert page.next == "c1"
    assert len(page) == 1
    assert RunPage.from_json({"items": [], "next_pq": "c2"}).next == "c2"
    assert [r.id for r in RunPage.from_json([{"id": "z"}])] == ["z"]
    assert RunPage.from_json("garbage").items == []


def test_html_card_shows_status_cost_duration_and_embedded_thumbnails(server: LocalServer) -> None:
    before = server.serve_file(SAMPLES / "grace_hopper.jpg")
    after = server.serve_file(SAMPLES / "astronaut.png")
    run = Run.from_json(
        {
            "id": "r<1>",
            "status_code": "succeeded",
            "cost": "0.12",
            "duration_ms": 2500,
            "input": {"image_url": before},
            "output": {"outputs": [{"url": after}]},
        }
    )
    card = run._repr_html_()
    assert "succeeded" in card
    assert "$0.12" in card
    assert "2.5 s" in card
    assert "r&lt;1&gt;" in card  # escaped
    assert card.count('src="data:image/') == 2


def test_html_card_degrades_to_links_and_never_raises(server: LocalServer) -> None:
    _run_html.thumbnail_data_uri.cache_clear()
    not_an_image = server.serve_file(b"GIF89a but then garbage", name="bad.gif")
    run = Run.from_json(
        {
            "id": "r2",
            "status_code": "failed",
            "failure_message": "<script>alert(1)</script>",
            "input": {"image_url": "http://127.0.0.1:9/unreachable.jpg?sig=s3cr3t"},
            "output": {"outputs": [{"url": not_an_image}]},
        }
    )
    card = run._repr_html_()
    assert "<script>" not in card
    assert card.count("<a href=") == 2
    assert ">http://127.0.0.1:9/unreachable.jpg?…</a>" in card


def test_html_card_thumbnails_outlive_an_expired_presigned_url(server: LocalServer) -> None:
    _run_html.thumbnail_data_uri.cache_clear()
    url = server.serve_file(SAMPLES / "grace_hopper.jpg")
    fresh = Run.from_json({"id": "r3", "status_code": "succeeded", "input": {"image_url": url}})
    assert fresh._repr_html_().count('src="data:image/') == 1
    _run_html.thumbnail_data_uri.cache_clear()  # as after a kernel restart
    expired = url.split("?")[0] + "?sig=expired"
    assert httpx.get(expired).status_code == 403
    card = Run.from_json({"id": "r3", "input": {"image_url": expired}})._repr_html_()
    assert card.count('src="data:image/') == 1  # from the on-disk thumbnail cache
