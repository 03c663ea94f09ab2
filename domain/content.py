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

import copy
from typing import Any

from domain import conversation as topics

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
    # What we sent them and what we know of them is theirs to have erased too.
    topics.REPLY_QUEUED: {"text": None, "attachment": None, "message": None},
    topics.PARTICIPANT_PROFILE_RECORDED: {"profile": {}},
}
"""Topic -> {content field: its value once erased}."""

ERASED: dict[str, Any] = {"erased": True}
"""What an event whose content is gone holds in its `content` field."""


def erased_fields(topic: str) -> dict[str, Any]:
    """The content fields of an event of `topic` with their erased values (fresh copies)."""
    return copy.deepcopy(CONTENT_FIELDS[topic])


def is_erased(event: Any) -> bool:
    """Whether this event's content has been destroyed (unsent, erased or expired)."""
    return getattr(event, "content", None) == ERASED
