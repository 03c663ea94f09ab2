"""Sending one reply to the Instagram Send API, and recording what came of it.

Before a reply goes, the account must be served and not held (suspended, its token
rejected, its sends paused), its send rate must have room (Meta allows 300 sends a second
per account, 10 of audio or video: `SendLimits`, counted in the database, shared by every
dispatcher process), and Meta must be willing to take it (see
`application.reply_windows`). A reusable attachment's URL is uploaded once per account
(`/message_attachments`) and sent by the id Meta gave it (`ReusableAttachments`).
Meta's answer is classified (`application.delivery`: `error_class`, then the `ACTIONS`
table) and each action has its handler here, in `InstagramSender._outcomes`:
`ReplySent` / `ReplyFailed` on the conversation, `TokenRejected` or `SendsPaused` on the
account, and the delivery settled or put back. A private reply to a comment
(`_send_private_reply`) goes through the same holds, rate and handlers, with its own
deadline and Meta's hourly limit instead of the reply window: over 300 lines so that
every send's path reads in one place.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from uuid import UUID

from application.delivery import (
    ACTIONS,
    Action,
    MetaError,
    MetaErrorClass,
    SendResult,
    backoff_ms,
    classify,
    error_class,
)
from application.ledger_writer import LedgerWriter
from application.ports import (
    ConversationWindows,
    DeliveryStatus,
    InstagramSendApi,
    LeasedDelivery,
    Metrics,
    PrivateReplyCounts,
    ReusableAttachments,
    SecretBox,
    SendLimits,
)
from application.reply_messages import (
    AttachmentReply,
    ReplyMessage,
    is_message,
    meta_fields,
    of_event,
    send_class,
)
from application.reply_windows import HOUR_MS, window
from application.sending import reply_failed, reply_sent, sends_paused, token_rejected
from application.served_accounts import ServedAccounts
from application.settlements import Settlements
from domain.account import Account, AccountStatus

log = logging.getLogger(__name__)

MAX_SEND_ATTEMPTS = 8
HOLD_MS = 60_000
"""How long a suspended account, or one whose token was rejected, waits between checks."""
PRIVATE_REPLIES_PER_HOUR = 750
"""Meta's limit on private replies to comments, per account and hour. Counted in the
delivery queue (`PrivateReplyCounts`), which every dispatcher shares: a reply with that
many ahead of it sent (or being sent) in the last hour waits `HOLD_MS` and is counted again."""


@dataclass(frozen=True)
class _Answer:
    """One reply and what the Send API answered to it."""

    row: LeasedDelivery
    conversation_id: UUID
    account: Account
    result: SendResult

    @property
    def reply_id(self) -> str:
        return self.row.delivery_id

    @property
    def attempt(self) -> int:
        return self.row.attempts

    @property
    def code(self) -> int | None:
        return self.result.error.code if self.result.error else None

    @property
    def detail(self) -> str:
        return self.result.detail or f"HTTP {self.result.status_code}"


class InstagramSender:
    """Sends replies for every account, holding back the accounts that must wait."""

    def __init__(
        self,
        *,
        writer: LedgerWriter,
        accounts: ServedAccounts,
        windows: ConversationWindows,
        secrets: SecretBox,
        instagram: InstagramSendApi,
        settlements: Settlements,
        now: Callable[[], int],
        limits: SendLimits,
        attachments: ReusableAttachments,
        metrics: Metrics,
        counts: PrivateReplyCounts,
    ) -> None:
        self._writer = writer
        self._counts = counts
        self._metrics = metrics
        self._accounts = accounts
        self._windows = windows
        self._secrets = secrets
        self._instagram = instagram
        self._settlements = settlements
        self._now = now
        self._limits = limits
        self._attachments = attachments
        self._held: dict[str, int] = {}
        """Accounts whose sends wait, until (ms)."""
        self._outcomes: dict[Action, Callable[[_Answer], Awaitable[None]]] = {
            Action.SENT: self._sent,
            Action.RETRY: self._retry,
            Action.PAUSE_ACCOUNT: self._pause_account,
            Action.TOKEN_REJECTED: self._token_rejected,
            Action.PAUSE_ALERT: self._pause_for_permission,
            Action.TERMINAL: self._fail,
            Action.AMBIGUOUS: self._fail,
        }

    def held_accounts(self, now: int) -> set[str]:
        """The accounts whose replies must not be leased now."""
        self._held = {a: until for a, until in self._held.items() if until > now}
        return set(self._held)

    async def send(self, row: LeasedDelivery) -> None:
        """Send one leased reply and record the outcome; a failure of ours leaves the
        lease to run out, and the reply goes again later."""
        try:
            await self._send(row)
        except Exception:
            log.exception("sending reply %s failed in dmledger", row.delivery_id)

    async def _send(self, row: LeasedDelivery) -> None:
        reply = json.loads(row.body)
        ig_account_id = row.ig_account_id
        conversation_id = UUID(row.conversation_id)
        now = self._now()
        if row.body_erased or reply.get("erased"):
            await self._refuse(row, conversation_id, "its content was erased")
            return
        account = await self._accounts.get(ig_account_id)
        if account is None or account.status == AccountStatus.DEACTIVATED:
            await self._refuse(row, conversation_id, "the account is not served")
            return
        hold_until = _hold_until(account, now)
        if hold_until is not None:
            self._held[ig_account_id] = hold_until
            await self._settlements.requeue(row, hold_until)
            return
        message = of_event(reply.get("text"), reply.get("attachment"), reply.get("message"))
        taken = await asyncio.to_thread(self._limits.take, ig_account_id, send_class(message), now)
        if not taken:
            await self._settlements.requeue(row, (now // 1000 + 1) * 1000)
            return
        comment = reply.get("comment")
        if comment:
            await self._send_private_reply(row, conversation_id, account, reply, comment)
            return
        last_inbound = await asyncio.to_thread(
            self._windows.last_inbound_at, ig_account_id, row.conversation_id
        )
        refusal, tag = window(reply, last_inbound, now, message=is_message(message))
        if refusal is not None:
            await self._refuse(row, conversation_id, refusal)
            return
        access_token = self._secrets.decrypt(account.access_token)
        started = time.perf_counter()
        fields = await self._fields(ig_account_id, access_token, message, now)
        if isinstance(fields, SendResult):
            result = fields  # the upload failed: its answer decides, as a send's would
        else:
            result = await self._instagram.send(
                ig_account_id=ig_account_id,
                access_token=access_token,
                recipient_id=reply["participant_id"],
                text=None,
                attachment=None,
                tag=tag,
                message=fields,
            )
        kind = error_class(result)
        self._metrics.send_answered(ig_account_id, kind.value, time.perf_counter() - started)
        answer = _Answer(row, conversation_id, account, result)
        await self._outcomes[ACTIONS[kind]](answer)

    async def _fields(
        self, ig_account_id: str, access_token: str, message: ReplyMessage, now: int
    ) -> dict[str, Any] | SendResult:
        """The request's fields of `message`; a reusable attachment's URL is sent by its
        attachment id, uploaded first if the account has none for it."""
        if not (isinstance(message, AttachmentReply) and message.reusable and message.url):
            return meta_fields(message)
        url, media_type = message.url, message.media_type
        known = await asyncio.to_thread(
            self._attachments.attachment_id, ig_account_id, url, media_type, now
        )
        if known is None:
            uploaded = await self._instagram.upload_attachment(
                ig_account_id=ig_account_id,
                access_token=access_token,
                media_type=media_type,
                url=url,
            )
            if isinstance(uploaded, SendResult):
                return uploaded
            await asyncio.to_thread(
                self._attachments.remember, ig_account_id, url, media_type, uploaded, now
            )
            known = uploaded
        return meta_fields(message, attachment_id=known)

    async def _send_private_reply(
        self,
        row: LeasedDelivery,
        conversation_id: UUID,
        account: Account,
        reply: dict[str, Any],
        comment: dict[str, Any],
    ) -> None:
        """The one private reply to a comment (claimed on its media), within Meta's
        deadline and hourly limit; then the public reply to the comment, if the rule has one."""
        now = self._now()
        ig_account_id = account.ig_account_id
        if now > comment["deadline"]:
            await self._refuse(
                row,
                conversation_id,
                "a private reply after the live broadcast"
                if comment.get("live")
                else "a private reply more than 7 days after the comment",
            )
            return
        ahead = await asyncio.to_thread(
            partial(
                self._counts.private_replies_counted,
                ig_account_id,
                before_position=row.position,
                since=now - HOUR_MS,
            )
        )
        if ahead >= PRIVATE_REPLIES_PER_HOUR:
            await self._settlements.requeue(row, now + HOLD_MS)
            return
        token = self._secrets.decrypt(account.access_token)
        started = time.perf_counter()
        result = await self._instagram.send_private_reply(
            ig_account_id=ig_account_id,
            access_token=token,
            comment_id=comment["comment_id"],
            text=reply.get("text") or "",
        )
        kind = error_class(result)
        self._metrics.send_answered(ig_account_id, kind.value, time.perf_counter() - started)
        await self._outcomes[ACTIONS[kind]](_Answer(row, conversation_id, account, result))
        public = comment.get("public_reply")
        if kind == MetaErrorClass.SENT and public:
            # Best effort, once: the private reply is what the rule promised.
            answer = await self._instagram.reply_to_comment(
                access_token=token, comment_id=comment["comment_id"], text=public
            )
            if error_class(answer) != MetaErrorClass.SENT:
                log.warning(
                    "the public reply to comment %s of %s was not taken: %s",
                    comment["comment_id"],
                    ig_account_id,
                    answer.detail or answer.status_code,
                )

    # -- one handler per `Action` -------------------------------------------------------------

    async def _sent(self, answer: _Answer) -> None:
        now = self._now()
        await self._writer.run(
            reply_sent(answer.conversation_id, answer.reply_id, answer.result.message_id, now)
        )
        await self._settlements.settle(answer.row, DeliveryStatus.DELIVERED, now)

    async def _retry(self, answer: _Answer) -> None:
        if answer.attempt >= MAX_SEND_ATTEMPTS:
            await self._fail(answer, error_class="retries_exhausted")
            return
        now = self._now()
        await self._writer.run(
            reply_failed(
                answer.conversation_id,
                answer.reply_id,
                error_class="transient",
                retryable=True,
                error=answer.result.error,
                detail=answer.detail,
                attempt=answer.attempt,
            )
        )
        await self._settlements.settle(
            answer.row, DeliveryStatus.RETRYING, now, next_at=now + backoff_ms(answer.attempt)
        )

    async def _pause_account(self, answer: _Answer) -> None:
        seconds = answer.result.regain_access_seconds
        until = self._now() + (
            seconds * 1000 if seconds else backoff_ms(answer.attempt, base_ms=60_000)
        )
        await self._pause(answer, until, reason="rate limited by Meta")

    async def _pause_for_permission(self, answer: _Answer) -> None:
        log.error(
            "Meta refused sends of %s for lack of permission (code %s): paused for an hour",
            answer.account.ig_account_id,
            answer.code,
        )
        await self._pause(answer, self._now() + HOUR_MS, reason="permission")

    async def _pause(self, answer: _Answer, until: int, *, reason: str) -> None:
        ig_account_id = answer.account.ig_account_id
        await self._writer.run(
            sends_paused(ig_account_id, until=until, code=answer.code, reason=reason)
        )
        self._held[ig_account_id] = until
        await self._settlements.requeue(answer.row, until)

    async def _token_rejected(self, answer: _Answer) -> None:
        now = self._now()
        ig_account_id = answer.account.ig_account_id
        result = answer.result
        await self._writer.run(
            token_rejected(ig_account_id, result.error or MetaError(190, None, result.detail), now)
        )
        self._accounts.forget(ig_account_id)
        self._held[ig_account_id] = now + HOLD_MS
        await self._settlements.requeue(answer.row, now + HOLD_MS)

    async def _fail(self, answer: _Answer, *, error_class: str | None = None) -> None:
        """A final `ReplyFailed`: terminal, ambiguous (it may have gone: never again), or
        retries exhausted."""
        now = self._now()
        ambiguous = classify(answer.result) == Action.AMBIGUOUS
        await self._writer.run(
            reply_failed(
                answer.conversation_id,
                answer.reply_id,
                error_class=error_class or ("ambiguous" if ambiguous else "terminal"),
                retryable=False,
                error=answer.result.error,
                detail=answer.detail,
                attempt=answer.attempt,
            )
        )
        await self._settlements.settle(
            answer.row, DeliveryStatus.AMBIGUOUS if ambiguous else DeliveryStatus.DEAD, now
        )

    async def _refuse(self, row: LeasedDelivery, conversation_id: UUID, reason: str) -> None:
        """Record what Meta would refuse as a failed reply, without sending it."""
        await self._writer.run(
            reply_failed(
                conversation_id,
                row.delivery_id,
                error_class="refused",
                retryable=False,
                error=None,
                detail=reason,
                attempt=row.attempts,
            )
        )
        await self._settlements.settle(row, DeliveryStatus.DEAD, self._now())


def _hold_until(account: Account, now: int) -> int | None:
    """Until when the account's sends wait, or None if they may go."""
    if account.status == AccountStatus.SUSPENDED or account.token_rejected:
        return now + HOLD_MS
    paused = getattr(account, "sends_paused_until", None)
    if paused is not None and paused > now:
        return int(paused)
    return None
