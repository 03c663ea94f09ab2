"""How events change the message history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from domain import conversation as topics
from projections.message_history.view import MessageHistoryView, messages
from projections.previews import kind_of
from projections.projection import LedgerProjection, on
from projections.view import Batch, Row

_MESSAGE_TOPICS = {
    topics.MESSAGE_RECEIVED,
    topics.MESSAGE_ECHOED,
    topics.MESSAGE_UNSENT,
    topics.MESSAGE_EDITED,
    topics.REACTION_ADDED,
    topics.REACTION_REMOVED,
}


def _ms(event: Any) -> int:
    return int(event.timestamp.timestamp() * 1000)


def _blank(event: Any, key: str) -> Row:
    return {
        "conversation_id": str(event.originator_id),
        "message_key": key,
        "mid": None,
        "direction": None,
        "kind": None,
        "text": None,
        "attachments": [],
        "reply_to": None,
        "quick_reply": None,
        "referral": None,
        "reactions": [],
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


class MessageHistory(LedgerProjection[MessageHistoryView]):
    """Keeps `message_history` in step with the conversations' events."""

    name = "message_history"

    def preload(self, batch: Batch, items: Sequence[tuple[Any, int]]) -> None:
        keys = {
            (str(event.originator_id), event.mid)
            for event, _ in items
            if type(event).TOPIC in _MESSAGE_TOPICS
        }
        batch.preload(messages, keys)

    def _message(self, batch: Batch, event: Any, key: str) -> Row:
        row = batch.get(messages, (str(event.originator_id), key))
        if row is None:
            row = batch.put(messages, _blank(event, key))
        else:
            batch.changed(messages, row)
        return row

    def _arrived(self, batch: Batch, event: Any, position: int, direction: str) -> Row:
        row = self._message(batch, event, event.mid)
        row.update(
            mid=event.mid,
            direction=direction,
            kind=kind_of(event.attachments, event),
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
    def message_received(self, batch: Batch, event: Any, position: int) -> None:
        row = self._arrived(batch, event, position, "inbound")
        row["quick_reply"] = event.quick_reply
        row["referral"] = event.referral

    @on(topics.MESSAGE_ECHOED)
    def message_echoed(self, batch: Batch, event: Any, position: int) -> None:
        conversation_id = str(event.originator_id)
        ours = next(
            (
                r
                for r in batch.in_memory(messages)
                if r["conversation_id"] == conversation_id
                and r["mid"] == event.mid
                and r["reply_id"] is not None
            ),
            None,
        ) or (
            batch.conn.execute(
                select(messages).where(
                    messages.c.conversation_id == conversation_id,
                    messages.c.mid == event.mid,
                    messages.c.reply_id.is_not(None),
                )
            )
            .mappings()
            .first()
        )
        if ours is not None:
            # The echo of a reply we sent: the same message, now confirmed by Meta.
            row = batch.get(messages, (conversation_id, ours["message_key"]))
            if row is not None:
                row["delivery_status"] = "delivered"
                batch.changed(messages, row)
            return
        self._arrived(batch, event, position, "outbound")

    @on(topics.POSTBACK_RECEIVED)
    def postback_received(self, batch: Batch, event: Any, position: int) -> None:
        key = event.mid or f"postback:{event.payload}:{event.sent_at}"
        row = self._message(batch, event, key)
        row.update(
            mid=event.mid,
            direction="inbound",
            kind="postback",
            text=event.title,
            quick_reply={"payload": event.payload},
            standby=event.standby,
            sent_at=event.sent_at,
            recorded_at=_ms(event),
            position=position,
        )

    @on(topics.MESSAGE_UNSENT)
    def message_unsent(self, batch: Batch, event: Any, position: int) -> None:
        row = self._message(batch, event, event.mid)
        row["unsent"] = True
        row["unsent_at"] = event.unsent_at

    @on(topics.MESSAGE_EDITED)
    def message_edited(self, batch: Batch, event: Any, position: int) -> None:
        row = self._message(batch, event, event.mid)
        # Edits can arrive out of order: the highest edit count holds the latest text.
        if event.edit_count >= row["edit_count"]:
            row["edit_count"] = event.edit_count
            row["edited_at"] = event.edited_at
            if event.text is not None:
                row["text"] = event.text

    @on(topics.REACTION_ADDED)
    def reaction_added(self, batch: Batch, event: Any, position: int) -> None:
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
    def reaction_removed(self, batch: Batch, event: Any, position: int) -> None:
        row = self._message(batch, event, event.mid)
        row["reactions"] = [
            r
            for r in row["reactions"]
            if r["sender_id"] != event.sender_id or r["at"] > event.removed_at
        ]

    @on(topics.REPLY_QUEUED)
    def reply_queued(self, batch: Batch, event: Any, position: int) -> None:
        row = self._message(batch, event, event.reply_id)
        attachment = getattr(event, "attachment", None)
        row.update(
            direction="outbound",
            kind=(attachment or {}).get("type") or "text",
            text=event.text or None,
            attachments=[{"type": attachment["type"], "payload": {"url": attachment["url"]}}]
            if attachment
            else [],
            delivery_status="queued",
            reply_id=event.reply_id,
            sent_at=_ms(event),
            recorded_at=_ms(event),
            position=position,
        )

    @on(topics.REPLY_SENT)
    def reply_sent(self, batch: Batch, event: Any, position: int) -> None:
        row = self._message(batch, event, event.reply_id)
        row.update(delivery_status="sent", mid=event.message_id)
        # Meta's echo of this reply may have come first: it is the same message.
        if event.message_id:
            echo = batch.get(messages, (str(event.originator_id), event.message_id))
            if echo is not None and echo["kind"] is not None:
                row["reactions"] = echo["reactions"] or row["reactions"]
                batch.delete(messages, echo)

    @on(topics.REPLY_FAILED)
    def reply_failed(self, batch: Batch, event: Any, position: int) -> None:
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
