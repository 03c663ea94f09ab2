"""How events change the message history.

A little over 300 lines: one handler per event that changes a message, each a few lines
and each naming the event class it reads; the table is in `view.py`, previews and kinds
in `projections/previews.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from eventsourcing.domain import Aggregate
from sqlalchemy import Select

from application.reply_messages import attachments_of, of_event
from application.reply_messages import kind_of as reply_kind
from domain import account as account_topics
from domain import conversation as topics
from domain.account import Account
from domain.content import is_erased
from domain.conversation import Conversation
from projections.message_history.view import MessageHistoryView, messages
from projections.previews import kind_of
from projections.projection import LedgerProjection, id_text, on
from projections.schema import rows_with_keys
from projections.shredding import content_rows, forget_content
from projections.view import Batch, Row

_MESSAGE_TOPICS = {
    topics.MESSAGE_RECEIVED,
    topics.MESSAGE_ECHOED,
    topics.MESSAGE_UNSENT,
    topics.MESSAGE_EDITED,
    topics.REACTION_ADDED,
    topics.REACTION_REMOVED,
}


def _ms(event: Aggregate.Event) -> int:
    return int(event.timestamp.timestamp() * 1000)


_BLANK: Row = {
    "conversation_id": None,
    "message_key": None,
    "mid": None,
    "direction": None,
    "kind": None,
    "text": None,
    "attachments": None,
    "reply_to": None,
    "quick_reply": None,
    "referral": None,
    "reactions": None,
    "edit_count": 0,
    "edited_at": None,
    "unsent": False,
    "unsent_at": None,
    "standby": False,
    "delivery_status": None,
    "delivery_error": None,
    "reply_id": None,
    "sent_at": None,
    "recorded_at": None,
    "position": None,
}


def _blank(event: Conversation.Event, key: str) -> Row:
    row = _BLANK.copy()  # a dict copy is cheaper than building 22 keys (once a message)
    row["conversation_id"] = id_text(event.originator_id)
    row["message_key"] = key
    row["attachments"] = []
    row["reactions"] = []
    return row


def _replies_by_mid(batch: Batch) -> dict[tuple[str, str], str]:
    """(conversation id, Meta's mid) -> message key, of our replies this batch has seen."""
    replies: dict[tuple[str, str], str] = batch.notes.setdefault("replies_by_mid", {})
    return replies


@cache
def _replies_of_echoes() -> Select[Any]:
    """Our replies with one of the (conversation id, mid) pairs in `:rows` (PostgreSQL)."""
    m = messages.c
    query: Select[Any] = rows_with_keys(
        messages, [m.conversation_id, m.mid], m.reply_id.is_not(None)
    )
    return query


def _comment_link(comment: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a private reply shows of the comment it answers."""
    if comment is None:
        return None
    return {"comment": {"comment_id": comment["comment_id"], "media_id": comment["media_id"]}}


class MessageHistory(LedgerProjection[MessageHistoryView]):
    """Keeps `message_history` in step with the conversations' events."""

    name = "message_history"

    def preload(self, batch: Batch, items: Sequence[tuple[Any, int]]) -> None:
        keys = {
            (id_text(event.originator_id), event.mid)
            for event, _ in items
            if type(event).TOPIC in _MESSAGE_TOPICS
        }
        batch.preload(messages, keys)
        # Our replies that an echo of this batch may confirm, in one query per 500 echoes.
        echoes = sorted(
            (id_text(event.originator_id), event.mid)
            for event, _ in items
            if type(event).TOPIC == topics.MESSAGE_ECHOED
        )
        replies = _replies_by_mid(batch)
        batch.notes["preloaded"] = True
        if echoes and batch.conn is not None and batch.conn.dialect.name == "postgresql":
            wanted = [{"conversation_id": c, "mid": m} for c, m in echoes]
            for row in batch.load_json(messages, _replies_of_echoes(), wanted):
                replies[(row["conversation_id"], row["mid"])] = row["message_key"]
            return
        for start in range(0, len(echoes), 500):
            chunk = echoes[start : start + 500]
            for row in batch.load(
                messages,
                messages.c.conversation_id.in_({c for c, _ in chunk}),
                messages.c.mid.in_({m for _, m in chunk}),
                messages.c.reply_id.is_not(None),
            ):
                replies[(row["conversation_id"], row["mid"])] = row["message_key"]

    def _message(self, batch: Batch, event: Conversation.Event, key: str) -> Row:
        row = batch.get(messages, (id_text(event.originator_id), key))
        if row is None:
            row = batch.put(messages, _blank(event, key))
        else:
            batch.changed(messages, row)
        return row

    def _arrived(
        self,
        batch: Batch,
        event: Conversation.MessageReceived | Conversation.MessageEchoed,
        position: int,
        direction: str,
    ) -> Row:
        row = self._message(batch, event, event.mid)
        row.update(
            mid=event.mid,
            direction=direction,
            kind="erased" if is_erased(event) else kind_of(event.attachments, event),
            text=row["text"] if row["edit_count"] else event.text,
            attachments=event.attachments,
            reply_to=event.reply_to,
            standby=event.standby,
            sent_at=event.sent_at,
            recorded_at=_ms(event),
            position=position,
        )
        return row

    @on(topics.MESSAGE_RECEIVED)
    def message_received(
        self, batch: Batch, event: Conversation.MessageReceived, position: int
    ) -> None:
        row = self._arrived(batch, event, position, "inbound")
        row["quick_reply"] = event.quick_reply
        row["referral"] = event.referral

    @on(topics.MESSAGE_ECHOED)
    def message_echoed(
        self, batch: Batch, event: Conversation.MessageEchoed, position: int
    ) -> None:
        conversation_id = id_text(event.originator_id)
        key = _replies_by_mid(batch).get((conversation_id, event.mid))
        if key is None and "preloaded" not in batch.notes:
            # Not preloaded (one event applied on its own): look for it now.
            for found in batch.load(
                messages,
                messages.c.conversation_id == conversation_id,
                messages.c.mid == event.mid,
                messages.c.reply_id.is_not(None),
            ):
                key = found["message_key"]
        ours = batch.get(messages, (conversation_id, key)) if key is not None else None
        if ours is not None and ours["mid"] == event.mid and ours["reply_id"] is not None:
            # The echo of a reply we sent: the same message, now confirmed by Meta.
            ours["delivery_status"] = "delivered"
            batch.changed(messages, ours)
            return
        self._arrived(batch, event, position, "outbound")

    @on(topics.POSTBACK_RECEIVED)
    def postback_received(
        self, batch: Batch, event: Conversation.PostbackReceived, position: int
    ) -> None:
        # Its own key, not one made from its payload (content, gone once shredded).
        key = event.mid or event.key
        row = self._message(batch, event, key)
        row.update(
            mid=event.mid,
            direction="inbound",
            kind="erased" if is_erased(event) else "postback",
            text=event.title,
            quick_reply=None if is_erased(event) else {"payload": event.payload},
            standby=event.standby,
            sent_at=event.sent_at,
            recorded_at=_ms(event),
            position=position,
        )

    @on(topics.MESSAGE_UNSENT)
    def message_unsent(
        self, batch: Batch, event: Conversation.MessageUnsent, position: int
    ) -> None:
        row = self._message(batch, event, event.mid)
        row["unsent"] = True
        row["unsent_at"] = event.unsent_at
        forget_content(row)  # its data key went with this event

    @on(topics.PARTICIPANT_ERASED)
    def participant_erased(
        self, batch: Batch, event: Conversation.ParticipantErased, position: int
    ) -> None:
        conversation_id = id_text(event.originator_id)
        for row in content_rows(batch, messages, [conversation_id]):
            # What they sent, and what we sent them (our replies' keys went too).
            forget_content(row)
            batch.changed(messages, row)

    @on(account_topics.CONTENT_EXPIRED)
    def content_expired(self, batch: Batch, event: Account.ContentExpired, position: int) -> None:
        for row in content_rows(batch, messages, event.conversation_ids, before=event.before):
            forget_content(row)
            batch.changed(messages, row)

    @on(topics.MESSAGE_EDITED)
    def message_edited(
        self, batch: Batch, event: Conversation.MessageEdited, position: int
    ) -> None:
        row = self._message(batch, event, event.mid)
        # Edits can arrive out of order: the highest edit count holds the latest text.
        if event.edit_count >= row["edit_count"]:
            row["edit_count"] = event.edit_count
            row["edited_at"] = event.edited_at
            if event.text is not None:
                row["text"] = event.text

    @on(topics.REACTION_ADDED)
    def reaction_added(
        self, batch: Batch, event: Conversation.ReactionAdded, position: int
    ) -> None:
        row = self._message(batch, event, event.mid)
        others = [r for r in row["reactions"] if r["sender_id"] != event.sender_id]
        mine = [r for r in row["reactions"] if r["sender_id"] == event.sender_id]
        if mine and mine[0]["at"] > event.reacted_at:
            return  # a later reaction of this sender is already there
        reaction = {
            "sender_id": event.sender_id,
            "reaction": event.reaction,
            "emoji": event.emoji,
            "at": event.reacted_at,
        }
        row["reactions"] = [*others, reaction]

    @on(topics.REACTION_REMOVED)
    def reaction_removed(
        self, batch: Batch, event: Conversation.ReactionRemoved, position: int
    ) -> None:
        row = self._message(batch, event, event.mid)
        row["reactions"] = [
            r
            for r in row["reactions"]
            if r["sender_id"] != event.sender_id or r["at"] > event.removed_at
        ]

    @on(topics.REPLY_QUEUED)
    def reply_queued(self, batch: Batch, event: Conversation.ReplyQueued, position: int) -> None:
        row = self._message(batch, event, event.reply_id)
        reply = of_event(event.text, event.attachment, event.message)
        erased = is_erased(event)
        row.update(
            direction="outbound",
            kind="erased" if erased else reply_kind(reply),
            text=event.text or None,
            attachments=attachments_of(reply),
            delivery_status="queued",
            reply_id=event.reply_id,
            reply_to=_comment_link(getattr(event, "comment", None)),
            sent_at=_ms(event),
            recorded_at=_ms(event),
            position=position,
        )

    @on(topics.REPLY_SENT)
    def reply_sent(self, batch: Batch, event: Conversation.ReplySent, position: int) -> None:
        row = self._message(batch, event, event.reply_id)
        # Sent: the transient errors before it are its history (the log), not its status.
        row.update(delivery_status="sent", mid=event.message_id, delivery_error=None)
        if event.message_id:
            _replies_by_mid(batch)[(row["conversation_id"], event.message_id)] = event.reply_id
        # Meta's echo of this reply may have come first: it is the same message.
        if event.message_id:
            echo = batch.get(messages, (id_text(event.originator_id), event.message_id))
            if echo is not None and echo["kind"] is not None:
                row["reactions"] = echo["reactions"] or row["reactions"]
                batch.delete(messages, echo)

    @on(topics.REPLY_FAILED)
    def reply_failed(self, batch: Batch, event: Conversation.ReplyFailed, position: int) -> None:
        row = self._message(batch, event, event.reply_id)
        if row["delivery_status"] == "sent":
            return
        row["delivery_status"] = "retrying" if event.retryable else "failed"
        row["delivery_error"] = {
            "class": event.error_class,
            "code": event.code,
            "subcode": event.subcode,
            "message": event.message,
            "fbtrace_id": event.fbtrace_id,
            "retryable": event.retryable,
        }
