"""Retention: the content of an account's messages older than `content_retention_days`
is destroyed (its data keys), one `Account.ContentExpired` a run naming how many.

Run hourly by `serve` and `dispatch` (`interfaces/dispatching.py`). An account without
the setting (the default) keeps its content.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from application.ledger import Ledger
from application.ledger_writer import Changes, LedgerWriter
from application.reply_windows import DAY_MS
from domain.account import Account
from domain.identity import account_id

log = logging.getLogger(__name__)


class ContentRetention:
    """Destroys each account's content older than its retention (see the module)."""

    def __init__(self, ledger: Ledger, writer: LedgerWriter, now: Callable[[], int]) -> None:
        self._ledger = ledger
        self._writer = writer
        self._now = now

    async def expire(self) -> int:
        """One run over every account; how many data keys it destroyed."""
        destroyed = 0
        for account in await asyncio.to_thread(self._ledger.accounts):
            days = account.settings.get("content_retention_days")
            if not days:
                continue
            try:
                destroyed += await self.expire_account(account.ig_account_id, int(days))
            except Exception:
                # One account's failure never stops the others' retention.
                log.exception(
                    "retention of %s failed; trying again next run", account.ig_account_id
                )
        return destroyed

    async def expire_account(self, ig_account_id: str, days: int) -> int:
        """Destroy the account's content recorded more than `days` ago; how many keys."""
        vault = self._ledger.vault
        if vault is None:
            return 0
        before = self._now() - days * DAY_MS
        conversations = await asyncio.to_thread(self._ledger.conversation_ids, ig_account_id)
        commenters = await asyncio.to_thread(self._ledger.commenter_conversation_ids, ig_account_id)
        ids = [str(i) for i in dict.fromkeys([*conversations, *commenters])]
        counts = await asyncio.to_thread(vault.keys.key_counts, ids, before)
        if not counts:
            return 0
        destroyed = sum(counts.values())

        def record(changes: Changes) -> None:
            account = changes.get(account_id(ig_account_id), Account)
            if account is not None:
                account.expire_content(
                    before=before,
                    conversation_ids=sorted(counts),
                    destroyed=destroyed,
                    by="retention",
                )

        await self._writer.run(record)
        log.info("retention destroyed %d data keys of %s", destroyed, ig_account_id)
        return destroyed
