"""Recording what came of each delivery in the outbox, many outcomes per transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from application.ports import DeliveryStatus, LeasedDelivery, Outbox, Settlement


class Settlements:
    """Settles deliveries in the outbox: those that arrive while one transaction commits
    go together in the next (a transaction per delivery capped the dispatcher at a few
    hundred a second). Each caller returns once its outcome is committed, so that a
    conversation's next delivery is leased only after it."""

    def __init__(self, outbox: Outbox, now: Callable[[], int]) -> None:
        self._outbox = outbox
        self._now = now
        self._waiting: list[tuple[Settlement, asyncio.Future[None]]] = []
        self._recorder: asyncio.Task[None] | None = None

    async def settle(
        self,
        row: LeasedDelivery,
        status: DeliveryStatus,
        now: int,
        *,
        next_at: int | None = None,
        attempt: dict[str, Any] | None = None,
        endpoint_healthy: bool = False,
    ) -> None:
        """Record an attempt: delivered, retrying (at `next_at`), dead or ambiguous;
        `endpoint_healthy` brings the account's waiting retries forward to now."""
        await self.record(
            Settlement(
                row.delivery_id,
                status=status,
                now=now,
                next_attempt_at=next_at,
                attempt=attempt,
                endpoint_healthy=endpoint_healthy,
            )
        )

    async def requeue(self, row: LeasedDelivery, at: int) -> None:
        """Put a delivery back for `at`, without counting this as an attempt."""
        await self.record(
            Settlement(
                row.delivery_id,
                status=DeliveryStatus.PENDING,
                now=self._now(),
                next_attempt_at=at,
                keep_attempt_count=True,
            )
        )

    async def record(self, settlement: Settlement) -> None:
        """Record an outcome with the others that came meanwhile; return once committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((settlement, done))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.ensure_future(self._record_batches())
        await done

    async def _record_batches(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                await asyncio.to_thread(self._outbox.settle_many, [s for s, _ in batch])
            except asyncio.CancelledError:
                for _, done in batch:
                    done.cancel()
                raise
            except BaseException as error:
                # Every waiter gets what happened, whatever it is: a waiter left waiting
                # would hold its delivery (and its conversation) in flight for ever.
                for _, done in batch:
                    if not done.done():
                        done.set_exception(error)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
