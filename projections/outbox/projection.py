"""How events fill the outboxes: Instagram replies, and the CRM's notifications.

Over 300 lines: one handler per event type that makes a delivery, each a few lines; the
payloads' shapes are in `projections/outbox/payloads.py`, the tables in `view.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import uuid5

import msgspec
from eventsourcing.domain import Aggregate

from application.destroyed_content import (
    CRM_CONTENT_KINDS,
    anonymous_crm_body,
    erased_crm_body,
    erased_reply_body,
)
from domain import account as account_topics
from domain import conversation as topics
from domain import media as media_topics
from domain.account import Account
from domain.content import is_erased
from domain.conversation import Conversation
from domain.identity import DMLEDGER_NAMESPACE, account_id
from projections.outbox.payloads import data_of
from projections.outbox.view import (
    OutboxView,
    conversation_parties,
    crm_subscriptions,
    outbox,
    participant_profiles,
)
from projections.projection import LedgerProjection, id_text, on
from projections.shredding import content_rows
from projections.view import Batch, Row

MAX_CRM_BODY = 20_000
"""CRM payloads stay under 20 kB: long texts are cut."""


def _iso(event: Aggregate.Event) -> str:
    return str(event.timestamp.isoformat())


def _ms(event: Aggregate.Event) -> int:
    return int(event.timestamp.timestamp() * 1000)


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _urls(attachments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Attachments as their type and URL (media leave as URLs, never as bytes); no URL
    when the payload is not an object, as Meta's always is (the event keeps it as sent)."""
    return [{"type": a.get("type"), "url": _url_of(a.get("payload"))} for a in attachments or []]


def _url_of(payload: object) -> Any:
    return payload.get("url") if isinstance(payload, dict) else None


_OUTCOMES = (topics.REPLY_SENT, topics.REPLY_FAILED)


def crm_delivery_id(event: Aggregate.Event) -> str:
    """The `webhook-id` of a notification: derived from the event, stable for ever."""
    return (
        "evt_" + uuid5(DMLEDGER_NAMESPACE, f"{event.originator_id}:{event.originator_version}").hex
    )


