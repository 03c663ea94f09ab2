"""What the application needs from the outside world; `infrastructure/` implements these.

Over 300 lines: every port in one module, so that what the application asks of the outside
reads as one list, each with the value types that cross it (`LeasedDelivery`, ...)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from eventsourcing.persistence import Notification

from application.delivery import DeliveryResult, MetaError, SendResult


@runtime_checkable  # Litestar checks what it injects into a handler with isinstance
class Clock(Protocol):
    """The time now: the one source of it for every use case, read model and handler
    (`infrastructure.clock.SystemClock`; tests pass a clock they move on)."""

    def now_ms(self) -> int:
        """Milliseconds since the epoch."""
        ...


class SecretBox(Protocol):
    """Encrypts credentials before they go into an event, and decrypts them for use."""

    def encrypt(self, plaintext: str) -> str:
        """Return a ciphertext of `plaintext` under the newest key."""
        ...

    def decrypt(self, ciphertext: str) -> str:
        """Return the plaintext of a ciphertext made under any configured key."""
        ...


class KeyUsage(Protocol):
    """When each API key was last used: telemetry, kept outside the event log."""

    def touch(self, key_id: str, at: datetime) -> None:
        """Note that the key was used at `at`."""
        ...

    def last_used(self, key_ids: Iterable[str]) -> dict[str, datetime]:
        """The last use of each key that has been used."""
        ...


PROFILE_FIELDS = (
    "name",
    "username",
    "profile_pic",
    "follower_count",
    "is_user_follow_business",
    "is_business_follow_user",
    "is_verified_user",
)
"""What Meta's user profile API is asked of a participant (its own field names)."""


class ParticipantProfiles(Protocol):
    """Meta's user profile API: what it says of a participant who messaged the account."""

    def lookup(self, access_token: str, participant_id: str) -> dict[str, Any] | MetaError | None:
        """The participant's `PROFILE_FIELDS` that Meta gave (as Meta named and typed
        them); Meta's error when it refused to say (no consent, blocked, unknown); None
        when it could not be asked now (no connection, a 5xx, a throttle, the token)."""
        ...


@dataclass(frozen=True)
class HistoryPage:
    """One page of Meta's Conversations API, newest first."""

    items: list[dict[str, Any]]
    """As Meta gave them: conversations (`id`, `updated_time`) or messages (`id`,
    `created_time`, `from`, `to`, `message`, `attachments`)."""
    after: str | None
    """The cursor of the next page; None after the last."""


class HistoryUnavailable(Exception):
    """Meta's Conversations API did not answer with a page (its error, or no answer)."""


class ConversationHistory(Protocol):
    """Meta's Conversations API: an account's existing conversations and their messages."""

    def conversations(self, access_token: str, *, after: str | None) -> HistoryPage:
        """A page of the account's Instagram conversations (`/me/conversations`)."""
        ...

    def messages(
        self, access_token: str, conversation_id: str, *, after: str | None
    ) -> HistoryPage:
        """A page of one conversation's messages, each with its details."""
        ...


class InstagramSendApi(Protocol):
    """Meta's Send API for Instagram, and the refresh of Instagram user tokens."""

    async def send(
        self,
        *,
        ig_account_id: str,
        access_token: str,
        recipient_id: str,
        text: str | None,
        attachment: dict[str, str] | None,
        tag: str | None,
        message: dict[str, Any] | None = None,
    ) -> SendResult:
        """POST /{ig_account_id}/messages. `message`: the request's fields beside
        `recipient` (`application.reply_messages.meta_fields`), in place of `text` and
        `attachment`."""
        ...

    async def upload_attachment(
        self, *, ig_account_id: str, access_token: str, media_type: str, url: str
    ) -> str | SendResult:
        """POST /{ig_account_id}/message_attachments with `is_reusable`: the attachment id,
        or what Meta answered instead."""
        ...

    async def refresh_token(self, access_token: str) -> tuple[str, int] | MetaError:
        """A new long-lived token and its lifetime in seconds, or Meta's error."""
        ...

    async def send_private_reply(
        self, *, ig_account_id: str, access_token: str, comment_id: str, text: str
    ) -> SendResult:
        """POST /{ig_account_id}/messages with `recipient: {comment_id}`: the one private
        reply Meta takes for a comment."""
        ...

    async def reply_to_comment(
        self, *, access_token: str, comment_id: str, text: str
    ) -> SendResult:
        """POST /{comment_id}/replies: a public answer to a comment (`message_id` is the
        new comment's id)."""
        ...


@dataclass(frozen=True)
class ProfileAnswer:
    """What Meta said to a change of the account's `messenger_profile`."""

    applied: bool
    """Meta answered `{"result": "success"}`."""
    error: MetaError | None = None
    status_code: int | None = None
    """None: no answer (the connection failed or timed out)."""


