"""The dispatcher: drains the outboxes to the Instagram Send API and to CRM endpoints.

It leases due deliveries from the `Outbox` port (each the next of its conversation, so a
conversation's deliveries leave in order), and hands each to its sender, concurrently (a
slow conversation or endpoint holds only its own deliveries):

- `application.instagram_sender`: replies, and what Meta's answer means;
- `application.crm_deliverer`: the CRM's signed notifications, retries, circuit breakers;
- `application.token_refresher`: the access tokens, before they expire;
- `application.entry_point_pusher`: the accounts' ice breakers and persistent menus, to
  Meta's `messenger_profile` (polled, not leased: see its docstring).

They share `application.served_accounts` (accounts read from the ledger, kept briefly)
and `application.settlements` (outcomes recorded in the outbox in batches). Delivery is at
least once: a dispatcher that dies between the HTTP call and recording its outcome leaves
a lease that expires, and the delivery goes again with the same id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import Any

from application.crm_deliverer import CrmDeliverer
from application.delivery import CRM_RETRY_SCHEDULE_SECONDS
from application.destroyed_content import without_destroyed_content
from application.entry_point_pusher import EntryPointPusher
from application.instagram_sender import InstagramSender
from application.ledger import Ledger
from application.ledger_writer import LedgerWriter
from application.ports import (
    Clock,
    ConversationWindows,
    CrmEndpoint,
    InstagramSendApi,
    MessengerProfileApi,
    Metrics,
    NoMetrics,
    Outbox,
    ReusableAttachments,
    SecretBox,
    SendLimits,
)
from application.served_accounts import ServedAccounts
from application.settlements import Settlements
from application.token_refresher import TokenRefresher

log = logging.getLogger(__name__)


class Dispatcher:
    """Sends what the outboxes hold."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        writer: LedgerWriter,
        outbox: Outbox,
        windows: ConversationWindows,
        secrets: SecretBox,
        instagram: InstagramSendApi,
        crm: CrmEndpoint,
        owner: str,
        clock: Clock,
        max_in_flight: int = 256,
        lease_ms: int = 60_000,
        limits: SendLimits,
        attachments: ReusableAttachments,
        breaker_limit: int = 5,
        breaker_rest_ms: int = 60_000,
        crm_retry_schedule: Sequence[int] = CRM_RETRY_SCHEDULE_SECONDS[1:],
        metrics: Metrics | None = None,
        messenger_profile: MessengerProfileApi | None = None,
    ) -> None:
        metrics = metrics or NoMetrics()
        self._outbox = outbox
        self._ledger = ledger
        self._owner = owner
        self._clock = clock
        self._max_in_flight = max_in_flight
        self._lease_ms = lease_ms
        self._in_flight: set[asyncio.Task[None]] = set()
        self.wakeup = asyncio.Event()
        now = clock.now_ms
        accounts = ServedAccounts(ledger, now)
        settlements = Settlements(outbox, now)
        self.instagram = InstagramSender(
            writer=writer,
            accounts=accounts,
            windows=windows,
            secrets=secrets,
            instagram=instagram,
            settlements=settlements,
            now=now,
            limits=limits,
            attachments=attachments,
            metrics=metrics,
            counts=outbox,
        )
        self.crm = CrmDeliverer(
            writer=writer,
            accounts=accounts,
            secrets=secrets,
            crm=crm,
            settlements=settlements,
            now=now,
            breaker_limit=breaker_limit,
            breaker_rest_ms=breaker_rest_ms,
            retry_schedule=crm_retry_schedule,
            metrics=metrics,
        )
        self.tokens = TokenRefresher(
            ledger=ledger,
            writer=writer,
            secrets=secrets,
            instagram=instagram,
            accounts=accounts,
            now=now,
            metrics=metrics,
        )
        self.entry_points = EntryPointPusher(
            ledger=ledger, writer=writer, secrets=secrets, api=messenger_profile, now=now
        )

    async def run(self, stop: asyncio.Event, *, poll_seconds: float = 1.0) -> None:
        """Dispatch until `stop` is set; woken by `wakeup`, else polls."""
        while not stop.is_set():
            try:
                leased = await self.dispatch_due()
            except Exception:
                log.exception("the dispatcher could not lease deliveries; retrying")
                leased = 0
            if leased:
                continue
            self.wakeup.clear()
            waiters: set[asyncio.Future[Any]] = {
                asyncio.ensure_future(self.wakeup.wait()),
                asyncio.ensure_future(stop.wait()),
            }
            # A delivery that finishes makes room, and may free its conversation's next one.
            await asyncio.wait(
                waiters | set(self._in_flight),
                timeout=poll_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for waiter in waiters:
                waiter.cancel()
        await self.settle_in_flight()

    async def dispatch_due(self) -> int:
        """Lease what is due and start sending it; the number leased."""
        room = self._max_in_flight - len(self._in_flight)
        if room <= 0 or (self._in_flight and room < self._max_in_flight // 4):
            # Each lease reads the queue's heads whatever it takes: take many at once.
            return 0
        now = self._clock.now_ms()
        replies = await asyncio.to_thread(
            self._outbox.lease,
            "instagram",
            now=now,
            limit=room,
            owner=self._owner,
            lease_ms=self._lease_ms,
            skip_accounts=self.instagram.held_accounts(now),
        )
        notifications = await asyncio.to_thread(
            self._outbox.lease,
            "crm",
            now=now,
            limit=max(room - len(replies), 0),
            owner=self._owner,
            lease_ms=self._lease_ms,
            skip_accounts=self.crm.held_accounts(now),
        )
        if replies or notifications:
            # Content destroyed since these were queued does not leave with them.
            vault = self._ledger.vault
            leased = await asyncio.to_thread(
                without_destroyed_content,
                vault.keys if vault is not None else None,
                [*replies, *notifications],
            )
            replies, notifications = leased[: len(replies)], leased[len(replies) :]
        for row in replies:
            self._start(self.instagram.send(row))
        for row in notifications:
            self._start(self.crm.deliver(row))
        return len(replies) + len(notifications)

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def settle_in_flight(self) -> None:
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    def crm_circuit(self, url: str) -> tuple[int, int]:
        """The CRM endpoint at `url`: its failures in a row, and until when (ms) it rests.
        Each dispatcher process keeps its own count; this is this process's."""
        return self.crm.circuit(url)

    async def drain(self, *, rounds: int = 50) -> None:
        """Dispatch until nothing is due now (tests, the CLI's --once)."""
        for _ in range(rounds):
            leased = await self.dispatch_due()
            await self.settle_in_flight()
            if not leased:
                return

    async def refresh_tokens(self) -> int:
        """Refresh the access tokens that are 50 days old or more; the number refreshed."""
        return await self.tokens.refresh()

    async def push_entry_points(self) -> int:
        """Push the ice breakers and persistent menus changed since they were last applied
        (or due for another try); the number pushed."""
        return await self.entry_points.push_due()
