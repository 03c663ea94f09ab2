"""What each CRM notification carries: the `data` of its envelope, one msgspec Struct a type.

The outbox builds every notification's data from these (so the document and the payloads
cannot drift apart), and the OpenAPI document's `webhooks` section is generated from them.
Fields a notification of a conversation always has (account, conversation, participant,
sequence) are added by the outbox to each.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Participant(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Who the participant is, as far as Meta's user profile API told (left out: unknown)."""

    id: str
    """The participant's Instagram-scoped id (IGSID)."""
    username: str | None = None
    """The Instagram username, once known."""
    name: str | None = None
    """The name on the participant's profile, once known (many have none)."""


class Notification(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """What every notification's data holds. A field with a default is left out when it
    has it (a conversation's fields on the account's own notifications, `truncated`)."""

    account_id: str
    """The Instagram account it concerns."""
    conversation_id: str | None = None
    """The conversation (absent on the account's own notifications)."""
    participant_id: str | None = None
    """The participant's Instagram-scoped id (IGSID)."""
    participant: Participant | None = None
    """The participant, with the username and name once known: enough to show a message
    without another call (absent on the account's own notifications)."""
    sequence: int | None = None
    """1, 2, 3... per conversation, in the order the events happened: a receiver detects a
    gap or a late redelivery by it (absent on the account's own notifications)."""


class MessageReceived(Notification, kw_only=True):
    """`message.received`: the participant wrote."""

    mid: str
    text: str | None
    attachments: list[dict[str, Any]]
    """Each `{type, url}`: media leave as Meta's URLs, never as bytes."""
    reply_to: dict[str, Any] | None = None
    quick_reply: dict[str, Any] | None = None
    referral: dict[str, Any] | None = None
    """These three are left out when the body would pass 20 kB."""
    sent_at: int
    """Meta's time of the message, in milliseconds since 1970."""
    standby: bool
    truncated: bool = False
    """The text was cut to keep the body under 20 kB."""
    erased: bool = False
    """The message's content is gone (unsent, erased on request, or past the account's
    retention): its text is null and it has no attachments; only the ids remain."""
    backfilled: bool = False
    """Read from Meta's Conversations API by a backfill (history), not from a webhook."""


class MessageEchoed(Notification, kw_only=True):
    """`message.echoed`: the business account sent a message (ours, or from the app)."""

    mid: str
    text: str | None
    attachments: list[dict[str, Any]]
    sent_at: int
    truncated: bool = False
    erased: bool = False
    """The message's content is gone (unsent, erased on request, or past the account's
    retention): its text is null and it has no attachments; only the ids remain."""
    backfilled: bool = False
    """Read from Meta's Conversations API by a backfill (history), not from a webhook."""


class MessageUnsent(Notification, kw_only=True):
    """`message.unsent`: the participant unsent a message (ids only)."""

    mid: str
    unsent_at: int


class MessageEdited(Notification, kw_only=True):
    """`message.edited`: the participant edited a message."""

    mid: str
    text: str | None
    edit_count: int
    edited_at: int
    truncated: bool = False
    erased: bool = False
    """The message's content is gone (unsent, erased on request, or past the account's
    retention): its text is null and it has no attachments; only the ids remain."""


class ReactionAdded(Notification, kw_only=True):
    """`reaction.added`."""

    mid: str
    sender_id: str
    reaction: str | None
    emoji: str | None
    at: int


class ReactionRemoved(Notification, kw_only=True):
    """`reaction.removed`."""

    mid: str
    sender_id: str
    reaction: str | None
    at: int


class MessagesSeen(Notification, kw_only=True):
    """`messages.seen`: the participant read up to `mid`."""

    mid: str | None
    seen_at: int


class ReplySent(Notification, kw_only=True):
    """`reply.sent`: Meta accepted one of our replies."""

    reply_id: str
    message_id: str | None


class ReplyFailed(Notification, kw_only=True):
    """`reply.failed`: one of our replies failed for good (Meta's error)."""

    reply_id: str
    error_class: str
    code: int | None
    subcode: int | None
    message: str | None
    fbtrace_id: str | None


class ConversationUpdated(Notification, kw_only=True):
    """`conversation.updated`: archived, reopened, blocked, read, automation paused/resumed,
    the participant's profile recorded (`ParticipantProfileRecorded`, at most weekly), or
    thread control passed, taken, released or requested (`ThreadControlChanged`, Meta's
    handover)."""

    change: str
    by: str | None


class Commenter(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Who wrote a comment, as Meta's webhook says."""

    id: str
    """The commenter's Instagram-scoped id (IGSID): their conversation's participant id."""
    username: str | None
    """Their Instagram username."""


class CommentReceived(Notification, kw_only=True):
    """`comment.received`: someone commented on one of the account's media (a post, reel
    or ad: `live` false; a live broadcast: `live` true). It concerns a media, not a
    conversation: the conversation's fields are absent; deliveries of one media leave in
    order."""

    comment_id: str
    media_id: str
    media_product_type: str | None
    """Meta's surface of the media: FEED, REELS, STORY, AD, ..."""
    parent_id: str | None
    """The comment this one answers, if it is a reply."""
    text: str | None
    author: Commenter
    live: bool
    commented_at: int
    """When Meta sent the comment's webhook, in milliseconds since 1970 (Meta's comment
    webhooks carry no time of their own)."""
    truncated: bool = False
    erased: bool = False
    """The comment's content is gone (deleted, or its author erased): its text is null."""


class TokenRejected(Notification, kw_only=True):
    """`account.token_rejected`: Meta refused the account's access token (code 190)."""

    code: int | None
    subcode: int | None
    message: str | None


class SendsPaused(Notification, kw_only=True):
    """`account.sends_paused`: Meta's limits paused the account's sends until `until`."""

    until: str
    code: int | None
    reason: str | None


class SendsResumed(Notification, kw_only=True):
    """`account.sends_resumed`: new credentials ended a token rejection."""

    reason: str
    by: str | None


class TokenRefreshFailed(Notification, kw_only=True):
    """`account.token_refresh_failed`."""

    message: str
    at: str


PAYLOADS: dict[str, type[Notification]] = {
    "message.received": MessageReceived,
    "message.echoed": MessageEchoed,
    "message.unsent": MessageUnsent,
    "message.edited": MessageEdited,
    "reaction.added": ReactionAdded,
    "reaction.removed": ReactionRemoved,
    "messages.seen": MessagesSeen,
    "reply.sent": ReplySent,
    "reply.failed": ReplyFailed,
    "conversation.updated": ConversationUpdated,
    "comment.received": CommentReceived,
    "account.token_rejected": TokenRejected,
    "account.sends_paused": SendsPaused,
    "account.sends_resumed": SendsResumed,
    "account.token_refresh_failed": TokenRefreshFailed,
}
"""Every notification type and the Struct of its data."""


def data_of(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """`data` checked against its type's Struct, as the JSON the CRM gets (raises
    `msgspec.ValidationError` if the outbox built it otherwise than documented)."""
    checked = msgspec.convert(data, PAYLOADS[kind])
    encoded: dict[str, Any] = msgspec.to_builtins(checked)
    return encoded