@runtime_checkable  # the composition root asks whether a Send API stand-in serves it too
class MessengerProfileApi(Protocol):
    """Meta's Messenger Profile API for Instagram: the account's ice breakers and
    persistent menu. Each call sets (or deletes) whole fields: pushing again is harmless."""

    async def set_messenger_profile(
        self, *, ig_account_id: str, access_token: str, body: dict[str, Any]
    ) -> ProfileAnswer:
        """POST /{ig_account_id}/messenger_profile with `body`."""
        ...

    async def delete_messenger_profile(
        self, *, ig_account_id: str, access_token: str, fields: list[str]
    ) -> ProfileAnswer:
        """DELETE /{ig_account_id}/messenger_profile of these fields."""
        ...


class SendLimits(Protocol):
    """Meta's per-account send rates, shared by every dispatcher process."""

    def take(self, ig_account_id: str, send_class: str, now_ms: int) -> bool:
        """Count one send of the account's `send_class` (`text`, `media`) at `now_ms`;
        whether it is within the rate and may go now."""
        ...


class ReusableAttachments(Protocol):
    """The attachment id Meta gave each account's uploaded URL."""

    def attachment_id(
        self, ig_account_id: str, url: str, media_type: str, now_ms: int
    ) -> str | None:
        """The id of the URL uploaded before, if it is still good."""
        ...

    def remember(
        self, ig_account_id: str, url: str, media_type: str, attachment_id: str, now_ms: int
    ) -> None: ...


class CrmEndpoint(Protocol):
    """An account's CRM webhook endpoint."""

    async def deliver(
        self, *, url: str, secret: str, delivery_id: str, body: str
    ) -> DeliveryResult:
        """POST one signed delivery (Standard Webhooks)."""
        ...


class DeliveryStatus(StrEnum):
    """Where a delivery stands in the dispatcher's queue (stored as its value)."""

    PENDING = "pending"
    """Due at its `next_attempt_at`; not tried yet, or put back without counting."""
    SENDING = "sending"
    """Leased by a dispatcher until its lease runs out."""
    RETRYING = "retrying"
    """An attempt failed; the next is due at `next_attempt_at`."""
    DELIVERED = "delivered"
    DEAD = "dead"
    """Failed for good (refused, or after its last attempt)."""
    AMBIGUOUS = "ambiguous"
    """A reply whose send got no answer: it may have gone, so it never goes again."""


@dataclass(frozen=True)
class LeasedDelivery:
    """A delivery a dispatcher has taken for a while (`Outbox.lease`)."""

    delivery_id: str
    channel: str
    """"instagram" (a reply) or "crm" (a notification)."""
    ig_account_id: str
    conversation_id: str
    kind: str
    body: str
    """The reply, or the CRM's payload, as JSON."""
    position: int
    created_at: int
    attempts: int
    """The number of this attempt (1 for the first)."""
    history: list[dict[str, Any]]
    """Earlier attempts at a CRM delivery."""
    content_key: str | None = None
    """The data key of the content it carries, if any (`application.destroyed_content`)."""
    body_erased: bool = False
    """A reply whose content was destroyed since it was queued: it is not sent."""


@dataclass(frozen=True)
class Settlement:
    """How one attempt at a delivery went (see `Outbox.settle`)."""

    delivery_id: str
    status: DeliveryStatus
    now: int
    next_attempt_at: int | None = None
    attempt: dict[str, Any] | None = None
    keep_attempt_count: bool = False
    endpoint_healthy: bool = False
    """The delivery got through: its account's other deliveries on the same channel that
    wait for a retry are due now (the endpoint is healthy again)."""


class PrivateReplyCounts(Protocol):
    """Private replies to comments counted against Meta's hourly limit, by every dispatcher."""

    def private_replies_counted(
        self, ig_account_id: str, *, before_position: int, since: int
    ) -> int:
        """The account's private replies ahead of `before_position` in the outbox that were
        sent, or leased to be sent, since `since` (ms)."""
        ...


class Outbox(PrivateReplyCounts, Protocol):
    """The outboxes' rows and the dispatcher's state of each delivery."""

    def lease(
        self,
        channel: str,
        *,
        now: int,
        limit: int,
        owner: str,
        lease_ms: int,
        skip_accounts: set[str],
    ) -> list[LeasedDelivery]:
        """Take due deliveries for a while: each the next of its conversation."""
        ...

    def settle(
        self,
        delivery_id: str,
        *,
        status: DeliveryStatus,
        now: int,
        next_attempt_at: int | None = None,
        attempt: dict[str, Any] | None = None,
        keep_attempt_count: bool = False,
    ) -> None:
        """Record how an attempt went."""
        ...

    def settle_many(self, settlements: Sequence[Settlement]) -> None:
        """Record how several attempts went, together."""
        ...

    def delivery(self, ig_account_id: str, delivery_id: str) -> dict[str, Any] | None:
        """One delivery of the account, with its state; None if it has no such delivery."""
        ...

    def redeliver(
        self,
        ig_account_id: str,
        *,
        delivery_id: str | None = None,
        since_ms: int | None = None,
        now: int,
    ) -> int:
        """Make CRM deliveries due again (one, or every one made since a time, finished
        ones included); the number of deliveries."""
        ...


