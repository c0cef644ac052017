"""The few places where ipywidgets 7 (Colab) and 8 (JupyterLab 4, Notebook 7) differ.

Everything else in ``skinfix_nb.display`` uses widgets and traits that both versions share,
so this module is the only one that looks at the installed version.

``FileUpload.value`` is the main difference:

* ipywidgets 7: a dict keyed by file name,
  ``{name: {"metadata": {"name", "type", "size", "lastModified"}, "content": bytes}}``;
* ipywidgets 8: a tuple of dicts ``{"name", "type", "size", "content", "last_modified"}``
  whose ``content`` is a ``memoryview``.

:func:`uploaded_files` turns either into a list of :class:`UploadedFile`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ipywidgets

__all__ = ["IPYWIDGETS_MAJOR", "UploadedFile", "uploaded_files"]

IPYWIDGETS_MAJOR = int(ipywidgets.__version__.split(".", 1)[0])
"""Major version of the installed ipywidgets (7 on Colab, 8 elsewhere)."""


@dataclass(frozen=True, repr=False)
class UploadedFile:
    """One file picked in a ``FileUpload`` widget, whatever the ipywidgets version."""

    name: str
    type: str
    size: int
    content: bytes

    def __repr__(self) -> str:  # never dump the bytes into a notebook
        return f"UploadedFile(name={self.name!r}, type={self.type!r}, size={self.size})"


def uploaded_files(value: Any) -> list[UploadedFile]:
    """Normalise a ``FileUpload.value`` from ipywidgets 7 or 8 into a list of files.

    Parameters
    ----------
    value : dict or tuple
        ``upload.value``: a dict keyed by file name (ipywidgets 7), or a tuple/list of
        per-file dicts (ipywidgets 8). An empty value gives an empty list.

    Raises
    ------
    TypeError
        If ``value`` has neither shape.
    """
    if isinstance(value, Mapping):
        return [_from_v7(name, entry) for name, entry in value.items()]
    if isinstance(value, list | tuple):
        return [_from_v8(entry) for entry in value]
    raise TypeError(
        f"FileUpload.value should be a dict (ipywidgets 7) or a tuple (ipywidgets 8), "
        f"got {type(value).__name__}"
    )


def _from_v7(name: str, entry: Mapping[str, Any]) -> UploadedFile:
    metadata = entry.get("metadata") or {}
    content = _as_bytes(entry.get("content"))
    return UploadedFile(
        name=str(metadata.get("name") or name),
        type=str(metadata.get("type") or ""),
        size=int(metadata.get("size") or len(content)),
        content=content,
    )


def _from_v8(entry: Mapping[str, Any]) -> UploadedFile:
    content = _as_bytes(entry.get("content"))
    return UploadedFile(
        name=str(entry.get("name") or "upload"),
        type=str(entry.get("type") or ""),
        size=int(entry.get("size") or len(content)),
        content=content,
    )


def _as_bytes(content: object) -> bytes:
    if content is None:
        return b""
    if isinstance(content, bytes):
        return content
    if isinstance(content, bytearray | memoryview):
        return bytes(content)
    raise TypeError(f"file content should be bytes or a memoryview, got {type(content).__name__}")
