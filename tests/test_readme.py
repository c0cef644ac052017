"""Every code block in README.md runs, top to bottom, as a newcomer would run it.

Marker convention
-----------------
A block that cannot run here carries, on the line right above its opening fence, a visible
HTML comment ``<!-- readme-test: REASON -->``. Only three reasons exist, and each is checked
so a marker cannot hide a block that would simply fail:

``ci``
    Run verbatim by ``.ci/run`` (the set-up commands): every line must appear there as is.
``needs-key``
    Needs a real Runflow key: the block must mention ``RUNFLOW_API_KEY``.
``colab``
    Needs Google Colab: the block must use ``google.colab``.

Every other block is executed: ``python`` blocks in one shared namespace, ``bash`` blocks
with ``bash -euo pipefail``, in README order, in a fresh process in an empty folder, with no
API key (so ``sf.connect()`` takes the embedded local backend). When a Python block ends
in an expression, its notebook representation is built, as Jupyter would display it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from skinfix_nb import samples

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI_SCRIPT = ROOT / ".ci" / "run"
REASONS = {"ci", "needs-key", "colab"}
LANGUAGES = {"python", "bash"}

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
_MARKER = re.compile(r"<!-- readme-test: ([\w-]+) -->")


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # 1-based line of the opening fence
    skip_reason: str | None


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks of ``text``, each with the marker right above it, if any."""
    blocks = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _MARKER.fullmatch(before.strip())
        blocks.append(
            Block(
                language=match.group(1),
                code=match.group(2),
                line=text.count("\n", 0, match.start()) + 1,
                skip_reason=marker.group(1) if marker else None,
            )
        )
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))

# Runs in a fresh interpreter: executes the blocks given as JSON on stdin, in order.
RUNNER = r"""
import ast, json, subprocess, sys

namespace = {"__name__": "__main__"}
for block in json.load(sys.stdin):
    print(f"--- README line {block['line']} ({block['language']})", flush=True)
    if block["language"] == "bash":
        subprocess.run(["bash", "-euo", "pipefail", "-c", block["code"]], check=True)
        continue
    tree = ast.parse(block["code"], filename=f"README.md:{block['line']}")
    last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    if last is not None:
        tree.body.pop()
    exec(compile(tree, f"README.md:{block['line']}", "exec"), namespace)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), "README.md", "eval"), namespace)
        for hook in ("_repr_mimebundle_", "_repr_html_"):
            if hasattr(value, hook):
                getattr(value, hook)()
                break
"""


def test_markers_are_known_and_justified() -> None:
    ci_text = CI_SCRIPT.read_text(encoding="utf-8")
    for block in BLOCKS:
        where = f"README.md line {block.line}"
        assert block.language in LANGUAGES, f"{where}: unknown language {block.language!r}"
        if block.skip_reason is None:
            continue
        assert block.skip_reason in REASONS, f"{where}: unknown marker {block.skip_reason!r}"
        if block.skip_reason == "ci":
            for line in block.code.splitlines():
                assert line in ci_text, f"{where}: {line!r} is not run by .ci/run"
        elif block.skip_reason == "needs-key":
            assert "RUNFLOW_API_KEY" in block.code, f"{where}: needs no key, so it must run"
        else:
            assert "google.colab" in block.code, f"{where}: uses no Colab, so it must run"


def test_every_marker_sits_above_a_block() -> None:
    text = README.read_text(encoding="utf-8")
    marked = sum(block.skip_reason is not None for block in BLOCKS)
    assert len(_MARKER.findall(text)) == marked


def test_setup_is_two_one_line_commands_run_by_ci() -> None:
    setup = BLOCKS[0]
    commands = setup.code.splitlines()
    assert setup.skip_reason == "ci"
    assert len(commands) == 2
    assert "skinfix demo" in commands[0]
    assert "pytest" in commands[1]
    ci_text = CI_SCRIPT.read_text(encoding="utf-8")
    for command in commands:
        assert f"{{ {command}; }}" in ci_text, f".ci/run must run {command!r} verbatim"


def test_most_blocks_run() -> None:
    runnable = [block for block in BLOCKS if block.skip_reason is None]
    assert len(runnable) >= 10, "the README lost its examples"


@pytest.mark.slow
def test_readme_blocks_run(tmp_path: Path) -> None:
    runnable = [
        {"language": block.language, "code": block.code, "line": block.line}
        for block in BLOCKS
        if block.skip_reason is None
    ]
    env = {key: value for key, value in os.environ.items() if key != "RUNFLOW_API_KEY"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MPLBACKEND"] = "Agg"
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", RUNNER],
        input=json.dumps(runnable),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    # what the README promises the reader will have after following it
    assert (tmp_path / "report.html").is_file()
    results = (tmp_path / "results.csv").read_text(encoding="utf-8")
    assert results.count(",succeeded,") == len(samples.names())
