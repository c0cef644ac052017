"""The ``skinfix`` command, run for real: in-process through ``main`` and as a console script."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from skinfix_nb import samples
from skinfix_nb.cli import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_ROWS_NOT_SUCCEEDED,
    EXIT_SETUP,
    EXIT_USAGE,
    build_parser,
    main,
)
from skinfix_nb.local import LocalServer
from tests.conftest import FAKE_KEY

SKINFIX = Path(sys.executable).parent / "skinfix"


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(subparsers.choices)


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNFLOW_API_KEY", FAKE_KEY)


@pytest.fixture
def portraits_csv(tmp_path: Path, fresh_server: LocalServer) -> Path:
    """A CSV of the bundled portraits, served over loopback by the test's own server."""
    path = tmp_path / "portraits.csv"
    urls = [fresh_server.serve_file(samples.path(name)) for name in samples.names()]
    pd.DataFrame({"name": samples.names(), "image_url": urls}).to_csv(path, index=False)
    return path


def _posts(server: LocalServer) -> int:
    return sum(1 for r in server.requests if r.method == "POST" and r.path.endswith("/runs"))


# -- help and packaging ----------------------------------------------------------------


def test_every_command_and_option_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = _commands()
    assert set(commands) == {"demo", "run", "serve"}
    for name, sub in commands.items():
        assert sub.description, name
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
        with pytest.raises(SystemExit) as exited:
            main([name, "--help"])
        assert exited.value.code == 0
        assert f"usage: skinfix {name}" in capsys.readouterr().out


def test_run_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for code in ("0 ", "1 ", "2 ", "3 ", "130"):
        assert f"\n  {code}" in text, code


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_USAGE
    assert "demo" in capsys.readouterr().out


def test_console_script_is_installed() -> None:
    done = subprocess.run(
        [str(SKINFIX), "--version"], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.startswith("skinfix-nb ")


# -- skinfix run: usage and set-up errors ------------------------------------------------


def test_missing_input_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nope.csv"), "--local"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("skinfix: error: no such input file")
    assert "Traceback" not in err


def test_missing_column_lists_the_columns(
    portraits_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(portraits_csv), "--column", "url", "--local"]) == EXIT_USAGE
    assert "no column 'url' (columns: name, image_url)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option", [["--concurrency", "0"], ["--max-cost", "lots"], ["--timeout", "-1"]]
)
def test_bad_option_values_are_usage_errors(
    option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "in.csv", "--local", *option])
    assert exited.value.code == EXIT_USAGE
    assert f"argument {option[0]}" in capsys.readouterr().err


def test_no_key_is_a_setup_error(
    portraits_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(portraits_csv), "--out", str(tmp_path / "r.csv")]) == EXIT_SETUP
    err = capsys.readouterr().err
    assert "RUNFLOW_API_KEY" in err
    assert "--local" in err


