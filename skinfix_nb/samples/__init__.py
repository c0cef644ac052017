"""A few permissively licensed portraits bundled for demos and tests.

Licences and attribution are in ``ATTRIBUTION.md`` beside these files.

>>> from skinfix_nb import samples
>>> samples.names()
['astronaut', 'camera', 'grace_hopper', 'luispedro']
>>> image = samples.load("grace_hopper")
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from skinfix_nb.images import open_image

__all__ = ["PORTRAITS", "load", "names", "path"]

_FOLDER = Path(__file__).parent
_FILES = {
    "astronaut": "astronaut.png",
    "camera": "camera.png",
    "grace_hopper": "grace_hopper.jpg",
    "luispedro": "luispedro.jpg",
}

PORTRAITS = ("astronaut", "grace_hopper", "luispedro")
"""The colour portraits with a frontal face; ``camera`` is a greyscale profile with none."""


def names() -> list[str]:
    """Names of the bundled images, sorted."""
    return sorted(_FILES)


def path(name: str) -> Path:
    """Where the bundled image ``name`` lives on disk."""
    try:
        return _FOLDER / _FILES[name]
    except KeyError:
        raise KeyError(f"no bundled sample {name!r}; choose one of {', '.join(names())}") from None


def load(name: str) -> Image.Image:
    """The bundled image ``name``, decoded (upright, ``RGB`` or ``L``)."""
    return open_image(path(name))
