"""The `Conversation` aggregate: one Instagram DM thread between an account and a participant.

Every thing that can happen in a thread is its own event. Command methods check for
redelivery (Meta retries for up to 36 hours and does not promise order) and return
whether something new was recorded; the private `@event` methods only assign state,
so replaying the log never raises.

Fields that Meta sends as structured objects (attachments, `reply_to`, referrals) are
kept verbatim as Meta sent them, so an auditor sees exactly what arrived, including
fields Meta adds after this code was written.

Over 300 lines on purpose: one aggregate per module, and each thing that
can happen in a thread is a command method beside the `@event` method that records it,
with its stored topic above. Split across modules, the events an aggregate records would
no longer read in one place; the pure helpers are in `domain/identity.py`.

The events the read models read are declared as classes, with typed fields, just above
the `@event` method that records them (the library's way: `@event(MessageReceived)`); the
method's parameters repeat the fields, since the library calls it with the event's
fields, and mypy checks each command's call against them. A field added later goes
into both, with a default, which an event stored before it reads
(`tests/unit/test_declared_events.py` fails until the class and the method agree). The
projections' handlers take these classes (`Conversation.MessageReceived`); the library
makes a subclass of each, so `isinstance` holds and the stored topic is the class's
`TOPIC`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from itertools import islice
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.identity import conversation_id
from domain.recorded_keys import RECENT_KEYS, OlderKeys, OlderKeysUnknown

JSONObject = dict[str, Any]

# The stored topic of each conversation event: part of the stored schema, never to change.
STARTED = "dmledger:Conversation.Started"
MESSAGE_RECEIVED = "dmledger:Conversation.MessageReceived"
MESSAGE_ECHOED = "dmledger:Conversation.MessageEchoed"
MESSAGE_UNSENT = "dmledger:Conversation.MessageUnsent"
MESSAGE_EDITED = "dmledger:Conversation.MessageEdited"
REACTION_ADDED = "dmledger:Conversation.ReactionAdded"
REACTION_REMOVED = "dmledger:Conversation.ReactionRemoved"
MESSAGES_SEEN = "dmledger:Conversation.MessagesSeen"
POSTBACK_RECEIVED = "dmledger:Conversation.PostbackReceived"
REFERRAL_RECEIVED = "dmledger:Conversation.ReferralReceived"
UNRECOGNISED_ITEM_RECEIVED = "dmledger:Conversation.UnrecognisedItemReceived"
ARCHIVED = "dmledger:Conversation.Archived"
REOPENED = "dmledger:Conversation.Reopened"
BLOCKED = "dmledger:Conversation.Blocked"
MARKED_READ = "dmledger:Conversation.MarkedRead"
REPLY_QUEUED = "dmledger:Conversation.ReplyQueued"
AUTO_REPLY_SKIPPED = "dmledger:Conversation.AutoReplySkipped"
AUTOMATION_PAUSED = "dmledger:Conversation.AutomationPaused"
AUTOMATION_RESUMED = "dmledger:Conversation.AutomationResumed"
PARTICIPANT_PROFILE_RECORDED = "dmledger:Conversation.ParticipantProfileRecorded"
PARTICIPANT_PROFILE_REFUSED = "dmledger:Conversation.ParticipantProfileRefused"
REPLY_SENT = "dmledger:Conversation.ReplySent"
REPLY_FAILED = "dmledger:Conversation.ReplyFailed"
PARTICIPANT_ERASED = "dmledger:Conversation.ParticipantErased"
THREAD_CONTROL_CHANGED = "dmledger:Conversation.ThreadControlChanged"

HANDOVER_ACTIONS = ("pass", "take", "release", "request")
"""Meta's `messaging_handover` items: `pass_thread_control` (control passed to us),
`take_thread_control` (taken from us), `release_thread_control` (back to the primary
receiver), `request_thread_control` (another app asks us for it; nothing changes)."""


class Status(StrEnum):
    """Where the business has filed a conversation."""

    ACTIVE = "active"
    ARCHIVED = "archived"
    BLOCKED = "blocked"


class ReplyStatus(StrEnum):
    """Where one of our replies stands, as its conversation's events say."""

    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class Reply:
    """One of our replies, as the conversation knows it (`Conversation.reply`)."""

    reply_id: str
    status: ReplyStatus
    automated: bool
    message_id: str | None
    """Meta's id of the message, once sent."""


PROFILE_REFRESH_MS = 7 * 24 * 3_600_000
"""A participant's profile is looked up again at the first message after this long."""


