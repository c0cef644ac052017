"""Drive every client operation against the hostile server and sort what comes out.

The documented outcome of a bad answer is a :class:`~skinfix_nb.errors.RunflowError`
subclass; anything else that escapes (``RecursionError``, an ``httpx`` exception, a
``KeyError``...) is counted, with the junk that caused it.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from skinfix_nb._core import PollPolicy, RetryPolicy
from skinfix_nb.client import AsyncSkinFix, SkinFix
from skinfix_nb.errors import RunflowError
from tests.conftest import FAKE_KEY
from tests.reliability.hostile import HostileServer, Junk

__all__ = ["FuzzOutcome", "OPERATIONS", "fuzz_async_client", "fuzz_batch", "fuzz_sync_client"]

OPERATIONS = ("submit", "get", "list_runs", "find", "health", "wait", "upload", "cancel")
_PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
_FAST_RETRY = RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0, max_retry_after=0.01)
_FAST_POLL = PollPolicy(first=0.02, max_interval=0.02)


@dataclass
class FuzzOutcome:
    """Calls made, documented errors raised, and the escapes by (operation, exception)."""

    calls: int = 0
    documented: int = 0
    answered: int = 0
    escaped: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], str] = field(default_factory=dict)

    def note(self, operation: str, junk: Junk, error: BaseException | None) -> None:
        self.calls += 1
        if error is None:
            self.answered += 1
        elif isinstance(error, RunflowError):
            self.documented += 1
        else:
            key = (operation, type(error).__name__)
            self.escaped[key] += 1
            self.examples.setdefault(key, f"{junk.name}: {error!r}"[:200])

    @property
    def escapes(self) -> int:
        return sum(self.escaped.values())


def _sync_operations(client: SkinFix) -> dict[str, Callable[[], Any]]:
    return {
        "submit": lambda: client.submit("https://img.example.test/a.jpg", client_ref="sfnb-f"),
        "get": lambda: client.get("run_0001"),
        "list_runs": lambda: client.list_runs(limit=5),
        "find": lambda: client.find_by_client_ref("sfnb-f"),
        "health": client.health,
        "wait": lambda: client.wait("run_0001", timeout=0.1, poll=_FAST_POLL),
        "upload": lambda: client.upload(_PNG, filename="a.png"),
        "cancel": lambda: client.cancel("run_0001"),
    }


def _async_operations(client: AsyncSkinFix) -> dict[str, Callable[[], Awaitable[Any]]]:
    return {
        "submit": lambda: client.submit("https://img.example.test/a.jpg", client_ref="sfnb-f"),
        "get": lambda: client.get("run_0001"),
        "list_runs": lambda: client.list_runs(limit=5),
        "find": lambda: client.find_by_client_ref("sfnb-f"),
        "health": client.health,
        "wait": lambda: client.wait("run_0001", timeout=0.1, poll=_FAST_POLL),
        "upload": lambda: client.upload(_PNG, filename="a.png"),
        "cancel": lambda: client.cancel("run_0001"),
    }


def _pairs(junk: Sequence[Junk], every_operation: bool) -> list[tuple[Junk, str]]:
    """Each junk answer with every operation, or with one operation in turn."""
    if every_operation:
        return [(item, operation) for item in junk for operation in OPERATIONS]
    return [(item, OPERATIONS[n % len(OPERATIONS)]) for n, item in enumerate(junk)]


def fuzz_sync_client(
    hostile: HostileServer, junk: Sequence[Junk], *, every_operation: bool = False
) -> FuzzOutcome:
    """Feed each junk answer to the blocking client; count what escapes."""
    outcome = FuzzOutcome()
    with SkinFix(FAKE_KEY, base_url=hostile.url, timeout=2.0, retry=_FAST_RETRY) as client:
        operations = _sync_operations(client)
        for item, name in _pairs(junk, every_operation):
            hostile.feed(item)
            try:
                operations[name]()
            except BaseException as exc:  # the point: see everything that escapes
                outcome.note(name, item, exc)
            else:
                outcome.note(name, item, None)
    return outcome


def fuzz_async_client(
    hostile: HostileServer, junk: Sequence[Junk], *, every_operation: bool = False
) -> FuzzOutcome:
    """Feed each junk answer to the async client; count what escapes."""
    outcome = FuzzOutcome()

    async def go() -> None:
        async with AsyncSkinFix(
            FAKE_KEY, base_url=hostile.url, timeout=2.0, retry=_FAST_RETRY
        ) as client:
            operations = _async_operations(client)
            for item, name in _pairs(junk, every_operation):
                hostile.feed(item)
                try:
                    await operations[name]()
                except BaseException as exc:  # the point: see everything that escapes
                    outcome.note(name, item, exc)
                else:
                    outcome.note(name, item, None)

    asyncio.run(go())
    return outcome


def fuzz_batch(hostile: HostileServer, junk: Sequence[Junk]) -> FuzzOutcome:
    """``df.skinfix.submit`` of two rows while every answer is junk (1 s timeout each)."""
    outcome = FuzzOutcome()
    frame = pd.DataFrame(
        {"image_url": ["https://img.example.test/h/1.jpg", "https://img.example.test/h/2.jpg"]}
    )
    with SkinFix(FAKE_KEY, base_url=hostile.url, timeout=2.0, retry=_FAST_RETRY) as client:
        for item in junk:
            hostile.feed(item)
            try:
                out = frame.skinfix.submit(
                    "image_url", client=client, ledger=":memory:", progress=False, timeout=1.0
                )
            except BaseException as exc:  # the point: see everything that escapes
                outcome.note("df.skinfix.submit", item, exc)
                continue
            outcome.note("df.skinfix.submit", item, None)
            if (
                out is None
                or len(out) != len(frame)
                or any(isinstance(v, float) and math.isnan(v) for v in out["status"])
            ):
                outcome.note("df.skinfix.submit", item, AssertionError(f"bad frame {out!r}"))
    return outcome
