"""Where skinfix_nb keeps its files: the run ledger and the thumbnail cache."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_HOME = "SKINFIX_NB_HOME"


def home() -> Path:
    """The toolkit's own folder, created on first use.

    ``$SKINFIX_NB_HOME`` when set, else the platform's user cache folder
    (``~/.cache/skinfix_nb`` on Linux and Colab, ``~/Library/Caches/skinfix_nb`` on macOS,
    ``%LOCALAPPDATA%\\skinfix_nb`` on Windows).
    """
    configured = os.environ.get(ENV_HOME)
    if configured:
        path = Path(configured).expanduser()
    elif sys.platform == "darwin":
        path = Path.home() / "Library" / "Caches" / "skinfix_nb"
    elif sys.platform == "win32":
        path = Path(os.environ.get("LOCALAPPDATA", Path.home())) / "skinfix_nb"
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "skinfix_nb"
    path.mkdir(parents=True, exist_ok=True)
    return path