class Outboxes(LedgerProjection[OutboxView]):
    """Keeps the Instagram and CRM outboxes in step with the log."""

    name = "outbox"

    def preload(self, batch: Batch, items: Sequence[tuple[Any, int]]) -> None:
        # One query a table for the batch, rather than one a conversation.
        conversations = {(id_text(e.originator_id),) for e, _ in items}
        batch.preload(conversation_parties, conversations)
        batch.preload(participant_profiles, conversations)
        accounts = {(r["ig_account_id"],) for r in batch.in_memory(conversation_parties)}
        accounts |= {(e.ig_account_id,) for e, _ in items if hasattr(e, "ig_account_id")}
        batch.preload(crm_subscriptions, accounts)
        replies = {(e.reply_id,) for e, _ in items if type(e).TOPIC in _OUTCOMES}
        batch.preload(outbox, replies)

    # -- who is who ------------------------------------------------------------------------

    @on(topics.STARTED)
    def started(self, batch: Batch, event: Conversation.Started, position: int) -> None:
        batch.put(
            conversation_parties,
            {
                "conversation_id": id_text(event.originator_id),
                "ig_account_id": event.ig_account_id,
                "participant_id": event.participant_id,
                "crm_sequence": 0,
                "last_inbound_at": None,
            },
        )

    @on(topics.PARTICIPANT_PROFILE_RECORDED)
    def participant_profile_recorded(
        self, batch: Batch, event: Conversation.ParticipantProfileRecorded, position: int
    ) -> None:
        # Each lookup (at most weekly) is a `conversation.updated`, whatever it found: once
        # the profile is erased, whether it had changed can no longer be told, and a view
        # rebuilt then must make the same deliveries.
        if not is_erased(event):
            batch.put(
                participant_profiles,
                {
                    "conversation_id": id_text(event.originator_id),
                    "username": event.profile.get("username"),
                    "name": event.profile.get("name"),
                    "recorded_at": _ms(event),
                },
            )
        self._notify_crm(
            batch,
            event,
            position,
            "conversation.updated",
            {"change": "ParticipantProfileRecorded", "by": None},
        )

    @on(account_topics.CRM_ENDPOINT_SET)
    def crm_endpoint_set(self, batch: Batch, event: Account.CrmEndpointSet, position: int) -> None:
        batch.put(
            crm_subscriptions,
            {"ig_account_id": event.ig_account_id, "event_types": event.event_types, "enabled": 1},
        )

    # A disabled endpoint (it answered 410) is still subscribed: its deliveries are
    # written and held until it is set again. Only a removed one is not.
    @on(account_topics.CRM_ENDPOINT_REMOVED)
    def crm_endpoint_removed(
        self, batch: Batch, event: Account.CrmEndpointRemoved, position: int
    ) -> None:
        row = batch.get(crm_subscriptions, (event.ig_account_id,))
        if row is not None:
            row["enabled"] = 0
            batch.changed(crm_subscriptions, row)

    # -- Instagram ---------------------------------------------------------------------------

    @on(topics.REPLY_QUEUED)
    def reply_queued(self, batch: Batch, event: Conversation.ReplyQueued, position: int) -> None:
        party = batch.get(conversation_parties, (id_text(event.originator_id),))
        if party is None:
            return
        comment = getattr(event, "comment", None)
        body = {
            "reply_id": event.reply_id,
            "participant_id": party["participant_id"],
            "text": event.text,
            "attachment": event.attachment,
            "message": event.message,
            "automated": event.automated,
            "queued_at": int(event.timestamp.timestamp() * 1000),
        }
        if comment is not None:
            # A private reply: to `recipient.comment_id`, and the public one under it.
            body["comment"] = {**comment, "public_reply": getattr(event, "public_reply", None)}
        encoded = msgspec.json.encode(body).decode()
        batch.put(
            outbox,
            {
                "delivery_id": event.reply_id,
                "channel": "instagram",
                "ig_account_id": party["ig_account_id"],
                "conversation_id": id_text(event.originator_id),
                "kind": "reply" if comment is None else "private_reply",
                "body": erased_reply_body(encoded) if is_erased(event) else encoded,
                "position": position,
                "created_at": int(event.timestamp.timestamp() * 1000),
                "outcome": None,
                "content_key": getattr(event, "content_key", None),
                "profile_recorded_at": None,
            },
        )
        self._notify_crm(batch, event, position, None, None)

    @on(topics.REPLY_SENT)
    def reply_sent(self, batch: Batch, event: Conversation.ReplySent, position: int) -> None:
        self._outcome(batch, event.reply_id, "sent")
        self._notify_crm(
            batch,
            event,
            position,
            "reply.sent",
            {"reply_id": event.reply_id, "message_id": event.message_id},
        )

    @on(topics.REPLY_FAILED)
    def reply_failed(self, batch: Batch, event: Conversation.ReplyFailed, position: int) -> None:
        if event.retryable:
            return
        self._outcome(batch, event.reply_id, "failed")
        data = {
            "reply_id": event.reply_id,
            "error_class": event.error_class,
            "code": event.code,
            "subcode": event.subcode,
            "message": event.message,
            "fbtrace_id": event.fbtrace_id,
        }
        self._notify_crm(batch, event, position, "reply.failed", data)

    def _outcome(self, batch: Batch, reply_id: str, outcome: str) -> None:
        row = batch.get(outbox, (reply_id,))
        if row is not None:
            row["outcome"] = outcome
            batch.changed(outbox, row)

    # -- the CRM -------------------------------------------------------------------------------

    def _inbound(
        self, batch: Batch, event: Conversation.MessageReceived | Conversation.PostbackReceived
    ) -> None:
        party = batch.get(conversation_parties, (id_text(event.originator_id),))
        if party is not None and (party["last_inbound_at"] or 0) < event.sent_at:
            party["last_inbound_at"] = event.sent_at
            batch.changed(conversation_parties, party)

    @on(topics.POSTBACK_RECEIVED)
    def postback_received(
        self, batch: Batch, event: Conversation.PostbackReceived, position: int
    ) -> None:
        self._inbound(batch, event)

    @on(topics.MESSAGE_RECEIVED)
    def message_received(
        self, batch: Batch, event: Conversation.MessageReceived, position: int
    ) -> None:
        self._inbound(batch, event)
        data = {
            "mid": event.mid,
            "text": event.text,
            "attachments": _urls(event.attachments),
            "reply_to": event.reply_to,
            "quick_reply": event.quick_reply,
            "referral": event.referral,
            "sent_at": event.sent_at,
            "standby": event.standby,
        }
        self._notify_crm(batch, event, position, "message.received", data)

    @on(topics.MESSAGE_ECHOED)
    def message_echoed(
        self, batch: Batch, event: Conversation.MessageEchoed, position: int
    ) -> None:
        data = {
            "mid": event.mid,
            "text": event.text,
            "attachments": _urls(event.attachments),
            "sent_at": event.sent_at,
        }
        self._notify_crm(batch, event, position, "message.echoed", data)

    @on(topics.MESSAGE_UNSENT)
    def message_unsent(
        self, batch: Batch, event: Conversation.MessageUnsent, position: int
    ) -> None:
        # Notifications of the message not delivered yet leave without its content, and
        # those delivered keep none here either.
        self._forget_content(
            batch,
            [id_text(event.originator_id)],
            lambda body: msgspec.json.decode(body)["data"].get("mid") == event.mid,
        )
        self._notify_crm(
            batch,
            event,
            position,
            "message.unsent",
            {"mid": event.mid, "unsent_at": event.unsent_at},
        )

    @on(topics.MESSAGE_EDITED)
    def message_edited(
        self, batch: Batch, event: Conversation.MessageEdited, position: int
    ) -> None:
        data = {
            "mid": event.mid,
            "text": event.text,
            "edit_count": event.edit_count,
            "edited_at": event.edited_at,
        }
        self._notify_crm(batch, event, position, "message.edited", data)

    @on(topics.PARTICIPANT_ERASED)
    def participant_erased(
        self, batch: Batch, event: Conversation.ParticipantErased, position: int
    ) -> None:
        conversation_id = id_text(event.originator_id)
        self._forget_content(batch, [conversation_id])
        self._forget_profiles(batch, [conversation_id])
        party = batch.get(conversation_parties, (conversation_id,))
        if party is not None:
            # Their comments' notifications too (they leave in the lanes of the media).
            self._forget_comments(
                batch,
                party["ig_account_id"],
                lambda data: data["author"]["id"] == party["participant_id"],
            )

    @on(media_topics.COMMENT_REMOVED)
    def comment_removed(self, batch: Batch, event: Any, position: int) -> None:
        self._forget_comments(
            batch, event.ig_account_id, lambda data: data["comment_id"] == event.comment_id
        )

    def _forget_comments(
        self, batch: Batch, ig_account_id: str, matches: Callable[[dict[str, Any]], bool]
    ) -> None:
        """`comment.received` notifications of the account whose data `matches`, without
        the comment's text (`erased`)."""
        found = {
            id(row): row
            for row in batch.load(
                outbox, outbox.c.ig_account_id == ig_account_id, outbox.c.kind == "comment.received"
            )
        }
        found.update({id(row): row for row in batch.in_memory(outbox)})
        for row in found.values():
            if (
                row["kind"] == "comment.received"
                and row["ig_account_id"] == ig_account_id
                and matches(msgspec.json.decode(row["body"])["data"])
            ):
                erased = erased_crm_body(row["body"])
                if erased != row["body"]:
                    row["body"] = erased
                    batch.changed(outbox, row)

    @on(account_topics.CONTENT_EXPIRED)
    def content_expired(self, batch: Batch, event: Account.ContentExpired, position: int) -> None:
        self._forget_content(batch, event.conversation_ids, before=event.before)
        self._forget_profiles(batch, event.conversation_ids, before=event.before)

    def _forget_profiles(
        self, batch: Batch, conversation_ids: Sequence[str], before: int | None = None
    ) -> None:
        """Forget what the participants' profiles recorded before `before` (all, if None)
        said: the profile, and the username and name in the notifications that carry it."""
        for profile in content_rows(
            batch, participant_profiles, conversation_ids, before=before, time_column="recorded_at"
        ):
            batch.delete(participant_profiles, profile)
        for row in content_rows(
            batch,
            outbox,
            conversation_ids,
            before=before,
            time_column="profile_recorded_at",
        ):
            if row["profile_recorded_at"] is not None:
                row["body"] = anonymous_crm_body(row["body"])
                row["profile_recorded_at"] = None
                batch.changed(outbox, row)

    def _forget_content(
        self,
        batch: Batch,
        conversation_ids: Sequence[str],
        matches: Any = None,
        before: int | None = None,
    ) -> None:
        for row in content_rows(
            batch,
            outbox,
            conversation_ids,
            before=before,
            time_column="created_at",
            kinds=(*CRM_CONTENT_KINDS, "reply", "private_reply")
            if matches is None
            else CRM_CONTENT_KINDS,
        ):
            if matches is not None and not matches(row["body"]):
                continue
            erase = erased_crm_body if row["channel"] == "crm" else erased_reply_body
            erased = erase(row["body"])
            if erased != row["body"]:
                row["body"] = erased
                batch.changed(outbox, row)

    @on(topics.REACTION_ADDED)
    def reaction_added(
        self, batch: Batch, event: Conversation.ReactionAdded, position: int
    ) -> None:
        data = {
            "mid": event.mid,
            "sender_id": event.sender_id,
            "reaction": event.reaction,
            "emoji": event.emoji,
            "at": event.reacted_at,
        }
        self._notify_crm(batch, event, position, "reaction.added", data)

    @on(topics.REACTION_REMOVED)
    def reaction_removed(
        self, batch: Batch, event: Conversation.ReactionRemoved, position: int
    ) -> None:
        data = {
            "mid": event.mid,
            "sender_id": event.sender_id,
            "reaction": event.reaction,
            "at": event.removed_at,
        }
        self._notify_crm(batch, event, position, "reaction.removed", data)

    @on(topics.MESSAGES_SEEN)
    def messages_seen(self, batch: Batch, event: Conversation.MessagesSeen, position: int) -> None:
        self._notify_crm(
            batch, event, position, "messages.seen", {"mid": event.mid, "seen_at": event.seen_at}
        )

    @on(topics.ARCHIVED)
    @on(topics.REOPENED)
    @on(topics.BLOCKED)
    @on(topics.MARKED_READ)
    @on(topics.AUTOMATION_PAUSED)
    @on(topics.AUTOMATION_RESUMED)
    @on(topics.THREAD_CONTROL_CHANGED)
    def conversation_updated(self, batch: Batch, event: Conversation.Event, position: int) -> None:
        change = type(event).TOPIC.rsplit(".", 1)[-1]
        self._notify_crm(
            batch,
            event,
            position,
            "conversation.updated",
            {"change": change, "by": getattr(event, "by", None)},
        )

    @on(media_topics.COMMENT_RECEIVED)
    def comment_received(self, batch: Batch, event: Any, position: int) -> None:
        data = {
            "comment_id": event.comment_id,
            "media_id": event.media,
            "media_product_type": event.product_type,
            "parent_id": event.parent_id,
            "text": event.text,
            "author": {"id": event.author_id, "username": event.author_username},
            "live": event.live,
            "commented_at": event.commented_at,
        }
        self._enqueue_crm(
            batch, event, position, "comment.received", data, event.ig_account_id, None
        )

    @on(account_topics.TOKEN_REJECTED)
    def token_rejected(self, batch: Batch, event: Account.TokenRejected, position: int) -> None:
        ig_account_id = event.ig_account_id
        data = {"code": event.code, "subcode": event.subcode, "message": event.message}
        self._enqueue_crm(
            batch, event, position, "account.token_rejected", data, ig_account_id, None
        )

    @on(account_topics.SENDS_PAUSED)
    def sends_paused(self, batch: Batch, event: Account.SendsPaused, position: int) -> None:
        data = {
            "until": _iso_ms(event.until),
            "code": event.code,
            "reason": event.reason,
        }
        self._notify_account(batch, event, position, "account.sends_paused", data)

    @on(account_topics.SENDS_RESUMED)
    def sends_resumed(self, batch: Batch, event: Account.SendsResumed, position: int) -> None:
        data = {"reason": "credentials_rotated", "by": event.by}
        self._enqueue_crm(
            batch, event, position, "account.sends_resumed", data, event.ig_account_id, None
        )

    @on(account_topics.TOKEN_REFRESH_FAILED)
    def token_refresh_failed(
        self, batch: Batch, event: Account.TokenRefreshFailed, position: int
    ) -> None:
        data = {"message": event.message, "at": _iso_ms(event.at)}
        self._notify_account(batch, event, position, "account.token_refresh_failed", data)

    def _notify_account(
        self, batch: Batch, event: Account.Event, position: int, kind: str, data: dict[str, Any]
    ) -> None:
        """A notification about the account itself, whose event names no Instagram id:
        the subscribed account whose aggregate sent it (accounts are few)."""
        # The stored subscriptions, and those this batch made (not stored yet).
        stored = batch.load(crm_subscriptions)
        for row in [*batch.in_memory(crm_subscriptions), *stored]:
            if account_id(row["ig_account_id"]) == event.originator_id:
                self._enqueue_crm(batch, event, position, kind, data, row["ig_account_id"], None)
                return

    def _notify_crm(
        self,
        batch: Batch,
        event: Conversation.Event,
        position: int,
        kind: str | None,
        data: dict[str, Any] | None,
    ) -> None:
        if kind is None or data is None:
            return
        if getattr(event, "backfilled", False):
            # History read back by a backfill: the CRM is told only if it was asked.
            if not getattr(event, "notify_crm", False):
                return
            data = {**data, "backfilled": True}
        party = batch.get(conversation_parties, (id_text(event.originator_id),))
        if party is None:
            return
        self._enqueue_crm(batch, event, position, kind, data, party["ig_account_id"], party)

    def _enqueue_crm(
        self,
        batch: Batch,
        event: Aggregate.Event,
        position: int,
        kind: str,
        data: dict[str, Any],
        ig_account_id: str,
        party: Row | None,
    ) -> None:
        subscription = batch.get(crm_subscriptions, (ig_account_id,))
        if (
            subscription is None
            or not subscription["enabled"]
            or kind not in subscription["event_types"]
        ):
            return
        envelope_data: dict[str, Any] = {"account_id": ig_account_id}
        profile_recorded_at: int | None = None
        if party is not None:
            party["crm_sequence"] += 1
            batch.changed(conversation_parties, party)
            participant, profile_recorded_at = _participant(batch, party)
            envelope_data.update(
                conversation_id=party["conversation_id"],
                participant_id=party["participant_id"],
                participant=participant,
                sequence=party["crm_sequence"],
            )
        envelope_data.update(data)
        # As documented (payloads.py, and so the OpenAPI document's `webhooks`): a field
        # the outbox adds without documenting it fails here, in the tests, not at a CRM.
        body = _fit({"type": kind, "timestamp": _iso(event), "data": data_of(kind, envelope_data)})
        if is_erased(event) and kind in CRM_CONTENT_KINDS:
            body = erased_crm_body(body)  # as a notification queued before is made (unsend)
        batch.put(
            outbox,
            {
                "delivery_id": crm_delivery_id(event),
                "channel": "crm",
                "ig_account_id": ig_account_id,
                # Deliveries leave in order per lane: a conversation's, or for the
                # account's own notifications the account's (never one lane for all).
                "conversation_id": party["conversation_id"]
                if party is not None
                else id_text(event.originator_id),
                "kind": kind,
                "body": body,
                "position": position,
                "created_at": int(event.timestamp.timestamp() * 1000),
                "outcome": None,
                "content_key": getattr(event, "content_key", None)
                if kind in CRM_CONTENT_KINDS
                else None,
                "profile_recorded_at": profile_recorded_at,
            },
        )


def _participant(batch: Batch, party: Row) -> tuple[dict[str, Any], int | None]:
    """The participant's id, and the username and name once recorded; when the profile
    that said them was recorded (ms), if it said either."""
    participant: dict[str, Any] = {"id": party["participant_id"]}
    profile = batch.get(participant_profiles, (party["conversation_id"],))
    if profile is not None:
        for field in ("username", "name"):
            if profile[field] is not None:
                participant[field] = profile[field]
    if profile is None or len(participant) == 1:
        return participant, None
    return participant, profile["recorded_at"]


def _fit(envelope: dict[str, Any]) -> str:
    """The envelope as JSON, its text cut so that it stays under `MAX_CRM_BODY` bytes."""
    body = msgspec.json.encode(envelope)
    if len(body) <= MAX_CRM_BODY:
        return body.decode()
    data = envelope["data"]
    for field in ("referral", "reply_to", "quick_reply"):
        data.pop(field, None)
    text = data.get("text") or ""
    while len(body) > MAX_CRM_BODY and text:
        text = text[: len(text) // 2]
        data["text"] = text
        data["truncated"] = True
        body = msgspec.json.encode(envelope)
    return body.decode()
