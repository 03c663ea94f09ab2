"""A readiness probe's answer, found out within a deadline and at most once at a time."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from projections.health import ProjectionWatch, Readiness

READY_WITHIN = 0.5
"""Seconds a readiness probe waits for the databases. While the database is known to be
down (the pool's circuit is open) the check fails at once, well under 100 ms; a healthy
but busy database gets this long, so a loaded process is not taken for a dead one (at
80 ms, probes failed under the test suite's load)."""

_checks: weakref.WeakKeyDictionary[ProjectionWatch, asyncio.Future[Any]] = (
    weakref.WeakKeyDictionary()
)


async def readiness_within_deadline(watch: ProjectionWatch) -> Readiness:
    """The watch's verdict if the event store and the read models answer within
    `READY_WITHIN`; raise otherwise.

    Concurrent probes share one check, so a storm of them during an outage cannot fill
    the worker threads; a check still running when its probe gives up goes on, and the
    next probe waits for it."""
    loop = asyncio.get_running_loop()
    check = _checks.get(watch)
    if check is None or check.done() or check.get_loop() is not loop:
        fresh = asyncio.ensure_future(asyncio.to_thread(watch.check))
        fresh.add_done_callback(lambda done: done.cancelled() or done.exception())
        _checks[watch] = check = fresh
    readiness: Readiness = await asyncio.wait_for(asyncio.shield(check), READY_WITHIN)
    return readiness
