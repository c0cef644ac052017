"""Notebook views of runs: side-by-side comparison, upload form, gallery and review.

Names load on first use, so ``sf.compare`` does not import ipywidgets and the package
imports before every view module is present.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skinfix_nb import _lazy

if TYPE_CHECKING:
    from skinfix_nb.display.comparison import compare
    from skinfix_nb.display.gallery_grid import gallery
    from skinfix_nb.display.upload import upload_form

__all__ = ["compare", "gallery", "review", "upload_form"]

_MODULES = {
    "compare": "skinfix_nb.display.comparison",
    "gallery": "skinfix_nb.display.gallery_grid",
    "review": "skinfix_nb.display.review_widget",
    "upload_form": "skinfix_nb.display.upload",
}


__getattr__ = _lazy.loader("skinfix_nb.display", _MODULES, globals())


def __dir__() -> list[str]:
    return __all__
