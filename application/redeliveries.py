"""Sending CRM deliveries again, on request, with a record of who asked for what.

Each request is recorded on the account (`Account.DeliveriesRedelivered`: by, the ids or
the time since which, at) before the deliveries become due again, so the audit stream
shows every redelivery that may have happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from application.errors import NotFound
from application.ledger_writer import Changes, LedgerWriter
from application.ports import Outbox
from domain.account import Account
from domain.identity import account_id


class Redeliveries:
    """Use cases: redeliver one CRM delivery, or every one since a time."""

    def __init__(self, writer: LedgerWriter, outbox: Outbox, now: Callable[[], int]) -> None:
        self._writer = writer
        self._outbox = outbox
        self._now = now

    async def one(self, ig_account_id: str, delivery_id: str, *, by: str) -> int:
        """Deliver `delivery_id` again, with the same `webhook-id`; NotFound if the account
        has no such delivery."""
        found = await asyncio.to_thread(self._outbox.delivery, ig_account_id, delivery_id)
        if found is None:
            raise NotFound(f"there is no delivery {delivery_id}")
        await self._record(ig_account_id, by=by, delivery_ids=[delivery_id], since=None)
        return await asyncio.to_thread(
            self._outbox.redeliver, ig_account_id, delivery_id=delivery_id, now=self._now()
        )

    async def since(self, ig_account_id: str, since_ms: int, *, by: str) -> int:
        """Deliver every CRM delivery made since `since_ms` again; how many."""
        await self._record(ig_account_id, by=by, delivery_ids=[], since=since_ms)
        return await asyncio.to_thread(
            self._outbox.redeliver, ig_account_id, since_ms=since_ms, now=self._now()
        )

    async def _record(
        self, ig_account_id: str, *, by: str, delivery_ids: list[str], since: int | None
    ) -> None:
        def record(changes: Changes) -> None:
            account = changes.get(account_id(ig_account_id), Account, fresh=True)
            if account is None:
                raise NotFound(f"there is no Instagram account {ig_account_id}")
            account.redeliver(by=by, delivery_ids=delivery_ids, since=since)

        await self._writer.run(record)
