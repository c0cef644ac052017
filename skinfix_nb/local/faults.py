"""Fault and load settings of the embedded server: all off by default.

A :class:`Faults` value is immutable; :meth:`LocalServer.set_faults` swaps in a new one
while the server runs. The random draws (:class:`FaultDice`) live on the server's own
event loop, so a ``seed`` makes a whole test run repeatable.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from skinfix_nb.errors import ConfigurationError

__all__ = ["FaultDice", "Faults", "Latency"]

Latency = float | tuple[float, float] | Callable[[], float]
"""Seconds of processing: fixed, a uniform ``(low, high)`` range, or a callable."""


@dataclasses.dataclass(frozen=True)
class Faults:
    """What the server does wrong, and how slowly, on purpose.

    Attributes
    ----------
    latency : float, (low, high) or callable
        Extra processing seconds per run (the whole processing time when ``engine=None``).
    failure_rate : float
        Share of runs that end ``failed`` (``PROVIDER_ERROR``, not billed).
    error_rate : float
        Share of API requests answered ``500 INTERNAL_ERROR`` before doing anything.
    rate_limit_rate : float
        Share of API requests answered ``429 RATE_LIMITED`` before doing anything.
    retry_after : float or None
        Seconds sent in ``Retry-After`` on a 429; None sends no header (Runflow's newer docs).
    retry_after_fraction : float
        Share of 429s that carry ``Retry-After`` when ``retry_after`` is set.
    drop_after_post_rate : float
        Share of run creations where the run IS created and then the connection is closed
        without an answer: the ambiguous case a client must resolve without paying twice.
    credit : Decimal or None
        USD balance. Each accepted create reserves the run price; a failed or canceled run
        gives it back. A create that the balance cannot cover gets ``402 INSUFFICIENT_CREDIT``.
        None means unlimited.
    credit_runs : int or None
        Number of further creates accepted before every create gets ``402``. None: unlimited.
    strict_https : bool
        Accept only ``https`` image URLs (else loopback ``http`` is accepted too).
    faults_on_files : bool
        Also apply ``error_rate`` / ``rate_limit_rate`` to served files (outputs, uploads).
    """

    latency: Latency = 0.0
    failure_rate: float = 0.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: float | None = None
    retry_after_fraction: float = 1.0
    drop_after_post_rate: float = 0.0
    credit: Decimal | None = None
    credit_runs: int | None = None
    strict_https: bool = False
    faults_on_files: bool = False

    def __post_init__(self) -> None:
        for name in (
            "failure_rate",
            "error_rate",
            "rate_limit_rate",
            "retry_after_fraction",
            "drop_after_post_rate",
        ):
            _check_share(name, getattr(self, name))
        _check_latency(self.latency)
        if self.retry_after is not None and not _finite_non_negative(self.retry_after):
            raise ConfigurationError(
                f"retry_after must be None or seconds >= 0, got {self.retry_after!r}"
            )
        if self.credit_runs is not None and (
            isinstance(self.credit_runs, bool)
            or not isinstance(self.credit_runs, int)
            or self.credit_runs < 0
        ):
            raise ConfigurationError(
                f"credit_runs must be None or a count >= 0, got {self.credit_runs!r}"
            )
        object.__setattr__(self, "credit", _as_usd(self.credit))

    def replace(self, **changes: Any) -> Faults:
        """A copy with some settings changed; unknown names are refused with the valid ones."""
        known = {field.name for field in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown fault option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
            )
        return dataclasses.replace(self, **changes)


class FaultDice:
    """The random draws behind the rates, from one seeded generator."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)

    def hits(self, rate: float) -> bool:
        """True with probability ``rate`` (0 never draws, so a seed's sequence stays stable)."""
        return rate > 0 and self._random.random() < rate

    def latency(self, latency: Latency) -> float:
        """Seconds to wait for one run."""
        if callable(latency):
            seconds = float(latency())
            if not _finite_non_negative(seconds):
                raise ConfigurationError(f"latency callable returned {seconds!r}; need >= 0")
            return seconds
        if isinstance(latency, tuple):
            low, high = latency
            return self._random.uniform(low, high)
        return float(latency)


def _finite_non_negative(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _check_share(name: str, value: object) -> None:
    if not _finite_non_negative(value) or value > 1:  # type: ignore[operator]
        raise ConfigurationError(f"{name} must be a number from 0 to 1, got {value!r}")


def _check_latency(latency: object) -> None:
    if callable(latency):
        return
    if isinstance(latency, tuple):
        if (
            len(latency) == 2
            and all(_finite_non_negative(v) for v in latency)
            and latency[0] <= latency[1]
        ):
            return
    elif _finite_non_negative(latency):
        return
    raise ConfigurationError(
        f"latency must be seconds >= 0, a (low, high) range or a callable, got {latency!r}"
    )


def _as_usd(credit: object) -> Decimal | None:
    if credit is None:
        return None
    if isinstance(credit, bool):
        raise ConfigurationError(f"credit must be a USD amount or None, got {credit!r}")
    try:
        amount = Decimal(str(credit)) if isinstance(credit, int | float | str) else credit
    except InvalidOperation:
        amount = None
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
        raise ConfigurationError(
            f"credit must be a USD amount >= 0 (e.g. Decimal('1.20')) or None, got {credit!r}"
        )
    return amount
