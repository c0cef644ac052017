"""run_sync in scripts and inside running loops; nested loops only when asked for."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading

import pytest

import skinfix_nb as sf
from skinfix_nb.local import LocalServer
from skinfix_nb.loops import run_sync
from tests.conftest import FAKE_KEY


async def _where() -> str:
    await asyncio.sleep(0)
    return threading.current_thread().name


async def _boom() -> None:
    await asyncio.sleep(0)
    raise LookupError("from inside")


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (warnings are errors) and return its output."""
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_without_a_running_loop_it_is_asyncio_run() -> None:
    assert run_sync(_where()) == threading.current_thread().name
    with pytest.raises(LookupError, match="from inside"):
        run_sync(_boom())


async def test_inside_a_running_loop_it_uses_one_library_thread() -> None:
    first = run_sync(_where())
    second = run_sync(_where())
    assert first == second == "skinfix-nb-loop"
    with pytest.raises(LookupError, match="from inside"):
        run_sync(_boom())


async def test_the_async_client_from_blocking_code_in_a_notebook_cell(server: LocalServer) -> None:
    """What the batch engine's blocking wrapper does in Jupyter: async work, blocking call."""

    async def check() -> dict[str, object]:
        async with sf.AsyncSkinFix(FAKE_KEY, base_url=server.url) as client:
            return await client.health()

    assert run_sync(check()) == {"status": "ok"}


async def test_calling_it_on_its_own_loop_is_refused_not_a_deadlock() -> None:
    async def nested() -> None:
        coro = _where()
        try:
            run_sync(coro)
        finally:
            coro.close()

    with pytest.raises(RuntimeError, match="await instead"):
        run_sync(nested())


def test_an_interrupt_cancels_the_coroutine() -> None:
    out = _python(
        """
        import _thread, asyncio, threading
        from skinfix_nb.loops import run_sync

        cancelled = threading.Event()

        async def slow():
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        async def cell():
            threading.Timer(0.2, _thread.interrupt_main).start()
            try:
                run_sync(slow())
            except KeyboardInterrupt:
                print("interrupted", cancelled.wait(5))

        # like a kernel: a plain running loop, SIGINT raises KeyboardInterrupt in the cell
        asyncio.new_event_loop().run_until_complete(cell())
        """
    )
    assert out.strip() == "interrupted True"


def test_nested_loops_only_when_enabled_and_nest_asyncio2_first() -> None:
    out = _python(
        """
        import asyncio
        import skinfix_nb as sf

        async def inner():
            return 42

        async def cell():
            coro = inner()
            try:
                asyncio.run(coro)
            except RuntimeError:
                coro.close()
                print("not patched at import")
            print(sf.enable_nested_loops(), asyncio.run(inner()))

        asyncio.run(cell())
        """
    )
    assert out.splitlines() == ["not patched at import", "nest_asyncio2 42"]


def test_nested_loops_fall_back_to_nest_asyncio() -> None:
    out = _python(
        """
        import sys
        sys.modules["nest_asyncio2"] = None  # as if it were not installed
        import asyncio
        from skinfix_nb.loops import enable_nested_loops

        async def inner():
            return 7

        async def cell():
            print(enable_nested_loops(), asyncio.run(inner()))

        asyncio.run(cell())
        """
    )
    assert out.strip() == "nest_asyncio 7"


def test_without_either_package_the_error_says_what_to_install() -> None:
    out = _python(
        """
        import sys
        sys.modules["nest_asyncio2"] = None
        sys.modules["nest_asyncio"] = None
        from skinfix_nb.errors import ConfigurationError
        from skinfix_nb.loops import enable_nested_loops
        try:
            enable_nested_loops()
        except ConfigurationError as exc:
            print(exc)
        """
    )
    assert "pip install nest-asyncio2" in out
