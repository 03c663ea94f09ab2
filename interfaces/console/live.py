"""Server-sent events for an open thread, fed by the projections.

The message history and conversation list tell their listeners when a batch committed
(`SqlView.on_applied`, in the process whose runners apply it). Each open stream then reads
its thread's rows and says `changed` if they differ from what it last saw; the page fetches
the new rows. When the runners live in another process (`serve --no-projections`), nothing
announces batches here, so the stream also looks every `POLL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable

import msgspec
from litestar.response import ServerSentEventMessage

from projections.registry import ReadModels

POLL_SECONDS = 3.0
STREAM_SECONDS = 30.0
"""A stream ends after this long and the browser opens another (EventSource reconnects by
itself): a server that is shutting down waits for open responses, so none lives long."""

ThreadRows = Callable[[], object]


class Announcements:
    """Wakes the streams of this process when a read model they show has new rows."""

    def __init__(self, read_models: ReadModels) -> None:
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        read_models.message_history.on_applied(self._announce)
        read_models.conversation_list.on_applied(self._announce)

    def _announce(self) -> None:
        # Called in a runner's thread.
        for loop, event in list(self._waiters):
            loop.call_soon_threadsafe(event.set)

    async def changes(
        self, rows: ThreadRows, *, shown: str | None = None
    ) -> AsyncIterator[ServerSentEventMessage]:
        """`changed` each time what `rows()` returns differs, for `STREAM_SECONDS`.

        `shown` is the fingerprint of the rows the page was rendered with: what changed
        between the page and this stream's start is news too.
        """
        woken = asyncio.Event()
        waiter = (asyncio.get_running_loop(), woken)
        self._waiters.add(waiter)
        try:
            seen = await fingerprint(rows)
            yield ServerSentEventMessage(comment="following", retry=1000)
            if shown is not None and shown != seen:
                yield ServerSentEventMessage(event="changed", data="")
            deadline = time.monotonic() + STREAM_SECONDS
            while (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), timeout=min(POLL_SECONDS, left))
                woken.clear()
                now = await fingerprint(rows)
                if now != seen:
                    seen = now
                    yield ServerSentEventMessage(event="changed", data="")
        finally:
            self._waiters.discard(waiter)


async def fingerprint(rows: ThreadRows) -> str:
    """A digest of what `rows()` returns (read in a worker thread)."""
    return digest(await asyncio.to_thread(rows))


def digest(found: object) -> str:
    return hashlib.sha256(msgspec.json.encode(found)).hexdigest()[:32]
