"""How events change the conversation list."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.domain import Aggregate

from application.reply_messages import NOT_MESSAGES
from domain import account as account_topics
from domain import conversation as topics
from domain.account import Account
from domain.content import is_erased
from domain.conversation import Conversation
from projections.conversation_list.view import (
    PROFILE_CONTENT,
    ConversationListView,
    conversations,
    profiles,
)
from projections.previews import preview_of
from projections.projection import LedgerProjection, id_text, on
from projections.shredding import ERASED_PREVIEW, content_rows
from projections.view import Batch, Row


def _ms(event: Aggregate.Event) -> int:
    return int(event.timestamp.timestamp() * 1000)


class ConversationList(LedgerProjection[ConversationListView]):
    """Keeps `conversation_list` in step with the conversations' events."""

    name = "conversation_list"

    def preload(self, batch: Batch, items: Sequence[tuple[Any, int]]) -> None:
        ids = {
            (id_text(event.originator_id),)
            for event, _ in items
            if type(event).TOPIC in self._handlers
        }
        batch.preload(conversations, ids)

    def _row(self, batch: Batch, event: Conversation.Event, position: int) -> Row | None:
        row = batch.get(conversations, (id_text(event.originator_id),))
        if row is not None:
            row["updated_at"] = _ms(event)
            row["updated_position"] = position
            batch.changed(conversations, row)
        return row

    @on(topics.STARTED)
    def started(self, batch: Batch, event: Conversation.Started, position: int) -> None:
        batch.put(
            conversations,
            {
                "conversation_id": id_text(event.originator_id),
                "ig_account_id": event.ig_account_id,
                "participant_id": event.participant_id,
                "participant_username": None,
                "status": "active",
                "last_message_preview": None,
                "last_message_direction": None,
                "last_message_at": None,
                "last_inbound_at": None,
                "unread_count": 0,
                "automation_paused": False,
                "started_at": _ms(event),
                "updated_at": _ms(event),
                "updated_position": position,
            },
        )

    def _message(self, row: Row, preview: str, direction: str, sent_at: int) -> None:
        # Meta does not promise order: the latest by Meta's time is the last message.
        if row["last_message_at"] is None or sent_at >= row["last_message_at"]:
            row["last_message_preview"] = preview
            row["last_message_direction"] = direction
            row["last_message_at"] = sent_at

    def _inbound(self, row: Row, sent_at: int) -> None:
        if row["last_inbound_at"] is None or sent_at > row["last_inbound_at"]:
            row["last_inbound_at"] = sent_at

    @on(topics.MESSAGE_RECEIVED)
    def message_received(
        self, batch: Batch, event: Conversation.MessageReceived, position: int
    ) -> None:
        if (row := self._row(batch, event, position)) is None:
            return
        self._message(
            row, preview_of(event.text, event.attachments, event), "inbound", event.sent_at
        )
        self._inbound(row, event.sent_at)
        if not event.backfilled:  # history is not news
            row["unread_count"] += 1

    @on(topics.POSTBACK_RECEIVED)
    def postback_received(
        self, batch: Batch, event: Conversation.PostbackReceived, position: int
    ) -> None:
        if (row := self._row(batch, event, position)) is None:
            return
        preview = event.title or event.payload or "[postback]"
        self._message(
            row, ERASED_PREVIEW if is_erased(event) else preview, "inbound", event.sent_at
        )
        self._inbound(row, event.sent_at)
        row["unread_count"] += 1

    @on(topics.MESSAGE_ECHOED)
    def message_echoed(
        self, batch: Batch, event: Conversation.MessageEchoed, position: int
    ) -> None:
        if (row := self._row(batch, event, position)) is None:
            return
        self._message(
            row, preview_of(event.text, event.attachments, event), "outbound", event.sent_at
        )
        if not event.backfilled:
            row["unread_count"] = 0

    @on(topics.REFERRAL_RECEIVED)
    def referral_received(
        self, batch: Batch, event: Conversation.ReferralReceived, position: int
    ) -> None:
        if (row := self._row(batch, event, position)) is not None:
            self._inbound(row, event.sent_at)

    @on(topics.MESSAGE_UNSENT)
    def message_unsent(
        self, batch: Batch, event: Conversation.MessageUnsent, position: int
    ) -> None:
        if (row := self._row(batch, event, position)) is None:
            return
        # The unsent message is the one shown if it is the participant's last message.
        sent_at = event.sent_at
        if (
            sent_at is not None
            and row["last_message_at"] == sent_at
            and row["last_message_direction"] == "inbound"
        ):
            row["last_message_preview"] = ERASED_PREVIEW

    @on(topics.PARTICIPANT_ERASED)
    def participant_erased(
        self, batch: Batch, event: Conversation.ParticipantErased, position: int
    ) -> None:
        row = self._row(batch, event, position)
        if row is None:
            return
        if row["last_message_preview"] is not None:
            row["last_message_preview"] = ERASED_PREVIEW
        self._forget_profile(batch, row)

    def _forget_profile(self, batch: Batch, row: Row) -> None:
        """The conversation's participant without what their profile said (as a profile
        read back erased leaves it)."""
        row["participant_username"] = None
        batch.changed(conversations, row)
        profile = batch.get(profiles, (row["conversation_id"],))
        if profile is not None:
            profile.update(dict.fromkeys(PROFILE_CONTENT))
            batch.changed(profiles, profile)

    @on(account_topics.CONTENT_EXPIRED)
    def content_expired(self, batch: Batch, event: Account.ContentExpired, position: int) -> None:
        for row in content_rows(
            batch,
            conversations,
            event.conversation_ids,
            before=event.before,
            time_column="last_message_at",
        ):
            if row["last_message_preview"] is not None:
                row["last_message_preview"] = ERASED_PREVIEW
                batch.changed(conversations, row)
        for profile in content_rows(
            batch,
            profiles,
            event.conversation_ids,
            before=event.before,
            time_column="profile_recorded_at",
        ):
            listed = batch.get(conversations, (profile["conversation_id"],))
            if listed is not None:
                self._forget_profile(batch, listed)

    @on(topics.MESSAGE_EDITED)
    @on(topics.REACTION_ADDED)
    @on(topics.REACTION_REMOVED)
    @on(topics.MESSAGES_SEEN)
    @on(topics.UNRECOGNISED_ITEM_RECEIVED)
    def touched(self, batch: Batch, event: Conversation.Event, position: int) -> None:
        self._row(batch, event, position)

    @on(topics.ARCHIVED)
    def archived(self, batch: Batch, event: Conversation.Archived, position: int) -> None:
        if (row := self._row(batch, event, position)) is not None:
            row["status"] = "archived"

    @on(topics.REOPENED)
    def reopened(self, batch: Batch, event: Conversation.Reopened, position: int) -> None:
        if (row := self._row(batch, event, position)) is not None:
            row["status"] = "active"

    @on(topics.BLOCKED)
    def blocked(self, batch: Batch, event: Conversation.Blocked, position: int) -> None:
        if (row := self._row(batch, event, position)) is not None:
            row["status"] = "blocked"

    @on(topics.MARKED_READ)
    def marked_read(self, batch: Batch, event: Conversation.MarkedRead, position: int) -> None:
        if (row := self._row(batch, event, position)) is not None:
            row["unread_count"] = 0

    @on(topics.AUTOMATION_PAUSED)
    def automation_paused(
        self, batch: Batch, event: Conversation.AutomationPaused, position: int
    ) -> None:
        if (row := self._row(batch, event, position)) is not None:
            row["automation_paused"] = True

    @on(topics.AUTOMATION_RESUMED)
    def automation_resumed(
        self, batch: Batch, event: Conversation.AutomationResumed, position: int
    ) -> None:
        if (row := self._row(batch, event, position)) is not None:
            row["automation_paused"] = False

    @on(topics.PARTICIPANT_PROFILE_RECORDED)
    def participant_profile_recorded(
        self, batch: Batch, event: Conversation.ParticipantProfileRecorded, position: int
    ) -> None:
        if (row := self._row(batch, event, position)) is None:
            return
        profile = event.profile  # {} once erased
        row["participant_username"] = profile.get("username")
        batch.put(
            profiles,
            {
                "conversation_id": row["conversation_id"],
                "participant_name": profile.get("name"),
                "participant_profile_picture_url": profile.get("profile_pic"),
                "participant_follower_count": profile.get("follower_count"),
                "participant_follows_business": profile.get("is_user_follow_business"),
                "participant_verified": profile.get("is_verified_user"),
                "profile_looked_up_at": event.looked_up_at,
                "profile_recorded_at": _ms(event),
            },
        )

    @on(topics.REPLY_QUEUED)
    def reply_queued(self, batch: Batch, event: Conversation.ReplyQueued, position: int) -> None:
        kind = event.kind  # in clear: known once the content is erased
        if kind in NOT_MESSAGES:
            return  # a reaction or a sender action is no message of the conversation
        if (row := self._row(batch, event, position)) is not None:
            preview = ERASED_PREVIEW if is_erased(event) else (event.text or "")[:200]
            if not preview and kind is not None:  # another kind: [image], [template], ...
                preview = f"[{kind}]"
            self._message(row, preview, "outbound", _ms(event))
