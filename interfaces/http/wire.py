"""The REST API's JSON shapes (msgspec Structs): requests are commands, responses nouns.

A little over 300 lines: one Struct per shape, each a few lines with its field docs (which
the OpenAPI document shows); splitting them by resource would scatter shapes that refer
to one another (a conversation's participant, a message's reply)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from application.replies import ReplyAttempt, ReplyState

DAY_MS = 24 * 60 * 60 * 1000


def _time(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms is not None else None


class Problem(msgspec.Struct):
    """An RFC 9457 problem: every error of this API."""

    type: str
    title: str
    status: int
    detail: Annotated[str, Meta(description="What went wrong, for a person to read.")]
    field: Annotated[str | None, Meta(description="The input at fault, on a 422.")] = None


class Participant(msgspec.Struct):
    """The Instagram user on the other side."""

    id: Annotated[
        str, Meta(description="Instagram-scoped user id (IGSID).", examples=["5500000000000001"])
    ]
    username: Annotated[str | None, Meta(examples=["anna"])]
    name: Annotated[
        str | None,
        Meta(description="The name on their profile (null: unknown or none).", examples=["Anna"]),
    ] = None
    profile_picture_url: Annotated[
        str | None, Meta(description="Meta's URL of their picture; it expires after days.")
    ] = None
    follower_count: int | None = None
    follows_business: Annotated[
        bool | None, Meta(description="Whether they follow the business account.")
    ] = None
    verified: bool | None = None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Participant:
        """The participant of a conversation-list row: the id, and the rest of what
        Meta's user profile API said (looked up on the first message, weekly after)."""
        return cls(
            id=row["participant_id"],
            username=row["participant_username"],
            name=row.get("participant_name"),
            profile_picture_url=row.get("participant_profile_picture_url"),
            follower_count=row.get("participant_follower_count"),
            follows_business=row.get("participant_follows_business"),
            verified=row.get("participant_verified"),
        )


class LastMessage(msgspec.Struct):
    preview: Annotated[str, Meta(examples=["Hi! Do you ship to Munich?"])]
    direction: Literal["inbound", "outbound"]
    sent_at: datetime


class Conversation(msgspec.Struct):
    """A conversation as the conversation list shows it."""

    id: Annotated[str, Meta(examples=["5f3b20cd-f2e2-5d6f-8973-b6d4e77113e3"])]
    account_id: Annotated[str, Meta(examples=["17841400000000001"])]
    participant: Participant
    status: Literal["active", "archived", "blocked"]
    last_message: LastMessage | None
    unread_count: Annotated[
        int, Meta(description="Messages received since the business last read or replied.")
    ]
    reply_window_closes_at: Annotated[
        datetime | None,
        Meta(description="24 hours after the participant's last message: standard replies."),
    ]
    human_agent_window_closes_at: Annotated[
        datetime | None,
        Meta(description="7 days after the participant's last message: HUMAN_AGENT replies."),
    ]
    automation_paused: bool
    started_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: dict[str, Any]) -> Conversation:
        last_inbound = row["last_inbound_at"]
        return cls(
            id=row["conversation_id"],
            account_id=row["ig_account_id"],
            participant=Participant.of(row),
            status=row["status"],
            last_message=LastMessage(
                preview=row["last_message_preview"],
                direction=row["last_message_direction"],
                sent_at=_time(row["last_message_at"]),  # type: ignore[arg-type]
            )
            if row["last_message_at"] is not None
            else None,
            unread_count=row["unread_count"],
            reply_window_closes_at=_time(last_inbound + DAY_MS) if last_inbound else None,
            human_agent_window_closes_at=_time(last_inbound + 7 * DAY_MS) if last_inbound else None,
            automation_paused=row["automation_paused"],
            started_at=_time(row["started_at"]),  # type: ignore[arg-type]
            updated_at=_time(row["updated_at"]),  # type: ignore[arg-type]
        )


class ConversationPage(msgspec.Struct):
    """Conversations, most recently changed first."""

    conversations: list[Conversation]
    next_cursor: Annotated[
        str | None, Meta(description="Pass as `cursor` for the next page; null on the last.")
    ]


class Reaction(msgspec.Struct):
    sender_id: str
    reaction: str | None
    emoji: str | None
    at: datetime