def test_wrong_key_is_a_setup_error_without_the_key(
    portraits_csv: Path,
    tmp_path: Path,
    fresh_server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong = "rf_live_WRONGWRONGWRONG0123456789"
    monkeypatch.setenv("RUNFLOW_API_KEY", wrong)
    args = ["run", str(portraits_csv), "--base-url", fresh_server.url, "--quiet"]
    code = main([*args, "--out", str(tmp_path / "r.csv")])
    captured = capsys.readouterr()
    assert code == EXIT_SETUP, captured.err
    assert "401" in captured.err
    assert wrong not in captured.out + captured.err
    assert "Traceback" not in captured.err


def test_existing_output_needs_resume(
    portraits_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.csv"
    out.write_text("x\n")
    assert main(["run", str(portraits_csv), "--out", str(out), "--local"]) == EXIT_USAGE
    assert "--resume" in capsys.readouterr().err
    assert out.read_text() == "x\n"


# -- skinfix run: the real batch -----------------------------------------------------------


@pytest.mark.usefixtures("key_env")
def test_run_writes_results_and_exits_0(
    portraits_csv: Path,
    tmp_path: Path,
    fresh_server: LocalServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "results.csv"
    args = ["run", str(portraits_csv), "--base-url", fresh_server.url, "--out", str(out)]
    assert main([*args, "--quiet"]) == EXIT_OK
    result = pd.read_csv(out)
    assert list(result["status"]) == ["succeeded"] * len(samples.names())
    assert list(result["name"]) == samples.names()
    assert {"run_id", "output_url", "cost", "error", "duration_ms"} <= set(result.columns)
    summary = capsys.readouterr().out
    assert f"{len(result)} rows: {len(result)} succeeded" in summary
    assert FAKE_KEY not in summary
    assert FAKE_KEY not in out.read_text()


@pytest.mark.usefixtures("key_env")
def test_budget_then_resume_bills_each_image_once(
    portraits_csv: Path, tmp_path: Path, fresh_server: LocalServer
) -> None:
    out = tmp_path / "results.csv"
    args = ["run", str(portraits_csv), "--base-url", fresh_server.url, "--out", str(out), "--quiet"]
    assert main([*args, "--max-cost", "0.12", "--concurrency", "1"]) == EXIT_ROWS_NOT_SUCCEEDED
    first = pd.read_csv(out)["status"].value_counts().to_dict()
    assert first == {"succeeded": 1, "not_submitted": len(samples.names()) - 1}

    assert main([*args, "--resume"]) == EXIT_OK
    assert set(pd.read_csv(out)["status"]) == {"succeeded"}
    assert main([*args, "--resume"]) == EXIT_OK  # nothing left to do, nothing sent
    assert _posts(fresh_server) == len(samples.names())
    assert fresh_server.billed_usd() == Decimal("0.12") * len(samples.names())


@pytest.mark.usefixtures("key_env")
def test_out_of_credit_leaves_unsent_rows_unbilled(
    portraits_csv: Path, tmp_path: Path, fresh_server: LocalServer
) -> None:
    fresh_server.set_faults(credit=Decimal("0.24"))
    out = tmp_path / "results.csv"
    args = ["run", str(portraits_csv), "--base-url", fresh_server.url, "--out", str(out)]
    assert main([*args, "--quiet", "--concurrency", "1"]) == EXIT_ROWS_NOT_SUCCEEDED
    result = pd.read_csv(out)
    assert result["status"].value_counts().to_dict() == {
        "succeeded": 2,
        "not_submitted": len(samples.names()) - 2,
    }
    assert (
        result.loc[result["status"] == "not_submitted", "error"]
        .str.contains("credit", case=False)
        .all()
    )
    assert fresh_server.billed_usd() == Decimal("0.24")


@pytest.mark.usefixtures("key_env")
def test_ctrl_c_exits_130_without_a_traceback(
    portraits_csv: Path, tmp_path: Path, fresh_server: LocalServer
) -> None:
    fresh_server.set_faults(latency=60.0)
    out = tmp_path / "results.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "skinfix_nb", "run", str(portraits_csv), "--quiet"]
        + ["--base-url", fresh_server.url, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while _posts(fresh_server) < len(samples.names()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _posts(fresh_server) == len(samples.names())
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "skinfix: error: interrupted" in err
    assert "Traceback" not in err
    assert FAKE_KEY not in err


def test_local_run_serves_file_paths_and_marks_bad_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "mixed.csv"
    paths = [str(samples.path(name)) for name in samples.names()[:2]]
    cells = [*paths, paths[0], "not a url"]
    pd.DataFrame({"image_url": cells}).to_csv(csv, index=False)
    out = tmp_path / "results.csv"
    assert main(["run", str(csv), "--local", "--out", str(out), "--quiet"]) == (
        EXIT_ROWS_NOT_SUCCEEDED
    )
    result = pd.read_csv(out)
    assert list(result["status"]) == ["succeeded", "succeeded", "succeeded", "invalid"]
    assert list(result["image_url"]) == cells  # paths stay paths
    assert result["run_id"][0] == result["run_id"][2]  # the same file twice is one run
    summary = capsys.readouterr().out
    assert "4 rows: 3 succeeded, 1 invalid; $0.24" in summary  # each run counted once


# -- skinfix serve and skinfix demo --------------------------------------------------------


def test_serve_runs_until_ctrl_c() -> None:
    from skinfix_nb.client import connect

    proc = subprocess.Popen(
        [sys.executable, "-m", "skinfix_nb", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("skinfix local server on http://127.0.0.1:"), first
        url = first.rsplit(" ", 1)[-1].strip()
        key = proc.stdout.readline().removeprefix("api key: ").strip()
        while proc.stdout.readline().strip() != "Ctrl-C stops it.":
            pass
        with connect(base_url=url, api_key=key) as client:
            assert client.health()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == EXIT_OK, err
    assert out.rstrip().endswith("stopped")
    assert "Traceback" not in err


@pytest.mark.slow
def test_demo_writes_results_images_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quiet"]) == EXIT_OK
    result = pd.read_csv(out / "results.csv")
    portraits = samples.names()
    assert list(result["status"]) == ["succeeded"] * len(portraits)
    for path in result["retouched_path"]:
        assert (out / path).stat().st_size > 1000
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "data:image/" in html  # images embedded: the report travels as one file
    assert 'src="http' not in html
    summary = capsys.readouterr().out
    n = len(portraits)
    assert f"{n} portraits: {n} succeeded, 0 failed" in summary
