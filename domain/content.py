"""What of each conversation event is the participant's content, and what destroys it.

The content of a message-bearing event (its text, attachment and media URLs, captions,
reply previews, quick-reply and postback payloads and titles, referral and ad details,
the raw item of a kind this code does not know, an edit's text), our replies' texts and
attachments, and the participant's profile (name, username, picture) are what a person
may unsend or ask to have erased (an unsend destroys one message's keys; an erasure all
of a conversation's). It is stored sealed under a data key of its own
(`application/content.py`); Meta's ids, times, kinds and routing stay in clear, so that
de-duplication, ordering and the hash chain work without it.

`CONTENT_FIELDS` maps each such event's topic to its content fields and the value each
has once the content is gone (its key destroyed): the event then reads as if the
participant had sent nothing, and says so with `content == ERASED`.
"""

from __future__ import annotations

from typing import Any

from domain import conversation as topics
from domain import media as media_topics
from domain.identity import conversation_id

CONTENT_FIELDS: dict[str, dict[str, Any]] = {
    topics.MESSAGE_RECEIVED: {
        "text": None,
        "attachments": [],
        "reply_to": None,
        "quick_reply": None,
        "referral": None,
        "extra": {},
    },
    topics.MESSAGE_ECHOED: {"text": None, "attachments": [], "reply_to": None, "extra": {}},
    topics.MESSAGE_EDITED: {"text": None},
    topics.POSTBACK_RECEIVED: {"title": None, "payload": None},
    topics.REFERRAL_RECEIVED: {"referral": {}},
    topics.UNRECOGNISED_ITEM_RECEIVED: {"item": {}},
    media_topics.COMMENT_RECEIVED: {"text": None, "extra": {}},
    media_topics.COMMENT_EDITED: {"text": None},
    # What we sent them and what we know of them is theirs to have erased too.
    topics.REPLY_QUEUED: {
        "text": None,
        "attachment": None,
        "public_reply": None,
        "message": None,
    },
    topics.PARTICIPANT_PROFILE_RECORDED: {"profile": {}},
}
"""Topic -> {content field: its value once erased}."""

COMMENT_TOPICS = (media_topics.COMMENT_RECEIVED, media_topics.COMMENT_EDITED)
"""Events of a media whose content is a commenter's: sealed under a key of the
commenter's conversation with the account (`content_owner`), so that erasing that
participant erases their comments, and keyed by the comment's id as a message's by its mid."""


def content_owner(topic: str, state: dict[str, Any]) -> tuple[str, str | None] | None:
    """The conversation id and the message (or comment) id an event's data key belongs to,
    when it is not the event's own aggregate and `mid` (a comment's: its commenter's
    conversation, and the comment's id); None otherwise."""
    if topic in COMMENT_TOPICS:
        owner = conversation_id(state["ig_account_id"], state["author_id"])
        return str(owner), state["comment_id"]
    return None


ERASED: dict[str, Any] = {"erased": True}
"""What an event whose content is gone holds in its `content` field."""


def erased_fields(topic: str) -> dict[str, Any]:
    """The content fields of an event of `topic` with their erased values (fresh copies).

    Every erased value is None or an empty list or dict, so a shallow copy of each is a
    fresh one (a deep copy cost four times as much, for every sealed event read)."""
    return {
        name: value.copy() if isinstance(value, list | dict) else value
        for name, value in CONTENT_FIELDS[topic].items()
    }


def is_erased(event: Any) -> bool:
    """Whether this event's content has been destroyed (unsent, erased or expired)."""
    return getattr(event, "content", None) == ERASED