class Message(msgspec.Struct):
    """One message of a conversation, inbound or outbound."""

    id: Annotated[str, Meta(description="Meta's message id (mid), or a postback's key.")]
    mid: str | None
    direction: Literal["inbound", "outbound"]
    kind: Annotated[
        str,
        Meta(
            description="text, story_reply, postback, unsupported, or an attachment type "
            "(image, video, audio, file, share, story_mention, reel, ig_reel, ig_post, "
            "ephemeral, or one Meta added later); our replies may also be a template, a "
            "reaction, or a sender action (typing_on, typing_off, mark_seen).",
            examples=["text"],
        ),
    ]
    text: str | None
    attachments: list[dict[str, Any]]
    reply_to: dict[str, Any] | None
    quick_reply: dict[str, Any] | None
    referral: dict[str, Any] | None
    reactions: list[Reaction]
    edit_count: int
    edited_at: datetime | None
    unsent: bool
    unsent_at: datetime | None
    standby: Annotated[bool, Meta(description="Received while another app owned the thread.")]
    delivery_status: str | None
    sent_at: Annotated[datetime, Meta(description="Meta's time of the message.")]
    recorded_at: datetime
    comment: Annotated[
        dict[str, Any] | None,
        Meta(description="A private reply's comment: {comment_id, media_id}."),
    ] = None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Message:
        return cls(
            id=row["message_key"],
            mid=row["mid"],
            direction=row["direction"],
            kind=row["kind"],
            text=row["text"],
            attachments=row["attachments"],
            reply_to=row["reply_to"],
            quick_reply=row["quick_reply"],
            referral=row["referral"],
            reactions=[
                Reaction(
                    sender_id=r["sender_id"],
                    reaction=r["reaction"],
                    emoji=r["emoji"],
                    at=_time(r["at"]),  # type: ignore[arg-type]
                )
                for r in row["reactions"]
            ],
            edit_count=row["edit_count"],
            edited_at=_time(row["edited_at"]),
            unsent=row["unsent"],
            unsent_at=_time(row["unsent_at"]),
            standby=row["standby"],
            delivery_status=row["delivery_status"],
            sent_at=_time(row["sent_at"]),  # type: ignore[arg-type]
            recorded_at=_time(row["recorded_at"]),  # type: ignore[arg-type]
            comment=(row["reply_to"] or {}).get("comment")
            if row["direction"] == "outbound"
            else None,
        )


class MessagePage(msgspec.Struct):
    """Messages in the requested order."""

    participant: Annotated[
        Participant, Meta(description="Who wrote the inbound messages, as far as known.")
    ]
    messages: list[Message]
    next_cursor: Annotated[
        str | None, Meta(description="Continues in the same order; null at the end.")
    ]
    prev_cursor: Annotated[
        str | None, Meta(description="Walks back the other way from this page's first message.")
    ]


class ChangeConversation(msgspec.Struct, forbid_unknown_fields=True):
    """File a conversation and/or mark it read; each change is an event on it."""

    status: Annotated[
        Literal["active", "archived", "blocked"] | None,
        Meta(description="`archived`, `blocked`, or `active` to reopen."),
    ] = None
    read: Annotated[
        bool | None, Meta(description="`true` marks everything received so far as read.")
    ] = None


class ReplyStatus(msgspec.Struct):
    """One of our replies: where it stands."""

    reply_id: str
    conversation_id: str
    status: Annotated[
        str,
        Meta(
            description="queued, held (the account's sends wait: see `error`), retrying, "
            "sent, delivered (its echo came back) or failed"
        ),
    ]
    text: str | None
    message_id: Annotated[str | None, Meta(description="Meta's id, once sent.")]
    error: dict[str, Any] | None
    status_url: str
    attempts: Annotated[
        list[ReplyAttempt],
        Meta(description="Every recorded try at sending it, oldest first (on GET)."),
    ] = msgspec.field(default_factory=list)

    @classmethod
    def queued(
        cls, account_id: str, conversation_id: str, reply_id: str, text: str | None
    ) -> ReplyStatus:
        """A reply just queued, before the message history shows it."""
        return cls(
            reply_id=reply_id,
            conversation_id=conversation_id,
            status="queued",
            text=text,
            message_id=None,
            error=None,
            status_url=_status_url(account_id, conversation_id, reply_id),
        )

    @classmethod
    def recorded(cls, account_id: str, conversation_id: str, state: ReplyState) -> ReplyStatus:
        """A reply as its conversation's events record it, before the message history
        shows it."""
        return cls(
            reply_id=state.reply_id,
            conversation_id=conversation_id,
            status=state.state,
            text=None,
            message_id=state.message_id,
            error=None,
            status_url=_status_url(account_id, conversation_id, state.reply_id),
        )

    @classmethod
    def of(cls, row: dict[str, Any], account_id: str) -> ReplyStatus:
        conversation_id = row["conversation_id"]
        return cls(
            reply_id=row["reply_id"],
            conversation_id=conversation_id,
            status=row["delivery_status"] or "queued",
            text=row["text"],
            message_id=row["mid"],
            error=row["delivery_error"],
            status_url=_status_url(account_id, conversation_id, row["reply_id"]),
        )


class ChangeStored(msgspec.Struct):
    """A change that is stored, which the read models do not show yet (a 202 with the
    `Dmledger-Read-Models: behind` header): read the conversation again in a moment."""

    conversation_id: str
    stored: bool = True


def _status_url(account_id: str, conversation_id: str, reply_id: str) -> str:
    return f"/api/v1/accounts/{account_id}/conversations/{conversation_id}/replies/{reply_id}"
