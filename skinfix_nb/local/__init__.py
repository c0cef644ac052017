"""The embedded Runflow-compatible backend: ``serve()`` starts it on 127.0.0.1.

>>> from skinfix_nb.local import serve
>>> with serve(port=0) as server:          # the real local retouch engine
...     server.url                         # point any client here, with server.api_key

``shared_server()`` is the one server of the process that ``sf.connect()`` uses when it
finds no API key; it lives until the interpreter exits.

It speaks Runflow's HTTP API for ``runflow/skin-fix`` (runs, uploads, callbacks,
cancellation, search) and can misbehave on purpose (latency, failures, 5xx, 429,
dropped connections, running out of credit) for tests and benchmarks.

Names load on first use: importing the engine (``skinfix_nb.local.engine``) loads no
HTTP code, and starting a server loads no image code until the first run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skinfix_nb import _lazy

if TYPE_CHECKING:
    from skinfix_nb.local.server import LocalServer, serve, shared_server
    from skinfix_nb.local.store import RequestRecord

__all__ = ["LocalServer", "RequestRecord", "serve", "shared_server"]

_HOME = {
    "LocalServer": "skinfix_nb.local.server",
    "RequestRecord": "skinfix_nb.local.store",
    "serve": "skinfix_nb.local.server",
    "shared_server": "skinfix_nb.local.server",
}


__getattr__ = _lazy.loader("skinfix_nb.local", _HOME, globals())


def __dir__() -> list[str]:
    return list(__all__)
