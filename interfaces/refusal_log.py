"""Log lines about refused requests, at most one per interval, so a flood cannot fill the log."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

INTERVAL = 60.0


class RefusalLog:
    """Counts refusals by reason; logs the first at once, then a summary at most once per
    `interval` (when a refusal comes after it)."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._what = what
        self._interval = interval
        self._clock = clock
        self._counts: Counter[str] = Counter()
        self._since = clock()
        self._next = self._since
        self._lock = threading.Lock()

    def note(self, reason: str) -> None:
        with self._lock:
            self._counts[reason] += 1
            now = self._clock()
            if now < self._next:
                return
            counts, self._counts = self._counts, Counter()
            since, self._since, self._next = self._since, now, now + self._interval
        self._logger.warning(
            "refused %d %s in the last %.0f s: %s",
            sum(counts.values()),
            self._what,
            max(now - since, 0.0),
            ", ".join(f"{n} {reason}" for reason, n in counts.most_common()),
        )


class RateLimitedAccessLog(logging.Filter):
    """Lets through at most `burst` access-log lines of refused webhooks per interval.

    uvicorn writes a line per request; a flood of forged webhooks would write as many.
    The webhook endpoint's own `RefusalLog` counts every refusal."""

    def __init__(
        self,
        burst: int = 10,
        *,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._burst = burst
        self._interval = interval
        self._clock = clock
        self._window_start = clock()
        self._passed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not (isinstance(args, tuple) and len(args) >= 5):
            return True
        _, method, path, _, status = args[:5]
        if not (
            method == "POST"
            and isinstance(path, str)
            and path.startswith("/webhooks/")
            and isinstance(status, int)
            and 400 <= status < 500
        ):
            return True
        now = self._clock()
        if now - self._window_start >= self._interval:
            self._window_start, self._passed = now, 0
        self._passed += 1
        return self._passed <= self._burst
