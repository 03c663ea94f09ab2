"""Delivering one notification to an account's CRM endpoint, and recording the attempt.

Every attempt goes into the delivery's history. A 2xx delivers it, and the account's
other deliveries waiting for a retry go at once (the endpoint is healthy again: a
conversation is not held for hours behind one failed delivery). A 410 disables the
endpoint (`CrmEndpointDisabled`) and the delivery is dead. Anything else is retried on the
schedule (`DMLEDGER_CRM_RETRY_SCHEDULE`), or after the endpoint's `Retry-After` on a 429
or 503 (up to an hour), until the schedule runs out. An endpoint that fails
`breaker_limit` times in a row rests for `breaker_rest_ms`: its deliveries wait
meanwhile, without an attempt.

A delivery is never given up for want of an endpoint: while the account has none, or it
is disabled, its deliveries are held (put back without an attempt) and go, in order, once
an endpoint is set again. The cache of accounts is read again before holding, so a fresh
endpoint is never missed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from application.delivery import CRM_RETRY_SCHEDULE_SECONDS, DeliveryResult, crm_retry_delay_ms
from application.ledger_writer import LedgerWriter
from application.ports import CrmEndpoint, DeliveryStatus, LeasedDelivery, Metrics, SecretBox
from application.sending import crm_endpoint_gone
from application.served_accounts import ServedAccounts
from application.settlements import Settlements
from domain.account_values import AccountCrmEndpoint

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_SECONDS = 3_600
"""The longest an endpoint's `Retry-After` delays an attempt."""

HOLD_MS = 10_000
"""How long the deliveries of an account without an enabled endpoint wait before the
endpoint is read again."""


@dataclass
class _Breaker:
    """A circuit breaker per CRM endpoint: after `limit` failures in a row, rest a while."""

    failures: int = 0
    open_until: int = 0


class CrmDeliverer:
    """Delivers CRM notifications for every account."""

    def __init__(
        self,
        *,
        writer: LedgerWriter,
        accounts: ServedAccounts,
        secrets: SecretBox,
        crm: CrmEndpoint,
        settlements: Settlements,
        now: Callable[[], int],
        breaker_limit: int,
        breaker_rest_ms: int,
        retry_schedule: Sequence[int] = CRM_RETRY_SCHEDULE_SECONDS[1:],
        metrics: Metrics,
    ) -> None:
        """`retry_schedule`: the seconds before each retry (the ladder)."""
        self._writer = writer
        self._metrics = metrics
        self._accounts = accounts
        self._secrets = secrets
        self._crm = crm
        self._settlements = settlements
        self._now = now
        self._breaker_limit = breaker_limit
        self._breaker_rest_ms = breaker_rest_ms
        self._schedule = (0, *retry_schedule)
        self._breakers: dict[str, _Breaker] = {}
        self._held: dict[str, int] = {}

    def held_accounts(self, now: int) -> set[str]:
        """The accounts whose deliveries wait for an endpoint: not leased meanwhile."""
        for ig_account_id, until in list(self._held.items()):
            if until <= now:
                del self._held[ig_account_id]
        return set(self._held)

    def circuit(self, url: str) -> tuple[int, int]:
        """The endpoint at `url`: its failures in a row, and until when (ms) it rests."""
        breaker = self._breakers.get(url)
        return (breaker.failures, breaker.open_until) if breaker is not None else (0, 0)

    async def deliver(self, row: LeasedDelivery) -> None:
        """Deliver one leased notification and record the attempt; a failure of ours
        leaves the lease to run out, and the delivery goes again later."""
        try:
            await self._deliver(row)
        except Exception:
            log.exception("delivery %s failed in dmledger", row.delivery_id)

    async def _deliver(self, row: LeasedDelivery) -> None:
        now = self._now()
        endpoint = await self._endpoint(row.ig_account_id)
        if endpoint is None:
            self._held[row.ig_account_id] = now + HOLD_MS
            await self._settlements.requeue(row, now + HOLD_MS)
            return
        breaker = self._breakers.setdefault(endpoint.url, _Breaker())
        if breaker.open_until > now:
            await self._settlements.requeue(row, breaker.open_until)
            return
        result = await self._crm.deliver(
            url=endpoint.url,
            secret=self._secrets.decrypt(endpoint.secret),
            delivery_id=row.delivery_id,
            body=row.body,
        )
        self._metrics.crm_answered(row.ig_account_id, result.status_code, result.latency_ms / 1000)
        await self._record(row, breaker, result)

    async def _endpoint(self, ig_account_id: str) -> AccountCrmEndpoint | None:
        """The account's enabled endpoint, or None; a cached "none" is read again, so an
        endpoint set a moment ago is found."""
        for fresh in (False, True):
            account = await self._accounts.get(ig_account_id, fresh=fresh)
            endpoint = account.crm_endpoint if account is not None else None
            if endpoint is not None and endpoint.enabled:
                return endpoint
        return None

    async def _record(self, row: LeasedDelivery, breaker: _Breaker, result: DeliveryResult) -> None:
        now = self._now()
        attempt = {
            "at": now,
            "status_code": result.status_code,
            "latency_ms": result.latency_ms,
            "error": result.error,
            "response": result.response,
        }
        status = result.status_code or 0
        if 200 <= status < 300:
            breaker.failures = 0
            # The endpoint is healthy: conversations held behind a failed head go now.
            await self._settlements.settle(
                row, DeliveryStatus.DELIVERED, now, attempt=attempt, endpoint_healthy=True
            )
            return
        if status == 410:
            await self._writer.run(
                crm_endpoint_gone(row.ig_account_id, "the endpoint answered 410 Gone")
            )
            self._accounts.forget(row.ig_account_id)
            await self._settlements.settle(row, DeliveryStatus.DEAD, now, attempt=attempt)
            return
        breaker.failures += 1
        if breaker.failures >= self._breaker_limit:
            breaker.open_until = now + self._breaker_rest_ms
            log.warning("CRM endpoint of %s keeps failing: resting it", row.ig_account_id)
        delay = retry_delay_ms(row.attempts, result, self._schedule)
        if delay is None:
            await self._settlements.settle(row, DeliveryStatus.DEAD, now, attempt=attempt)
            return
        await self._settlements.settle(
            row, DeliveryStatus.RETRYING, now, next_at=now + delay, attempt=attempt
        )


def retry_delay_ms(
    attempt: int,
    result: DeliveryResult,
    schedule: Sequence[int] = CRM_RETRY_SCHEDULE_SECONDS,
) -> int | None:
    """The wait before the next attempt after a failed `attempt`-th, or None when the
    schedule has run out. A 429 or 503 with `Retry-After` waits as long as it says, up to
    `MAX_RETRY_AFTER_SECONDS`; it never adds an attempt to the schedule."""
    delay = crm_retry_delay_ms(attempt, schedule)
    if delay is None:
        return None
    if result.status_code in (429, 503) and result.retry_after_seconds is not None:
        delay = min(result.retry_after_seconds, MAX_RETRY_AFTER_SECONDS) * 1000
    return delay
