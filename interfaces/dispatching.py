"""Running the dispatcher in a process: wake-ups, token refreshes, and a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from interfaces.composition import Services
from projections.notifications import listener_for

log = logging.getLogger(__name__)

TOKEN_CHECK_SECONDS = 3600.0
RETENTION_CHECK_SECONDS = 3600.0
ENTRY_POINTS_CHECK_SECONDS = 15.0
"""How often the accounts' ice breakers and persistent menus are compared with what Meta
took (`application/entry_point_pusher.py`)."""


async def run_dispatcher(services: Services, stop: asyncio.Event) -> None:
    """Dispatch until `stop`: woken when this process fills the outbox, or (PostgreSQL)
    when another process does; refreshes ageing access tokens and destroys content past
    its accounts' retention every hour, pushes changed ice breakers and persistent menus to
    Meta every 15 seconds (at once when this process changed an account). Closes the HTTP
    clients' connections when it stops."""
    dispatcher = services.dispatcher
    loop = asyncio.get_running_loop()

    def wake() -> None:
        # Called from other threads; after a stop the loop may be gone.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(dispatcher.wakeup.set)

    outbox = services.read_models.outbox
    unsubscribes = [outbox.on_applied(wake)]
    if outbox.engine.dialect.name == "postgresql" and outbox.notify:
        unsubscribes.append(listener_for(outbox.engine).subscribe(outbox.notify, wake))
    refresher = asyncio.ensure_future(_refresh_tokens(services, stop))
    retention = asyncio.ensure_future(_expire_content(services, stop))
    account_changed = asyncio.Event()

    def on_account_change() -> None:
        # A change of this process (an ice breaker set over HTTP by `serve`) is pushed now;
        # another process's, at the next poll.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(account_changed.set)

    services.ledger.on_account_change(on_account_change)
    entry_points = asyncio.ensure_future(_push_entry_points(services, stop, account_changed))
    try:
        await dispatcher.run(stop)
    finally:
        for unsubscribe in unsubscribes:
            unsubscribe()
        for task in (refresher, retention, entry_points):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # The HTTP clients' connections belong to this loop: closed here, as it stops.
        await services.close_connections()


async def _refresh_tokens(services: Services, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await services.dispatcher.refresh_tokens()
        except Exception:
            log.exception("refreshing access tokens failed; trying again in an hour")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TOKEN_CHECK_SECONDS)


async def _expire_content(services: Services, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await services.retention.expire()
        except Exception:
            log.exception("content retention failed; trying again in an hour")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RETENTION_CHECK_SECONDS)


async def _push_entry_points(
    services: Services, stop: asyncio.Event, account_changed: asyncio.Event
) -> None:
    while not stop.is_set():
        account_changed.clear()
        try:
            await services.dispatcher.push_entry_points()
        except Exception:
            log.exception("pushing entry points failed; trying again shortly")
        waiters = {
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(account_changed.wait()),
        }
        await asyncio.wait(
            waiters, timeout=ENTRY_POINTS_CHECK_SECONDS, return_when=asyncio.FIRST_COMPLETED
        )
        for waiter in waiters:
            waiter.cancel()
