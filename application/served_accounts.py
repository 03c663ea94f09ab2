"""The accounts the dispatcher sends for, read from the ledger and kept for two seconds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from application.ledger import Ledger
from domain.account import Account

FRESH_FOR_MS = 2_000
"""Credentials may be rotated by another process: read an account again after this."""


class ServedAccounts:
    """A short-lived cache of accounts, shared by the dispatcher's senders."""

    def __init__(self, ledger: Ledger, now: Callable[[], int]) -> None:
        self._ledger = ledger
        self._now = now
        self._accounts: dict[str, tuple[int, Account | None]] = {}

    async def get(self, ig_account_id: str, *, fresh: bool = False) -> Account | None:
        """The account as stored at most `FRESH_FOR_MS` ago (now, if `fresh`), or None
        if there is none."""
        cached = self._accounts.get(ig_account_id)
        if not fresh and cached is not None and self._now() - cached[0] < FRESH_FOR_MS:
            return cached[1]
        account = await asyncio.to_thread(self._ledger.account, ig_account_id)
        self._accounts[ig_account_id] = (self._now(), account)
        return account

    def forget(self, ig_account_id: str) -> None:
        """Read the account again next time (it changed: a token, an endpoint)."""
        self._accounts.pop(ig_account_id, None)