class ConversationWindows(Protocol):
    """When a participant last wrote (Meta's time, ms): the reply windows start there."""

    def last_inbound_at(self, ig_account_id: str, conversation_id: str) -> int | None:
        """None if the participant never wrote."""
        ...


class UnreadableContent(Exception):
    """Sealed content that its data key does not open (a wrong key, or altered bytes)."""


class ContentCipher(Protocol):
    """Seals a message's content under a data key of its own, wrapped by the secret keys."""

    def new_key(self) -> tuple[bytes, str]:
        """A fresh data key, and the same key wrapped (encrypted) under the newest secret key."""
        ...

    def seal(self, key: bytes, plaintext: bytes, context: bytes) -> bytes:
        """`plaintext` encrypted and authenticated under `key`, bound to `context`."""
        ...

    def open(self, wrapped_key: str, sealed: bytes, context: bytes) -> bytes:
        """The plaintext of `sealed`; raises `UnreadableContent` if it does not open."""
        ...

    def rewrap(self, wrapped_key: str) -> str:
        """The same data key wrapped under the newest secret key."""
        ...


class ContentKeyStore(Protocol):
    """The table of data keys beside the events (written in the events' transactions)."""

    def wrapped_keys(self, key_ids: Sequence[str]) -> dict[str, str]:
        """The wrapped data key of each of these ids that still exists, in one query."""
        ...

    def key_counts(
        self, conversation_ids: Sequence[str], before_ms: int | None = None
    ) -> dict[str, int]:
        """How many data keys each of these conversations has (recorded before
        `before_ms`); conversations without any are left out."""
        ...

    def rewrap_keys(self, rewrap: Callable[[str], str]) -> int:
        """Wrap every data key again with `rewrap`; how many there were."""
        ...


class Metrics(Protocol):
    """What the use cases report for an operator's metrics (counts and durations only).

    The use cases call it where something happened; `infrastructure.prometheus_metrics`
    turns the calls into Prometheus families. Ids passed here are the Instagram account's
    at most (never a conversation's or a participant's); whether they become a label is
    the implementation's choice (`DMLEDGER_METRICS_ACCOUNT_LABELS`).
    """

    def batch_committed(self, *, commands: int, events: int, seconds: float) -> None:
        """The ledger writer committed one transaction of `commands` holding `events`."""
        ...

    def version_conflict(self) -> None:
        """The event store refused a batch: another process changed one of its aggregates."""
        ...

    def batch_rerun(self, reason: str) -> None:
        """Commands of a batch run again (`conflict`, `crashed`: a command failed, or
        `recorded`: the store knew a key a conversation had forgotten)."""
        ...

    def send_answered(self, ig_account_id: str, error_class: str, seconds: float) -> None:
        """The Send API answered a reply (or did not): `MetaErrorClass` of the answer."""
        ...

    def crm_answered(self, ig_account_id: str, status_code: int | None, seconds: float) -> None:
        """A CRM endpoint answered a delivery with `status_code` (None: no answer)."""
        ...

    def token_refreshed(self, ig_account_id: str, outcome: str) -> None:
        """A token refresh was tried: `refreshed` or `failed`."""
        ...


class NoMetrics:
    """The `Metrics` of a process that keeps none (tests, one-shot CLI commands)."""

    def batch_committed(self, *, commands: int, events: int, seconds: float) -> None:
        pass

    def version_conflict(self) -> None:
        pass

    def batch_rerun(self, reason: str) -> None:
        pass

    def send_answered(self, ig_account_id: str, error_class: str, seconds: float) -> None:
        pass

    def crm_answered(self, ig_account_id: str, status_code: int | None, seconds: float) -> None:
        pass

    def token_refreshed(self, ig_account_id: str, outcome: str) -> None:
        pass


@runtime_checkable
class AccountIndex(Protocol):
    """Each account's events by position, kept by the ledger's store beside the log.

    The store writes an event's row in the transaction that stores the event, from the
    `owners` the ledger gives with the events that create aggregates (`Ledger.record`)."""

    def account_index_built(self) -> bool:
        """Whether every event of the log is in the index (a log stored before the index
        existed is not, until `build_account_index`)."""
        ...

    def select_account_notifications(
        self, account_id: UUID, start: int, stop: int, limit: int, topics: Sequence[str] = ()
    ) -> Sequence[Notification]:
        """The account's notifications from `start` to `stop` (both included), in log
        order, at most `limit`, of `topics` only if some are given."""
        ...

    def account_aggregates(self, account_id: UUID) -> set[UUID]:
        """The aggregates the account owns (itself and its conversations)."""
        ...

    def build_account_index(self, owners: Mapping[UUID, UUID]) -> None:
        """Index the whole log, given the owner of every owned aggregate in it."""
        ...
