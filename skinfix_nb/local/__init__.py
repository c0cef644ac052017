"""The embedded Runflow-compatible backend: ``serve()`` starts it on 127.0.0.1.

>>> from skinfix_nb.local import serve
>>> with serve(port=0) as server:          # the real local retouch engine
...     server.url                         # point any client here, with server.api_key

It speaks Runflow's HTTP API for ``runflow/skin-fix`` (runs, uploads, callbacks,
cancellation, search) and can misbehave on purpose (latency, failures, 5xx, 429,
dropped connections, running out of credit) for tests and benchmarks. Importing this
package loads no image code; the engine loads with the first run.
"""

from skinfix_nb.local.server import LocalServer, serve
from skinfix_nb.local.store import RequestRecord

__all__ = ["LocalServer", "RequestRecord", "serve"]
