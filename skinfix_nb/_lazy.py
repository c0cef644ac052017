"""Public names that load on first use (PEP 562), shared by the package and its subpackages.

Importing ``skinfix_nb`` then costs no OpenCV, ipywidgets or HTTP client until a name that
needs them is touched.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def loader(
    package: str, homes: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports each name from its home module once.

    ``homes`` maps a public name to the module defining it; a name whose home is
    ``f"{package}.{name}"`` is that submodule itself. The value is cached in ``namespace``
    (the module's ``globals()``), so later look-ups never come back here.
    """

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(home)
        value = module if home == f"{package}.{name}" else getattr(module, name)
        namespace[name] = value
        return value

    return __getattr__
