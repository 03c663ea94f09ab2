"""httpx's async clients belong to the event loop that made them: closing them there.

An `httpx.AsyncClient`'s connections are transports of the loop it was first used in, and
only that loop can close them. The dispatcher's clients are closed in its loop when it stops
(`Services.close_connections`); `Services.close()`, called outside any loop, closes what is
still open through `close_from_outside`."""

from __future__ import annotations

import asyncio
import contextlib

import httpx

CLOSE_SECONDS = 5.0


def close_from_outside(client: httpx.AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
    """Close `client`, made in `loop`, from synchronous code."""
    if client.is_closed:
        return
    if loop.is_running():
        if _runs_here(loop):
            # Called by code of the loop itself, which cannot wait here: closed soon, there.
            task = loop.create_task(client.aclose())
            _closing.add(task)
            task.add_done_callback(_closing.discard)
        else:
            asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(CLOSE_SECONDS)
    elif not loop.is_closed():
        loop.run_until_complete(client.aclose())
    else:
        # The loop has ended: its transports can no longer be closed. httpx marks the
        # client closed (and refuses it from now on); the sockets go with the process.
        spare = asyncio.new_event_loop()
        try:
            with contextlib.suppress(RuntimeError):
                spare.run_until_complete(client.aclose())
        finally:
            spare.close()


_closing: set[asyncio.Task[None]] = set()


def _runs_here(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
