"""Where a fold's time goes: named phases, timed back to back, reported with the outcome."""

from __future__ import annotations

import time


class Phases:
    """A stopwatch of consecutive phases: :meth:`lap` ends the phase in progress and names it.

    The outcome of a fold carries them as ``info["timings"]`` (seconds by phase), so the time a
    fold spends outside training and scoring (opening the data, building, checkpoints, the
    cleanup) can be told apart (``benchmarks/overhead.py``).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        """Ends the current phase, adding its time to ``name``."""
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._last
        self._last = now

    def add(self, name: str, seconds: float) -> None:
        """Moves ``seconds`` measured inside an earlier phase to ``name`` (a part of it)."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def rounded(self) -> dict[str, float]:
        """Seconds by phase, to the microsecond."""
        return {name: round(value, 6) for name, value in self.seconds.items()}
