"""A clock tests move on instead of sleeping (`build(settings, clock=...)`)."""

from __future__ import annotations

import time


class MovableClock:
    """`Clock` that follows the wall clock shifted by what the test moved it on, or, once
    stopped, stands still where it was."""

    def __init__(self) -> None:
        self._shift_ms = 0
        self._stopped_at: int | None = None

    def now_ms(self) -> int:
        if self._stopped_at is not None:
            return self._stopped_at
        return time.time_ns() // 1_000_000 + self._shift_ms

    def advance(self, ms: int) -> None:
        """Move the clock on by `ms` milliseconds (back, if negative)."""
        if self._stopped_at is not None:
            self._stopped_at += ms
        self._shift_ms += ms

    def stop(self, at: int | None = None) -> None:
        """Stand still at `at` (ms since the epoch; by default the time now), until moved on."""
        self._stopped_at = self.now_ms() if at is None else at
