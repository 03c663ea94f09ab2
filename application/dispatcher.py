"""The dispatcher: drains the outboxes to the Instagram Send API and to CRM endpoints.

It leases due deliveries (each the next of its conversation, so a conversation's
deliveries leave in order), sends them concurrently (a slow conversation or endpoint holds
only its own deliveries), and records what came of each: `ReplySent` / `ReplyFailed` on
the conversation, `TokenRejected` or `SendsPaused` on the account, and every CRM attempt
in the delivery's history. Delivery is at least once: a dispatcher that dies between the
HTTP call and recording its outcome leaves a lease that expires, and the delivery goes
again with the same id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from application.delivery import (
    MetaError,
    SendResult,
    backoff_ms,
    classify,
    crm_retry_delay_ms,
)
from application.ledger import Ledger
from application.ledger_writer import LedgerWriter
from application.ports import (
    ConversationWindows,
    CrmEndpoint,
    InstagramSendApi,
    Outbox,
    SecretBox,
    Settlement,
)
from application.sending import (
    crm_endpoint_gone,
    reply_failed,
    reply_sent,
    sends_paused,
    token_refresh_failed,
    token_refreshed,
    token_rejected,
)
from domain.account import Account, AccountStatus

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MAX_TEXT_BYTES = 1000
MAX_SEND_ATTEMPTS = 8
TOKEN_REFRESH_AFTER_MS = 50 * DAY_MS
"""Instagram user tokens last 60 days: refresh them after 50."""


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Bucket:
    """A token bucket: Meta allows each account about 300 text sends a second."""

    rate: float
    tokens: float
    at: float = field(default_factory=time.monotonic)

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class _Breaker:
    """A circuit breaker per CRM endpoint: after `limit` failures in a row, rest a while."""

    failures: int = 0
    open_until: int = 0


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
        clock: Callable[[], int] = now_ms,
        max_in_flight: int = 256,
        lease_ms: int = 60_000,
        sends_per_second: float = 300.0,
        breaker_limit: int = 5,
        breaker_rest_ms: int = 60_000,
    ) -> None:
        self._ledger = ledger
        self._writer = writer
        self._outbox = outbox
        self._windows = windows
        self._secrets = secrets
        self._instagram = instagram
        self._crm = crm
        self._owner = owner
        self.clock = clock
        """Milliseconds since the epoch (tests move it on)."""
        self._max_in_flight = max_in_flight
        self._lease_ms = lease_ms
        self._rate = sends_per_second
        self._breaker_limit = breaker_limit
        self._breaker_rest_ms = breaker_rest_ms
        self._in_flight: set[asyncio.Task[None]] = set()
        self._accounts: dict[str, tuple[int, Account | None]] = {}
        self._held: dict[str, int] = {}
        """Accounts whose Instagram sends wait, until (ms)."""
        self._buckets: dict[str, _Bucket] = {}
        self._breakers: dict[str, _Breaker] = {}
        self._settlements: list[tuple[Settlement, asyncio.Future[None]]] = []
        self._recorder: asyncio.Task[None] | None = None
        self.wakeup = asyncio.Event()

    # -- running ---------------------------------------------------------------------------

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
        now = self.clock()
        self._held = {a: until for a, until in self._held.items() if until > now}
        replies = await asyncio.to_thread(
            self._outbox.lease,
            "instagram",
            now=now,
            limit=room,
            owner=self._owner,
            lease_ms=self._lease_ms,
            skip_accounts=set(self._held),
        )
        notifications = await asyncio.to_thread(
            self._outbox.lease,
            "crm",
            now=now,
            limit=max(room - len(replies), 0),
            owner=self._owner,
            lease_ms=self._lease_ms,
            skip_accounts=set(),
        )
        for row in replies:
            self._start(self._send_reply(row))
        for row in notifications:
            self._start(self._deliver(row))
        return len(replies) + len(notifications)

    def _start(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def settle_in_flight(self) -> None:
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    def crm_circuit(self, url: str) -> tuple[int, int]:
        """The CRM endpoint at `url`: its failures in a row, and until when (ms) it rests.
        Each dispatcher process keeps its own count; this is this process's."""
        breaker = self._breakers.get(url)
        return (breaker.failures, breaker.open_until) if breaker is not None else (0, 0)

    async def drain(self, *, rounds: int = 50) -> None:
        """Dispatch until nothing is due now (tests, the CLI's --once)."""
        for _ in range(rounds):
            leased = await self.dispatch_due()
            await self.settle_in_flight()
            if not leased:
                return

    # -- Instagram ---------------------------------------------------------------------------

    async def _send_reply(self, row: dict[str, Any]) -> None:
        try:
            await self._send_reply_unguarded(row)
        except Exception:
            # The lease runs out and the reply goes again later.
            log.exception("sending reply %s failed in dmledger", row["delivery_id"])

    async def _send_reply_unguarded(self, row: dict[str, Any]) -> None:
        reply = json.loads(row["body"])
        ig_account_id = row["ig_account_id"]
        conversation_id = UUID(row["conversation_id"])
        reply_id = row["delivery_id"]
        now = self.clock()
        account = await self._account(ig_account_id)
        if account is None or account.status == AccountStatus.DEACTIVATED:
            await self._refuse(row, conversation_id, "the account is not served")
            return
        hold_until = self._hold_until(account, now)
        if hold_until is not None:
            self._held[ig_account_id] = hold_until
            await self._requeue(row, hold_until)
            return
        bucket = self._buckets.setdefault(ig_account_id, _Bucket(self._rate, self._rate))
        if not bucket.take():
            await self._requeue(row, now + 50)
            return
        last_inbound = await asyncio.to_thread(
            self._windows.last_inbound_at, ig_account_id, row["conversation_id"]
        )
        refusal, tag = _window(reply, last_inbound, now)
        if refusal is not None:
            await self._refuse(row, conversation_id, refusal)
            return
        result = await self._instagram.send(
            ig_account_id=ig_account_id,
            access_token=self._secrets.decrypt(account.access_token),
            recipient_id=reply["participant_id"],
            text=reply.get("text"),
            attachment=reply.get("attachment"),
            tag=tag,
        )
        await self._record_send(row, conversation_id, reply_id, account, result)

    async def _record_send(
        self,
        row: dict[str, Any],
        conversation_id: UUID,
        reply_id: str,
        account: Account,
        result: SendResult,
    ) -> None:
        now = self.clock()
        action = classify(result)
        attempt = row["attempts"]
        ig_account_id = account.ig_account_id
        if action == "sent":
            await self._writer.run(reply_sent(conversation_id, reply_id, result.message_id, now))
            await self._settle(row, "delivered", now)
            return
        if action == "retry" and attempt < MAX_SEND_ATTEMPTS:
            await self._writer.run(
                reply_failed(
                    conversation_id,
                    reply_id,
                    error_class="transient",
                    retryable=True,
                    error=result.error,
                    detail=result.detail or f"HTTP {result.status_code}",
                    attempt=attempt,
                )
            )
            await self._settle(row, "retrying", now, next_at=now + backoff_ms(attempt))
            return
        if action == "pause_account":
            until = now + (
                result.regain_access_seconds * 1000
                if result.regain_access_seconds
                else backoff_ms(attempt, base_ms=60_000)
            )
            await self._writer.run(
                sends_paused(
                    ig_account_id,
                    until=until,
                    code=_code(result.error),
                    reason="rate limited by Meta",
                )
            )
            self._held[ig_account_id] = until
            await self._requeue(row, until)
            return
        if action == "token_rejected":
            await self._writer.run(
                token_rejected(
                    ig_account_id, result.error or MetaError(190, None, result.detail), now
                )
            )
            self._forget(ig_account_id)
            self._held[ig_account_id] = now + 60_000
            await self._requeue(row, now + 60_000)
            return
        if action == "pause_alert":
            until = now + HOUR_MS
            log.error(
                "Meta refused sends of %s for lack of permission (code %s): paused for an hour",
                ig_account_id,
                _code(result.error),
            )
            await self._writer.run(
                sends_paused(
                    ig_account_id, until=until, code=_code(result.error), reason="permission"
                )
            )
            self._held[ig_account_id] = until
            await self._requeue(row, until)
            return
        error_class = "ambiguous" if action == "ambiguous" else "terminal"
        if action == "retry":
            error_class = "retries_exhausted"
        await self._writer.run(
            reply_failed(
                conversation_id,
                reply_id,
                error_class=error_class,
                retryable=False,
                error=result.error,
                detail=result.detail or f"HTTP {result.status_code}",
                attempt=attempt,
            )
        )
        await self._settle(row, "ambiguous" if action == "ambiguous" else "dead", now)

    def _hold_until(self, account: Account, now: int) -> int | None:
        if account.status == AccountStatus.SUSPENDED:
            return now + 60_000
        if account.token_rejected:
            return now + 60_000
        paused = getattr(account, "sends_paused_until", None)
        if paused is not None and paused > now:
            return int(paused)
        return None

    async def _refuse(self, row: dict[str, Any], conversation_id: UUID, reason: str) -> None:
        """Record what Meta would refuse as a failed reply, without sending it."""
        await self._writer.run(
            reply_failed(
                conversation_id,
                row["delivery_id"],
                error_class="refused",
                retryable=False,
                error=None,
                detail=reason,
                attempt=row["attempts"],
            )
        )
        await self._settle(row, "dead", self.clock())

    # -- the CRM -------------------------------------------------------------------------------

    async def _deliver(self, row: dict[str, Any]) -> None:
        try:
            await self._deliver_unguarded(row)
        except Exception:
            log.exception("delivery %s failed in dmledger", row["delivery_id"])

    async def _deliver_unguarded(self, row: dict[str, Any]) -> None:
        now = self.clock()
        account = await self._account(row["ig_account_id"])
        endpoint = account.crm_endpoint if account is not None else None
        if endpoint is None or not endpoint["enabled"]:
            attempt = {
                "at": now,
                "status_code": None,
                "latency_ms": 0,
                "error": "no CRM endpoint is set",
            }
            await self._settle(row, "dead", now, attempt=attempt)
            return
        breaker = self._breakers.setdefault(endpoint["url"], _Breaker())
        if breaker.open_until > now:
            await self._requeue(row, breaker.open_until)
            return
        result = await self._crm.deliver(
            url=endpoint["url"],
            secret=self._secrets.decrypt(endpoint["secret"]),
            delivery_id=row["delivery_id"],
            body=row["body"],
        )
        now = self.clock()
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
            await self._settle(row, "delivered", now, attempt=attempt)
            return
        if status == 410:
            await self._writer.run(
                crm_endpoint_gone(row["ig_account_id"], "the endpoint answered 410 Gone")
            )
            self._forget(row["ig_account_id"])
            await self._settle(row, "dead", now, attempt=attempt)
            return
        breaker.failures += 1
        if breaker.failures >= self._breaker_limit:
            breaker.open_until = now + self._breaker_rest_ms
            log.warning("CRM endpoint of %s keeps failing: resting it", row["ig_account_id"])
        delay = crm_retry_delay_ms(row["attempts"])
        if status in (429, 503) and result.retry_after_seconds is not None:
            delay = result.retry_after_seconds * 1000
        if delay is None:
            await self._settle(row, "dead", now, attempt=attempt)
            return
        await self._settle(row, "retrying", now, next_at=now + delay, attempt=attempt)

    # -- tokens ----------------------------------------------------------------------------------

    async def refresh_tokens(self) -> int:
        """Refresh the access tokens that are 50 days old or more; the number refreshed."""
        now = self.clock()
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
            self._forget(account.ig_account_id)
            refreshed += 1
        return refreshed

    # -- helpers ---------------------------------------------------------------------------------

    async def _account(self, ig_account_id: str) -> Account | None:
        # Read again every 2 s: credentials may be rotated by another process.
        cached = self._accounts.get(ig_account_id)
        if cached is not None and self.clock() - cached[0] < 2_000:
            return cached[1]
        account = await asyncio.to_thread(self._ledger.account, ig_account_id)
        self._accounts[ig_account_id] = (self.clock(), account)
        return account

    def _forget(self, ig_account_id: str) -> None:
        self._accounts.pop(ig_account_id, None)

    async def _settle(
        self,
        row: dict[str, Any],
        status: str,
        now: int,
        *,
        next_at: int | None = None,
        attempt: dict[str, Any] | None = None,
    ) -> None:
        await self._record(
            Settlement(
                row["delivery_id"], status=status, now=now, next_attempt_at=next_at, attempt=attempt
            )
        )

    async def _requeue(self, row: dict[str, Any], at: int) -> None:
        """Put a delivery back, without counting this as an attempt."""
        await self._record(
            Settlement(
                row["delivery_id"],
                status="pending",
                now=self.clock(),
                next_attempt_at=at,
                keep_attempt_count=True,
            )
        )

    async def _record(self, settlement: Settlement) -> None:
        """Record an outcome, together with the others that came meanwhile; return once it
        is committed (so a conversation's next delivery is leased only after it)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._settlements.append((settlement, done))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.ensure_future(self._record_batches())
        await done

    async def _record_batches(self) -> None:
        # One transaction for every outcome that arrived while the last one committed:
        # a transaction per delivery capped the dispatcher at a few hundred a second.
        while self._settlements:
            batch, self._settlements = self._settlements, []
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


def _code(error: MetaError | None) -> int | None:
    return error.code if error else None


def _window(
    reply: dict[str, Any], last_inbound: int | None, now: int
) -> tuple[str | None, str | None]:
    """A reason Meta would refuse the reply (or None), and the tag it needs."""
    text = reply.get("text") or ""
    if len(text.encode()) > MAX_TEXT_BYTES:
        return (
            f"the text is {len(text.encode())} bytes of UTF-8; Meta takes at most {MAX_TEXT_BYTES}",
            None,
        )
    if last_inbound is None:
        return "the participant has never written: there is no window to reply in", None
    elapsed = now - last_inbound
    if reply.get("automated"):
        if elapsed > DAY_MS:
            return (
                "an automated reply more than 24 hours after the participant's last message",
                None,
            )
        return None, None
    if elapsed > 7 * DAY_MS:
        return "more than 7 days after the participant's last message", None
    return None, "HUMAN_AGENT" if elapsed > DAY_MS else None
