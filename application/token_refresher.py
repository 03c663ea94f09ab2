"""Refreshing the accounts' Instagram user tokens before they expire."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from application.delivery import MetaError
from application.ledger import Ledger
from application.ledger_writer import LedgerWriter
from application.ports import InstagramSendApi, Metrics, SecretBox
from application.reply_windows import DAY_MS
from application.sending import token_refresh_failed, token_refreshed
from application.served_accounts import ServedAccounts
from domain.account import AccountStatus

log = logging.getLogger(__name__)

TOKEN_REFRESH_AFTER_MS = 50 * DAY_MS
"""Instagram user tokens last 60 days: refresh them after 50."""


class TokenRefresher:
    """Refreshes the access tokens of active accounts that are 50 days old or more."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        writer: LedgerWriter,
        secrets: SecretBox,
        instagram: InstagramSendApi,
        accounts: ServedAccounts,
        now: Callable[[], int],
        metrics: Metrics,
    ) -> None:
        self._ledger = ledger
        self._metrics = metrics
        self._writer = writer
        self._secrets = secrets
        self._instagram = instagram
        self._accounts = accounts
        self._now = now

    async def refresh(self) -> int:
        """Refresh each token due (`TokenRefreshed`, or `TokenRefreshFailed` with Meta's
        message); the number refreshed."""
        now = self._now()
        refreshed = 0
        for account in await asyncio.to_thread(self._ledger.accounts):
            if account.status != AccountStatus.ACTIVE or account.token_rejected:
                continue
            since = account.rotated_at.get("access_token") or int(
                account.created_on.timestamp() * 1000
            )
            if now - since < TOKEN_REFRESH_AFTER_MS:
                continue
            answer = await self._instagram.refresh_token(
                self._secrets.decrypt(account.access_token)
            )
            if isinstance(answer, MetaError):
                self._metrics.token_refreshed(account.ig_account_id, "failed")
                log.warning(
                    "could not refresh the token of %s: %s", account.ig_account_id, answer.message
                )
                await self._writer.run(
                    token_refresh_failed(account.ig_account_id, answer.message, now)
                )
                continue
            token, _ = answer
            await self._writer.run(
                token_refreshed(account.ig_account_id, self._secrets.encrypt(token), now)
            )
            self._accounts.forget(account.ig_account_id)
            self._metrics.token_refreshed(account.ig_account_id, "refreshed")
            refreshed += 1
        return refreshed
