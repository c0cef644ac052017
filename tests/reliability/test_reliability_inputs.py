"""Forged callbacks are refused and delivered once; hostile images give clear errors."""

from __future__ import annotations

from skinfix_nb.local import LocalServer
from tests.reliability import attacks


def test_forged_truncated_reordered_and_replayed_callbacks() -> None:
    cases = attacks.callback_cases(genuine_runs=12)
    result = attacks.measure_callbacks(cases)
    assert result["forged_cases"] >= 200
    assert result["forged_verified"] == 0
    assert result["forged_parsed"] == 0
    assert result["forged_accepted_by_receiver"] == 0
    assert set(result["forged_receiver_statuses"]) <= {400, 401}
    assert result["forged_delivered"] == 0
    assert result["handler_calls"] == result["genuine_runs"] == 12  # every genuine one, once
    assert result["duplicates_delivered"] == 0
    assert result["unexpected_exceptions"] == {}


def test_hostile_images_give_clear_errors_through_compare_qa_and_engine() -> None:
    cases = attacks.image_cases()
    result = attacks.measure_images(cases)
    assert result["crashes"] == 0, result["outcomes"]
    assert result["unclear_errors"] == 0
    outcomes = result["outcomes"]
    for name, by_entry in outcomes.items():
        expected = "ok" if name.startswith(("1x1", "20000x")) else "Error: "
        for where, outcome in by_entry.items():
            assert expected in outcome, (name, where, outcome)
    bombs = [name for name in outcomes if name.startswith("bomb")]
    assert bombs
    assert all(
        outcome.startswith("ImageTooLargeError")
        for name in bombs
        for outcome in outcomes[name].values()
    )


def test_hostile_images_through_the_servers_engine_fail_their_run_clearly(
    server: LocalServer,
) -> None:
    result = attacks.measure_images_over_http(server, attacks.image_cases())
    assert result["healthy"]
    assert result["unclear"] == 0
    for name, outcome in result["outcomes"].items():
        expected = "succeeded" if name.startswith(("1x1", "20000x")) else "failed: "
        assert outcome.startswith(expected), (name, outcome)
