"""Running async code from blocking code, in scripts and in notebooks alike.

Jupyter and Colab already run an event loop in the kernel's main thread, so
``asyncio.run`` fails there ("cannot be called from a running event loop"). Instead of
patching asyncio, :func:`run_sync` hands the coroutine to a loop the library owns, running
in a daemon thread, and blocks until it is done. :func:`enable_nested_loops` is the opt-in
alternative for code that insists on nesting loops; nothing is patched unless it is called.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from skinfix_nb.errors import ConfigurationError

__all__ = ["enable_nested_loops", "run_sync"]

T = TypeVar("T")

_INTERRUPT_CHECK_SECONDS = 0.2
_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from blocking code and return its result.

    With no event loop running in this thread this is ``asyncio.run(coro)``. Inside a
    running loop (a notebook cell) the coroutine runs on the library's own loop in a
    daemon thread, created on first use and reused, while this thread waits. A kernel
    interrupt cancels the coroutine.

    Raises
    ------
    RuntimeError
        When called from a coroutine already running on the library's loop (that would
        wait for itself forever): ``await`` the coroutine there instead.
    """
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    loop = _library_loop()
    if running is loop:
        coro.close()
        raise RuntimeError("run_sync() was called on the loop it would wait for: await instead")
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        while not future.done():
            # short waits keep this thread responsive to a kernel interrupt
            concurrent.futures.wait([future], timeout=_INTERRUPT_CHECK_SECONDS)
        return future.result()
    except BaseException:
        future.cancel()
        raise


def _library_loop() -> asyncio.AbstractEventLoop:
    """The library's event loop, running forever in a daemon thread (started once)."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                loop.run_forever()

            threading.Thread(target=serve, name="skinfix-nb-loop", daemon=True).start()
            started.wait()
            _loop = loop
        return _loop


def enable_nested_loops() -> str:
    """Let ``asyncio.run`` and ``loop.run_until_complete`` nest inside a running loop.

    Applies ``nest_asyncio2`` when installed (the maintained fork), else ``nest_asyncio``,
    to the current thread's running or default loop. Only needed for third-party code
    that calls ``asyncio.run`` in a notebook; skinfix_nb itself never needs it. Nothing
    is patched at import time.

    Returns
    -------
    str
        The name of the module that was applied.
    """
    for name in ("nest_asyncio2", "nest_asyncio"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        module.apply()
        return name
    raise ConfigurationError(
        "nested event loops need nest-asyncio: pip install nest-asyncio2 (or nest-asyncio)"
    )
