"""Whether the event store answers, found out within a deadline and at most once at a time."""

from __future__ import annotations

import asyncio
import weakref

from application.ledger import Ledger

READY_WITHIN = 0.08
"""Seconds a readiness probe waits for the event store (probes must answer in 100 ms)."""

_checks: weakref.WeakKeyDictionary[Ledger, asyncio.Future[int | None]] = weakref.WeakKeyDictionary()


async def event_store_answers(ledger: Ledger) -> None:
    """Return if the event store answers within `READY_WITHIN`; raise otherwise.

    Concurrent probes share one query, so a storm of them during an outage cannot fill
    the worker threads; a query still running when its probe gives up goes on, and the
    next probe waits for it."""
    loop = asyncio.get_running_loop()
    check = _checks.get(ledger)
    if check is None or check.done() or check.get_loop() is not loop:
        fresh = asyncio.ensure_future(asyncio.to_thread(ledger.recorder.max_notification_id))
        fresh.add_done_callback(lambda done: done.cancelled() or done.exception())
        _checks[ledger] = check = fresh
    await asyncio.wait_for(asyncio.shield(check), READY_WITHIN)