def _digest(text: str) -> str:
    """What identifies a text (a reply's in its echo, a postback's payload in a key)
    without keeping the text itself."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Conversation(Aggregate):
    """The thread between one Instagram account and one participant (an IGSID)."""

    TOPIC = "dmledger:Conversation"

    class Event(Aggregate.Event):
        """Base of every conversation event."""

        TOPIC = "dmledger:Conversation.Event"

    class Created(Event, Aggregate.Created):
        """Base of the conversation's creation event."""

        TOPIC = "dmledger:Conversation.Created"

    @staticmethod
    def create_id(ig_account_id: str, participant_id: str, **_: Any) -> UUID:
        """Conversations are identified by the account and the participant."""
        return conversation_id(ig_account_id, participant_id)

    class Started(Created):
        """The conversation's first event: whose thread it is."""

        TOPIC = STARTED
        ig_account_id: str
        participant_id: str

    @event(Started)
    def __init__(self, ig_account_id: str, participant_id: str) -> None:
        self.ig_account_id = ig_account_id
        self.participant_id = participant_id
        # The most recent keys recorded (`RECENT_KEYS`), by what identifies them (see the
        # command methods); a message's value is Meta's time of it (None for what was
        # recorded before). A dict rather than a set: it keeps insertion order (the
        # oldest is forgotten first) and transcodes as JSON.
        self.recorded: dict[str, int | None] = {}
        self.status = Status.ACTIVE
        self.inbound_count = 0
        self.last_inbound_at: int | None = None
        self.automation_paused_at: int | None = None
        """When a person took over (ms), or None while automation may act."""
        self.auto_replied_at: dict[str, int] = {}
        """The trigger time (ms) of the latest automated reply of each rule ("" = fallback)."""
        self.first_inbound_key: str | None = None
        """The record key of the participant's first message or postback."""
        self.replies: dict[str, dict[str, Any]] = {}
        """Our replies by id: `state` (a `ReplyStatus`), `message_id` once sent. Kept as
        dicts (snapshots store them so); read one as a `Reply` with `reply`."""
        self.requests: dict[str, dict[str, Any]] = {}
        """CRM reply requests by idempotency key: the reply's id and the request's hash."""
        self.sent_message_ids: dict[str, str] = {}
        """Meta's message id of each reply sent, to the reply's id (echoes name them)."""

    forgotten: int = 0
    """How many of its keys `recorded` no longer holds (the oldest, past `RECENT_KEYS`).
    A class default: a snapshot taken before keys were forgotten holds every key."""

    older_keys: OlderKeys | None = None
    """The store's answers about forgotten keys, given by the ledger writer (never stored:
    `domain.recorded_keys`)."""

    def has_recorded(self, key: str) -> bool:
        """Whether the thing identified by `key` is already in this conversation."""
        return self._lookup(key)[0]

    def recorded_at(self, key: str) -> int | None:
        """The value recorded with `key` (Meta's time of a message), or None."""
        return self._lookup(key)[1]

    def _lookup(self, key: str) -> tuple[bool, int | None]:
        if key in self.recorded:
            return True, self.recorded[key]
        if not self.forgotten:
            return False, None
        if self.older_keys is None:
            raise OlderKeysUnknown(f"{key!r} may be among the {self.forgotten} forgotten keys")
        return self.older_keys.lookup(key)

    def _remember(self, key: str, value: int | None) -> None:
        """Record `key`, forgetting the oldest keys past `RECENT_KEYS` (the store has them)."""
        self.recorded[key] = value
        excess = len(self.recorded) - RECENT_KEYS
        if excess <= 0:
            return
        older = self.older_keys
        for oldest in list(islice(self.recorded, excess)):
            forgotten = self.recorded.pop(oldest)
            if older is not None:
                # Not in the store until this batch commits: known here meanwhile.
                older.found[oldest] = forgotten
        self.forgotten += excess

    # -- what the participant sends ---------------------------------------------------

    def receive_message(
        self,
        *,
        mid: str,
        sent_at: int,
        text: str | None = None,
        attachments: list[JSONObject] | None = None,
        reply_to: JSONObject | None = None,
        quick_reply: JSONObject | None = None,
        referral: JSONObject | None = None,
        unsupported: bool = False,
        standby: bool = False,
        extra: JSONObject | None = None,
        backfilled: bool = False,
        notify_crm: bool = True,
    ) -> bool:
        """Record a message the participant sent; `sent_at` is Meta's timestamp in ms.

        `backfilled`: read from Meta's Conversations API, not delivered by a webhook (history:
        no automation acts on it, and the CRM is told only if `notify_crm`)."""
        key = f"message:{mid}"
        if self.has_recorded(key):
            return False
        if self.was_unsent(mid):
            # Meta does not keep order: its unsend came first, so its content is not kept.
            text, attachments, reply_to, quick_reply, referral, extra = (None,) * 6
        self._message_received(
            key=key,
            mid=mid,
            sent_at=sent_at,
            text=text,
            attachments=attachments or [],
            reply_to=reply_to,
            quick_reply=quick_reply,
            referral=referral,
            unsupported=unsupported,
            standby=standby,
            extra=extra or {},
            backfilled=backfilled,
            notify_crm=notify_crm,
        )
        return True

    class MessageReceived(Event):
        """A message the participant sent: what projections and the CRM read of it."""

        TOPIC = MESSAGE_RECEIVED
        key: str
        mid: str
        sent_at: int
        text: str | None
        attachments: list[JSONObject]
        reply_to: JSONObject | None
        quick_reply: JSONObject | None
        referral: JSONObject | None
        unsupported: bool
        standby: bool
        extra: JSONObject
        backfilled: bool = False
        notify_crm: bool = True

    @event(MessageReceived)
    def _message_received(
        self,
        key: str,
        mid: str,
        sent_at: int,
        text: str | None,
        attachments: list[JSONObject],
        reply_to: JSONObject | None,
        quick_reply: JSONObject | None,
        referral: JSONObject | None,
        unsupported: bool,
        standby: bool,
        extra: JSONObject,
        backfilled: bool = False,
        notify_crm: bool = True,
    ) -> None:
        self._remember(key, sent_at)
        self._inbound(key, sent_at)

    def _inbound(self, key: str, sent_at: int) -> None:
        if self.first_inbound_key is None:
            self.first_inbound_key = key
        self.inbound_count += 1
        if self.last_inbound_at is None or sent_at > self.last_inbound_at:
            self.last_inbound_at = sent_at

    def record_echo(
        self,
        *,
        mid: str,
        sent_at: int,
        text: str | None = None,
        attachments: list[JSONObject] | None = None,
        reply_to: JSONObject | None = None,
        app_id: str | None = None,
        standby: bool = False,
        extra: JSONObject | None = None,
        backfilled: bool = False,
        notify_crm: bool = True,
    ) -> bool:
        """Record Meta's echo of a message the business account sent (or, `backfilled`,
        a message it sent read from the Conversations API: see `receive_message`)."""
        key = f"message:{mid}"
        if self.has_recorded(key):
            return False
        if self.was_unsent(mid):
            text, attachments, reply_to, extra = None, None, None, None
        self._message_echoed(
            key=key,
            mid=mid,
            sent_at=sent_at,
            text=text,
            attachments=attachments or [],
            reply_to=reply_to,
            app_id=app_id,
            standby=standby,
            extra=extra or {},
            backfilled=backfilled,
            notify_crm=notify_crm,
        )
        return True

    class MessageEchoed(Event):
        """Meta's echo of a message the business account sent (ours, or from the app)."""

        TOPIC = MESSAGE_ECHOED
        key: str
        mid: str
        sent_at: int
        text: str | None
        attachments: list[JSONObject]
        reply_to: JSONObject | None
        app_id: str | None
        standby: bool
        extra: JSONObject
        backfilled: bool = False
        notify_crm: bool = True

    @event(MessageEchoed)
    def _message_echoed(
        self,
        key: str,
        mid: str,
        sent_at: int,
        text: str | None,
        attachments: list[JSONObject],
        reply_to: JSONObject | None,
        app_id: str | None,
        standby: bool,
        extra: JSONObject,
        backfilled: bool = False,
        notify_crm: bool = True,
    ) -> None:
        self._remember(key, sent_at)

    def was_unsent(self, mid: str) -> bool:
        """Whether the message `mid` has been unsent (its content is not to be kept)."""
        return self.has_recorded(f"unsent:{mid}")

    def unsend(self, *, mid: str, unsent_at: int, standby: bool = False) -> bool:
        """Record that the participant unsent (deleted) a message: its content (and its
        edits') is destroyed with this event (see `domain.content`)."""
        key = f"unsent:{mid}"
        if self.has_recorded(key):
            return False
        self._message_unsent(
            key=key,
            mid=mid,
            unsent_at=unsent_at,
            standby=standby,
            sent_at=self.recorded_at(f"message:{mid}"),
        )
        return True

    class MessageUnsent(Event):
        """The participant unsent a message; its content (and its edits') is destroyed."""

        TOPIC = MESSAGE_UNSENT
        key: str
        mid: str
        unsent_at: int
        standby: bool
        sent_at: int | None = None

    @event(MessageUnsent)
    def _message_unsent(
        self, key: str, mid: str, unsent_at: int, standby: bool, sent_at: int | None = None
    ) -> None:
        """`sent_at`: Meta's time of the unsent message, if it had arrived (and was
        recorded since this field exists), so a conversation's preview can tell it was
        the last message."""
        self._remember(key, None)

    def edit_message(
        self, *, mid: str, text: str | None, edit_count: int, edited_at: int, standby: bool = False
    ) -> bool:
        """Record that the participant edited a message (Meta's `num_edit` is `edit_count`)."""
        key = f"edit:{mid}:{edit_count}"
        if self.has_recorded(key):
            return False
        if self.was_unsent(mid):
            text = None
        self._message_edited(
            key=key, mid=mid, text=text, edit_count=edit_count, edited_at=edited_at, standby=standby
        )
        return True

    class MessageEdited(Event):
        """The participant edited a message."""

        TOPIC = MESSAGE_EDITED
        key: str
        mid: str
        text: str | None
        edit_count: int
        edited_at: int
        standby: bool

    @event(MessageEdited)
    def _message_edited(
        self, key: str, mid: str, text: str | None, edit_count: int, edited_at: int, standby: bool
    ) -> None:
        self._remember(key, None)

    def add_reaction(
        self,
        *,
        mid: str,
        sender_id: str,
        reaction: str | None,
        emoji: str | None,
        reacted_at: int,
        standby: bool = False,
    ) -> bool:
        """Record a reaction to a message."""
        key = f"react:{mid}:{sender_id}:{reaction}:{emoji}:{reacted_at}"
        if self.has_recorded(key):
            return False
        self._reaction_added(
            key=key,
            mid=mid,
            sender_id=sender_id,
            reaction=reaction,
            emoji=emoji,
            reacted_at=reacted_at,
            standby=standby,
        )
        return True

    class ReactionAdded(Event):
        """A reaction to a message."""

        TOPIC = REACTION_ADDED
        key: str
        mid: str
        sender_id: str
        reaction: str | None
        emoji: str | None
        reacted_at: int
        standby: bool

    @event(ReactionAdded)
    def _reaction_added(
        self,
        key: str,
        mid: str,
        sender_id: str,
        reaction: str | None,
        emoji: str | None,
        reacted_at: int,
        standby: bool,
    ) -> None:
        self._remember(key, None)

    def remove_reaction(
        self,
        *,
        mid: str,
        sender_id: str,
        reaction: str | None,
        emoji: str | None,
        removed_at: int,
        standby: bool = False,
    ) -> bool:
        """Record that a reaction to a message was taken back."""
        key = f"unreact:{mid}:{sender_id}:{reaction}:{emoji}:{removed_at}"
        if self.has_recorded(key):
            return False
        self._reaction_removed(
            key=key,
            mid=mid,
            sender_id=sender_id,
            reaction=reaction,
            emoji=emoji,
            removed_at=removed_at,
            standby=standby,
        )
        return True

    class ReactionRemoved(Event):
        """A reaction taken back."""

        TOPIC = REACTION_REMOVED
        key: str
        mid: str
        sender_id: str
        reaction: str | None
        emoji: str | None
        removed_at: int
        standby: bool

    @event(ReactionRemoved)
    def _reaction_removed(
        self,
        key: str,
        mid: str,
        sender_id: str,
        reaction: str | None,
        emoji: str | None,
        removed_at: int,
        standby: bool,
    ) -> None:
        self._remember(key, None)

    def mark_seen(self, *, mid: str | None, seen_at: int, standby: bool = False) -> bool:
        """Record that the participant read the thread up to the message `mid`."""
        key = f"seen:{mid}:{seen_at}"
        if self.has_recorded(key):
            return False
        self._messages_seen(key=key, mid=mid, seen_at=seen_at, standby=standby)
        return True

    class MessagesSeen(Event):
        """The participant read the thread up to `mid`."""

        TOPIC = MESSAGES_SEEN
        key: str
        mid: str | None
        seen_at: int
        standby: bool

    @event(MessagesSeen)
    def _messages_seen(self, key: str, mid: str | None, seen_at: int, standby: bool) -> None:
        self._remember(key, None)

    def receive_postback(
        self,
        *,
        mid: str | None,
        title: str | None,
        payload: str | None,
        sent_at: int,
        standby: bool = False,
    ) -> bool:
        """Record a tap on an icebreaker or a button (a postback)."""
        # Without a mid, the tap is known by its payload and time: by a digest of the payload,
        # since the key outlives the content (in the log and in snapshots). An older release
        # kept the payload itself in the key: a redelivery under that key is known too.
        key = f"postback:{mid}" if mid else f"postback:{_digest(payload or '')}:{sent_at}"
        if self.has_recorded(key) or (
            not mid and self.has_recorded(f"postback:{payload}:{sent_at}")
        ):
            return False
        self._postback_received(
            key=key, mid=mid, title=title, payload=payload, sent_at=sent_at, standby=standby
        )
        return True

    class PostbackReceived(Event):
        """A tap on an icebreaker or a button."""

        TOPIC = POSTBACK_RECEIVED
        key: str
        mid: str | None
        title: str | None
        payload: str | None
        sent_at: int
        standby: bool

    @event(PostbackReceived)
    def _postback_received(
        self,
        key: str,
        mid: str | None,
        title: str | None,
        payload: str | None,
        sent_at: int,
        standby: bool,
    ) -> None:
        self._remember(key, None)
        self._inbound(key, sent_at)

    def receive_referral(
        self, *, referral: JSONObject, sent_at: int, standby: bool = False
    ) -> bool:
        """Record that the participant arrived through an ad or an ig.me link."""
        older = f"referral:{referral.get('ref')}:{referral.get('source')}:{sent_at}"
        key = f"referral:{_digest(older)}"  # the ref is content (see `receive_postback`)
        if self.has_recorded(key) or self.has_recorded(older):
            return False
        self._referral_received(key=key, referral=referral, sent_at=sent_at, standby=standby)
        return True

    class ReferralReceived(Event):
        """The participant arrived through an ad or an ig.me link."""

        TOPIC = REFERRAL_RECEIVED
        key: str
        referral: JSONObject
        sent_at: int
        standby: bool

    @event(ReferralReceived)
    def _referral_received(
        self, key: str, referral: JSONObject, sent_at: int, standby: bool
    ) -> None:
        self._remember(key, None)

    def record_unrecognised(
        self, *, item: JSONObject, fingerprint: str, sent_at: int | None, standby: bool = False
    ) -> bool:
        """Keep a messaging item of a kind this code does not know, verbatim.

        `fingerprint` identifies the item (a digest of its canonical form), so a
        redelivered unknown item is stored once too.
        """
        key = f"unrecognised:{fingerprint}"
        if self.has_recorded(key):
            return False
        self._unrecognised_item_received(key=key, item=item, sent_at=sent_at, standby=standby)
        return True

    @event("UnrecognisedItemReceived", topic=UNRECOGNISED_ITEM_RECEIVED)
    def _unrecognised_item_received(
        self, key: str, item: JSONObject, sent_at: int | None, standby: bool
    ) -> None:
        self._remember(key, None)

    # -- what the business does with the conversation ---------------------------------

    def archive(self, *, by: str) -> bool:
        """File the conversation away; a new message does not reopen it by itself."""
        if self.status == Status.ARCHIVED:
            return False
        self._archived(by=by)
        return True

    class Archived(Event):
        """The business filed the conversation away."""

        TOPIC = ARCHIVED
        by: str

    @event(Archived)
    def _archived(self, by: str) -> None:
        self.status = Status.ARCHIVED

    def reopen(self, *, by: str) -> bool:
        """Make an archived or blocked conversation active again."""
        if self.status == Status.ACTIVE:
            return False
        self._reopened(by=by)
        return True

    class Reopened(Event):
        """The business made the conversation active again."""

        TOPIC = REOPENED
        by: str

    @event(Reopened)
    def _reopened(self, by: str) -> None:
        self.status = Status.ACTIVE

    def block(self, *, by: str) -> bool:
        """Block the participant: their messages are still stored, never answered."""
        if self.status == Status.BLOCKED:
            return False
        self._blocked(by=by)
        return True

    class Blocked(Event):
        """The business blocked the participant."""

        TOPIC = BLOCKED
        by: str

    @event(Blocked)
    def _blocked(self, by: str) -> None:
        self.status = Status.BLOCKED

    def mark_read(self, *, by: str) -> None:
        """Record that the business has read everything received so far."""
        self._marked_read(by=by)

    class MarkedRead(Event):
        """The business read everything received so far."""

        TOPIC = MARKED_READ
        by: str

    @event(MarkedRead)
    def _marked_read(self, by: str) -> None:
        pass

    # -- replies and automation --------------------------------------------------------

    def queue_reply(
        self,
        *,
        reply_id: str,
        text: str,
        key: str,
        automated: bool,
        in_reply_to: str | None,
        rule_id: str | None,
        rule_version: int | None,
        trigger_at: int | None,
        by: str,
        attachment: JSONObject | None = None,
        request_hash: str | None = None,
        comment: JSONObject | None = None,
        public_reply: str | None = None,
        message: JSONObject | None = None,
        kind: str | None = None,
    ) -> bool:
        """Queue a reply for the Instagram outbox; `key` makes a repeat of the same decision
        or request a no-op (False). `attachment` is {"type": ..., "url": ...}. `comment`
        makes it a private reply to a comment: {"comment_id", "media_id", "live",
        "deadline" (ms, when Meta stops taking it)}, claimed on the media first
        (`Media.claim_private_reply`); `public_reply`, the text also posted under the
        comment. `message` is the reply's JSON shape (its kind and content,
        `application/reply_messages.py`), `text` its text if it has one; `attachment` is only
        in events stored before `message`. `kind` (text, image, ..., template, reaction,
        typing_on, ...) stays in clear.

        The reply's text, attachment, message and public reply are sealed content (erased with the
        participant); `echo`, a digest of the text, stays in clear to know the reply's
        echo by."""
        if self.has_recorded(key):
            return False
        self._reply_queued(
            key=key,
            reply_id=reply_id,
            text=text,
            automated=automated,
            in_reply_to=in_reply_to,
            rule_id=rule_id,
            rule_version=rule_version,
            trigger_at=trigger_at,
            by=by,
            attachment=attachment,
            request_hash=request_hash,
            echo=_digest(text) if text else None,
            comment=comment,
            public_reply=public_reply,
            message=message,
            kind=kind,
        )
        return True

    class ReplyQueued(Event):
        """A reply queued for the Instagram outbox (automated, or asked by the CRM)."""

        TOPIC = REPLY_QUEUED
        key: str
        reply_id: str
        text: str
        automated: bool
        in_reply_to: str | None
        rule_id: str | None
        rule_version: int | None
        trigger_at: int | None
        by: str
        attachment: JSONObject | None = None
        request_hash: str | None = None
        echo: str | None = None
        comment: JSONObject | None = None
        public_reply: str | None = None
        message: JSONObject | None = None
        """The reply's JSON shape (`application/reply_messages.py`); sealed content."""
        kind: str | None = None
        """text, image, ..., template, reaction, typing_on, ...: in clear."""

    @event(ReplyQueued)
    def _reply_queued(
        self,
        key: str,
        reply_id: str,
        text: str,
        automated: bool,
        in_reply_to: str | None,
        rule_id: str | None,
        rule_version: int | None,
        trigger_at: int | None,
        by: str,
        attachment: JSONObject | None = None,
        request_hash: str | None = None,
        echo: str | None = None,
        comment: JSONObject | None = None,
        public_reply: str | None = None,
        message: JSONObject | None = None,
        kind: str | None = None,
    ) -> None:
        self._remember(key, None)
        self.replies[reply_id] = {
            "state": ReplyStatus.QUEUED,
            "automated": automated,
            # Events before `echo` was kept carry their text in clear.
            "echo": echo if echo is not None else (_digest(text) if text else None),
        }
        if request_hash is not None:
            self.requests[key] = {"reply_id": reply_id, "hash": request_hash}
        if automated and trigger_at is not None and comment is None:
            self.auto_replied_at[rule_id or ""] = trigger_at

    def record_reply_sent(self, *, reply_id: str, message_id: str | None, sent_at: int) -> bool:
        """Meta accepted our reply and gave it `message_id` (the `mid` its echo will carry)."""
        reply = self.replies.get(reply_id)
        if reply is None or reply["state"] == ReplyStatus.SENT:
            return False
        self._reply_sent(reply_id=reply_id, message_id=message_id, sent_at=sent_at)
        return True

    class ReplySent(Event):
        """Meta accepted a reply and gave it `message_id`."""

        TOPIC = REPLY_SENT
        reply_id: str
        message_id: str | None
        sent_at: int

    @event(ReplySent)
    def _reply_sent(self, reply_id: str, message_id: str | None, sent_at: int) -> None:
        self.replies[reply_id] = {
            **self.replies[reply_id],
            "state": ReplyStatus.SENT,
            "message_id": message_id,
        }
        if message_id:
            self.sent_message_ids[message_id] = reply_id

    def record_reply_failed(
        self,
        *,
        reply_id: str,
        error_class: str,
        retryable: bool,
        code: int | None,
        subcode: int | None,
        message: str,
        fbtrace_id: str | None,
        attempt: int,
    ) -> bool:
        """A send did not go through: a final failure, or an attempt that will be retried."""
        reply = self.replies.get(reply_id)
        if reply is None or reply["state"] in (ReplyStatus.SENT, ReplyStatus.FAILED):
            return False
        self._reply_failed(
            reply_id=reply_id,
            error_class=error_class,
            retryable=retryable,
            code=code,
            subcode=subcode,
            message=message,
            fbtrace_id=fbtrace_id,
            attempt=attempt,
        )
        return True

    class ReplyFailed(Event):
        """A send that did not go through: final, or an attempt to be retried."""

        TOPIC = REPLY_FAILED
        reply_id: str
        error_class: str
        retryable: bool
        code: int | None
        subcode: int | None
        message: str
        fbtrace_id: str | None
        attempt: int

    @event(ReplyFailed)
    def _reply_failed(
        self,
        reply_id: str,
        error_class: str,
        retryable: bool,
        code: int | None,
        subcode: int | None,
        message: str,
        fbtrace_id: str | None,
        attempt: int,
    ) -> None:
        if not retryable:
            self.replies[reply_id] = {
                **self.replies[reply_id],
                "state": ReplyStatus.FAILED,
                "ambiguous": error_class == "ambiguous",
            }

    def reply(self, reply_id: str) -> Reply | None:
        """Our reply `reply_id`, or None if this conversation has no such reply."""
        found = self.replies.get(reply_id)
        if found is None:
            return None
        return Reply(
            reply_id=reply_id,
            status=ReplyStatus(found["state"]),
            automated=bool(found.get("automated")),
            message_id=found.get("message_id"),
        )

    @property
    def replies_in_flight(self) -> bool:
        """Whether a reply is queued and not yet sent or failed (its echo may come first)."""
        return any(r["state"] == ReplyStatus.QUEUED for r in self.replies.values())

    def ambiguous_reply_echoed(self, text: str | None) -> str | None:
        """The reply whose send got no answer (`ambiguous`) that an echo with this text is
        the echo of, if any: Meta did send it after all."""
        if not text:
            return None
        digest = _digest(text)
        for reply_id, reply in self.replies.items():
            if (
                reply["state"] == ReplyStatus.FAILED
                and reply.get("ambiguous")
                and reply.get("echo") == digest
            ):
                return reply_id
        return None

    def may_echo_a_queued_reply(self, text: str | None) -> bool:
        """Whether an echo with this text may be that of one of our replies on its way
        (its echo can come before the Send API's answer). A text reply's echo carries its
        text; a reply queued before texts were remembered, or an attachment, may be any."""
        digest = _digest(text) if text else None
        return any(
            r["state"] == ReplyStatus.QUEUED and (r.get("echo") is None or r.get("echo") == digest)
            for r in self.replies.values()
        )

    def skip_auto_reply(
        self, *, key: str, in_reply_to: str | None, rule_id: str | None, reason: str
    ) -> bool:
        """Record why automation did not answer a message it would have answered."""
        if self.has_recorded(key):
            return False
        self._auto_reply_skipped(key=key, in_reply_to=in_reply_to, rule_id=rule_id, reason=reason)
        return True

    @event("AutoReplySkipped", topic=AUTO_REPLY_SKIPPED)
    def _auto_reply_skipped(
        self, key: str, in_reply_to: str | None, rule_id: str | None, reason: str
    ) -> None:
        self._remember(key, None)

    def pause_automation(self, *, at: int, by: str, reason: str) -> bool:
        """A person takes over: automation stays quiet until resumed."""
        if self.automation_paused_at is not None:
            return False
        self._automation_paused(at=at, by=by, reason=reason)
        return True

    class AutomationPaused(Event):
        """A person took over: automation stays quiet until resumed."""

        TOPIC = AUTOMATION_PAUSED
        at: int
        by: str
        reason: str

    @event(AutomationPaused)
    def _automation_paused(self, at: int, by: str, reason: str) -> None:
        self.automation_paused_at = at

    def resume_automation(self, *, by: str) -> bool:
        if self.automation_paused_at is None:
            return False
        self._automation_resumed(by=by)
        return True

    class AutomationResumed(Event):
        """Automation may act again."""

        TOPIC = AUTOMATION_RESUMED
        by: str

    @event(AutomationResumed)
    def _automation_resumed(self, by: str) -> None:
        self.automation_paused_at = None

    def erase_participant(self, *, by: str, erased_at: int, destroyed: int) -> None:
        """Record that the participant's content was erased on request (GDPR): `destroyed` data
        keys of what they sent and were sent are destroyed with this event."""
        self._participant_erased(by=by, erased_at=erased_at, destroyed=destroyed)

    class ParticipantErased(Event):
        """The participant's content was erased on request."""

        TOPIC = PARTICIPANT_ERASED
        by: str
        erased_at: int
        destroyed: int

    @event(ParticipantErased)
    def _participant_erased(self, by: str, erased_at: int, destroyed: int) -> None:
        # What was known of them went with their keys: their next message asks again.
        self.profile_version = None
        self.profile_looked_up_at = None

    # -- who owns the thread (Meta's handover protocol) ---------------------------------

    thread_owner: str | None = None
    """"us" after control was passed to us, "other" after another app took it, "primary"
    after it was released to the primary receiver, None before any handover (the primary
    receiver's). A class default, for conversations snapshotted before it was kept."""

    def owned_by_another_app(self, *, primary_receiver: bool) -> bool:
        """Whether another app owns the thread now, so that automation must hold: it was
        taken from us, or it is the primary receiver's and dmledger is not that."""
        owner = self.thread_owner
        if owner == "other":
            return True
        return owner in (None, "primary") and not primary_receiver

    def record_thread_control(
        self,
        *,
        action: str,
        previous_owner_app_id: str | None,
        new_owner_app_id: str | None,
        metadata: str | None,
        at: int,
        standby: bool = False,
    ) -> bool:
        """Record a `messaging_handover` item (`HANDOVER_ACTIONS`); False if already recorded."""
        key = f"handover:{action}:{previous_owner_app_id}:{new_owner_app_id}:{at}"
        if self.has_recorded(key):
            return False
        self._thread_control_changed(
            key=key,
            action=action,
            previous_owner_app_id=previous_owner_app_id,
            new_owner_app_id=new_owner_app_id,
            metadata=metadata,
            at=at,
            standby=standby,
        )
        return True

    @event("ThreadControlChanged", topic=THREAD_CONTROL_CHANGED)
    def _thread_control_changed(
        self,
        key: str,
        action: str,
        previous_owner_app_id: str | None,
        new_owner_app_id: str | None,
        metadata: str | None,
        at: int,
        standby: bool,
    ) -> None:
        self._remember(key, None)
        owner = {"pass": "us", "take": "other", "release": "primary"}.get(action)
        if owner is not None:
            self.thread_owner = owner

    # -- who the participant is -------------------------------------------------------

    profile_looked_up_at: int | None = None
    """When the user profile API was last asked (ms), answered or refused; None: never.
    A class default, for conversations snapshotted before it was kept."""

    profile_version: int | None = None
    """The version of the conversation's latest `ParticipantProfileRecorded`, whose sealed
    content is the profile (`Ledger.participant_profile` opens it); None: none kept. The
    aggregate keeps no profile itself: its snapshots must hold nobody's name."""

    def profile_due(self, now: int) -> bool:
        """Whether the participant's profile should be looked up (again) at `now` (ms):
        never asked, or asked more than `PROFILE_REFRESH_MS` ago."""
        looked_up_at = self.profile_looked_up_at
        return looked_up_at is None or now - looked_up_at >= PROFILE_REFRESH_MS

    def record_participant_profile(self, *, profile: JSONObject, looked_up_at: int) -> bool:
        """Keep what the user profile API said of the participant at `looked_up_at` (ms),
        in Meta's field names; nothing when a lookup is not due (another one was kept)."""
        if not self.profile_due(looked_up_at):
            return False
        self._participant_profile_recorded(profile=profile, looked_up_at=looked_up_at)
        return True

    class ParticipantProfileRecorded(Event):
        """What the user profile API said of the participant."""

        TOPIC = PARTICIPANT_PROFILE_RECORDED
        profile: JSONObject
        looked_up_at: int | None = None

    @event(ParticipantProfileRecorded)
    def _participant_profile_recorded(
        self, profile: JSONObject, looked_up_at: int | None = None
    ) -> None:
        # `looked_up_at` is None in events stored before it was kept: the next message
        # looks the profile up again. The profile is content, sealed in the event (read
        # back erased on replay): only where it is is kept, this event's version (an
        # event is applied before the aggregate takes its version).
        self.profile_version = self.version + 1
        self.profile_looked_up_at = looked_up_at

    def refuse_participant_profile(
        self, *, code: int | None, message: str, looked_up_at: int
    ) -> bool:
        """Meta refused to describe the participant (no consent, blocked, ...): recorded,
        so the lookup waits `PROFILE_REFRESH_MS` rather than being retried at every message.
        What was known before is kept."""
        if not self.profile_due(looked_up_at):
            return False
        self._participant_profile_refused(code=code, message=message, looked_up_at=looked_up_at)
        return True

    @event("ParticipantProfileRefused", topic=PARTICIPANT_PROFILE_REFUSED)
    def _participant_profile_refused(
        self, code: int | None, message: str, looked_up_at: int
    ) -> None:
        self.profile_looked_up_at = looked_up_at


def recorded_key(event: object) -> tuple[str, int | None] | None:
    """The key a conversation's event records (`Conversation.recorded`) and its value; None
    for an event that records no key. The store's index of keys is written from these."""
    if not isinstance(event, Conversation.Event):
        return None
    key = getattr(event, "key", None)
    if not isinstance(key, str):
        return None
    if isinstance(event, Conversation.MessageReceived | Conversation.MessageEchoed):
        return key, _indexable_time(event.sent_at)
    return key, None


def _indexable_time(sent_at: object) -> int | None:
    """`sent_at` as the index can hold it (a signed 64-bit integer), else None: the key
    still refuses a redelivery, only the time is unknown. A time past 64 bits is no real
    time (an old release or a bug stored it); it must not keep the event from being
    stored, or the index from being filled from such a log."""
    if isinstance(sent_at, int) and not isinstance(sent_at, bool) and -(2**63) <= sent_at < 2**63:
        return sent_at
    return None
