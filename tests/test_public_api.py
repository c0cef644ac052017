"""``skinfix_nb.__all__`` is exactly the public surface, and every public name resolves."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import skinfix_nb
from skinfix_nb import errors

# The design notes' public API: the ``sf.NAME`` calls, the types users hold, the version.
DESIGN_FUNCTIONS = {
    "compare",
    "connect",
    "connect_async",
    "enable_nested_loops",
    "gallery",
    "local",
    "parse_callback",
    "retouch",
    "review",
    "upload_form",
    "verify_signature",
}
DESIGN_TYPES = {"AsyncSkinFix", "CallbackEvent", "CallbackReceiver", "Run", "SkinFix"}
# Every exception of the tree drawn in errors.py, so users can catch any of them from the top.
EXCEPTIONS = {name for name in errors.__all__ if name[0].isupper()}
PUBLIC = DESIGN_FUNCTIONS | DESIGN_TYPES | EXCEPTIONS | {"__version__"}

DESIGN_MD = Path(__file__).resolve().parents[2] / "shared" / "DESIGN.md"


def test_all_is_exactly_the_public_surface() -> None:
    assert skinfix_nb.__all__ == sorted(PUBLIC)


def test_every_public_name_resolves() -> None:
    for name in skinfix_nb.__all__:
        assert getattr(skinfix_nb, name) is not None, name
    assert dir(skinfix_nb) == skinfix_nb.__all__


def test_public_functions_stay_functions_after_every_submodule_is_imported() -> None:
    """No submodule import may turn ``sf.compare`` or ``skinfix_nb.display.compare`` into a module."""
    code = (
        "import importlib, pkgutil, types, skinfix_nb\n"
        "for info in pkgutil.walk_packages(skinfix_nb.__path__, 'skinfix_nb.'):\n"
        "    if not info.name.endswith('__main__'):\n"
        "        importlib.import_module(info.name)\n"
        f"names = {sorted(DESIGN_FUNCTIONS - {'local'})!r}\n"
        "import skinfix_nb.display as display\n"
        "print(sorted(n for n in names if isinstance(getattr(skinfix_nb, n), types.ModuleType))\n"
        "      + sorted(n for n in display.__all__ if isinstance(getattr(display, n), types.ModuleType)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert out.strip() == "[]"


def test_exceptions_form_one_tree() -> None:
    for name in EXCEPTIONS:
        assert issubclass(getattr(skinfix_nb, name), skinfix_nb.RunflowError), name


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'konnect'"):
        _ = skinfix_nb.konnect  # type: ignore[attr-defined]


def test_design_notes_name_nothing_missing() -> None:
    """Every ``sf.NAME`` the design notes show users is exported (when the notes are beside us)."""
    if not DESIGN_MD.is_file():
        pytest.skip(f"design notes not found at {DESIGN_MD}")
    used = set(re.findall(r"\bsf\.(\w+)", DESIGN_MD.read_text(encoding="utf-8")))
    assert used <= DESIGN_FUNCTIONS, used - DESIGN_FUNCTIONS


def test_import_is_light() -> None:
    """Importing the package loads no OpenCV, HTTP client or widgets (names load on first use)."""
    code = (
        "import sys, skinfix_nb; "
        "print(sorted(m for m in ('cv2', 'httpx', 'ipywidgets', 'aiohttp') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
