"""The system's clock, the `Clock` every process uses unless a test gives it another."""

from __future__ import annotations

import time


class SystemClock:
    """`Clock` over the operating system's wall clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000
